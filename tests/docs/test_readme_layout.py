"""The README's layout section names paths that exist, and every part of the package."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LAYOUT = README.split("\n## Layout\n", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]


def listed() -> set[str]:
    """A line names a path and what it holds, or (the last one) only paths."""
    paths = set()
    for line in LAYOUT.splitlines():
        words = line.split()
        only_paths = all(w.endswith(("/", ".py")) for w in words)
        paths |= {w.rstrip("/") for w in (words if only_paths else words[:1])}
    return paths


LISTED = listed()


def test_every_listed_path_exists() -> None:
    assert LISTED and all((ROOT / path).exists() for path in LISTED), sorted(p for p in LISTED if not (ROOT / p).exists())


def test_every_subpackage_and_top_level_module_of_dataflow_is_listed() -> None:
    parts = {f"dataflow/{p.name}" for p in (ROOT / "dataflow").iterdir()
             if (p / "__init__.py").exists() or (p.suffix == ".py" and not p.name.startswith("__"))}
    assert parts <= LISTED, sorted(parts - LISTED)
