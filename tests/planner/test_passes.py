"""Golden tests of the planner passes, one fixture directory per pass.

`tests/fixtures/passes/<pass>/<case>.py` is a tiny builder pipeline whose first line is
`# title: ...` and which defines `flow`. The pass runs on the topology that the passes before it
(in `PASSES` order) produce; `<case>.expected` holds the title and a compact rendering of the
topology before and after the pass. Regenerate with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/planner/test_passes.py

and review the diff before committing.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataflow.ir import nodes as n
from dataflow.ir.expr import render as render_expr
from dataflow.ir.topology import Topology
from dataflow.loader import load_pipeline
from dataflow.planner.passes import PASSES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "passes"
BY_NAME = {p.__name__: p for p in PASSES}
CASES = sorted((d.name, f) for d in FIXTURES.iterdir() if d.is_dir() for f in d.glob("*.py"))


def compact(topology: Topology) -> str:
    """One line per node in topological order: `name (kind: detail) <- inputs`."""
    lines = []
    for node in topology.nodes():
        detail = _detail(node)
        inputs = ", ".join(
            e.source + (f"[{e.port}]" if e.port else "") + (f" ({e.side})" if e.side else "")
            for e in topology.inputs(node.name))
        lines.append(f"{node.name} ({node.kind}{': ' + detail if detail else ''})" + (f" <- {inputs}" if inputs else ""))
    return "\n".join(lines)


def _detail(node: n.Node) -> str:
    if isinstance(node, (n.Source, n.TableSource)):
        return f"topic {node.topic}" + (f", {node.partitions} partitions" if node.partitions else "")
    if isinstance(node, n.Repartition):
        return f"topic {node.topic}, {node.partitions} partitions, {node.reason}"
    if isinstance(node, n.Through):
        return f"topic {node.topic}"
    if isinstance(node, n.Filter):
        return render_expr(node.predicate)
    if isinstance(node, n.GroupBy):
        return f"key {render_expr(node.key)}" + ("" if node.repartition else ", no repartition")
    if isinstance(node, n.Fused):
        return "[" + "; ".join(f"{s.kind} {s.name}" for s in node.steps) + "]"
    if isinstance(node, n.Sink):
        return node.target
    return ""


def run_case(pass_name: str, path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# title: "), f"{path} must start with '# title: ...'"
    topology = load_pipeline(str(path)).topology()
    for earlier in PASSES[:PASSES.index(BY_NAME[pass_name])]:
        topology = earlier(topology)
    before = compact(topology)
    after = compact(BY_NAME[pass_name](topology))
    assert compact(topology) == before, f"{pass_name} changed its input: passes must be pure"
    indent = lambda text: "\n".join(f"  {line}" for line in text.splitlines())  # noqa: E731
    return f"{first}\nbefore:\n{indent(before)}\nafter:\n{indent(after)}\n"


def test_every_pass_has_fixtures_and_every_fixture_dir_is_a_pass():
    assert sorted({d.name for d in FIXTURES.iterdir() if d.is_dir()}) == sorted(BY_NAME)
    assert all(any(name == p for p, _ in CASES) for name in BY_NAME)


@pytest.mark.parametrize("pass_name, path", CASES, ids=[f"{p}/{f.stem}" for p, f in CASES])
def test_pass(pass_name, path):
    got = run_case(pass_name, path)
    golden = path.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(got)
    assert golden.exists(), f"no golden {golden.name}; run with UPDATE_GOLDEN=1 and review it"
    assert got == golden.read_text()
