"""The examples of the Tables section of docs/agents-streams.md run as written (in order,
sharing one namespace) and print what the page says they print."""
from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents-streams.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def tables_section() -> str:
    text = DOC.read_text()
    start = text.index("\n## Tables\n")
    return text[start:text.index("\n## ", start + 1)]


def expected_output(block: str) -> list[str]:
    """The `# ...` lines of a block: what it should print."""
    return [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("# ")]


def test_tables_examples_run_and_print_what_they_say(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "mkdtemp", lambda: str(tmp_path))  # the restart example's data directory
    blocks = BLOCK.findall(tables_section())
    assert len(blocks) == 4
    module = types.ModuleType("tables_md")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, block in enumerate(blocks, 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{DOC.name}[tables block {number}]", "exec"), module.__dict__)  # noqa: S102 - our docs
        assert out.getvalue().splitlines() == expected_output(block), f"block {number}"
