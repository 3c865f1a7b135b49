"""Where a test file's marked lines are: `file:line` of the line that ends with `# @marker`,
for asserting the exact location a diagnostic or error names."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def marker_locator(test_file: str) -> Callable[[str], str]:
    """`at(marker)` for `test_file` (pass `__file__`); paths relative to the project root."""
    path = Path(test_file).resolve()
    shown = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()

    def at(marker: str) -> str:
        hits = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# @{marker}")]
        assert len(hits) == 1, marker
        return f"{shown}:{hits[0]}"

    return at
