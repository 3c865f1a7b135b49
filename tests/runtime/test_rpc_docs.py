"""The examples in docs/agents.md run as written (each block in order, sharing one
namespace), print what the page says they print, and its pytest example passes."""
from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
import types
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def expected_output(block: str) -> list[str]:
    """The `# ...` lines that follow a print: what the block should print."""
    return [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("# ")]


def test_agents_md_examples_run_and_print_what_they_say(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) == 8
    module = types.ModuleType("agents_md")  # Record classes need a real module
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, block in enumerate(blocks, 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{DOC.name}[block {number}]", "exec"), namespace)  # noqa: S102 - our docs
        assert out.getvalue().splitlines() == expected_output(block), f"block {number}"

    async def use_the_fixture() -> None:  # the pytest example, with the fixture's context by hand
        async with namespace["check_order"].test_context() as context:
            async def agent_context(agent):  # type: ignore[no-untyped-def]
                assert agent is namespace["check_order"]
                return context

            await namespace["test_large_orders_are_flagged"](agent_context)

    asyncio.run(use_the_fixture())
