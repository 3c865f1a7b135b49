"""The examples in docs/builder.md run as written (each block in order, sharing one namespace)."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "builder.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_builder_md_examples_run(monkeypatch):
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) > 20
    module = types.ModuleType("builder_md")  # Record classes need a real module (dataclasses looks it up)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{DOC.name}[block {number}]", "exec")
        exec(code, namespace)  # noqa: S102 - our own documentation, not user input
    from dataflow.planner import check, plan

    for complete in ("ads", "shop"):
        assert plan(namespace[complete].topology()).agents, complete
    # the snippets on `flow` leave streams unused, but every one of them type-checks
    assert {d.rule for d in check(namespace["flow"].topology())} == {"dangling"}
