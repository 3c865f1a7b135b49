"""Adding an unrelated step never renames an existing internal topic or store.

Names are given or derived from anchors, never counted where a topic or store derives from
them (design.md, KAFKA-9072). For every example, extra steps (a filter, a branch, a count,
sinks) are added on every stream and table it names — appended at the end of the file, or
interleaved right after each handle is defined (so the new steps are built *before* the
existing ones that follow) — and the internal topics and stores of the original plan must all
still be there under the same names.
"""
from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest

from dataflow.builder import Flow, Stream, Table
from dataflow.planner import plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

HEADER = "from dataflow import key as _key, lit as _lit, value as _value\n"


def extra_steps(var: str, handle: object) -> list[str]:
    if isinstance(handle, Table):
        return [f'{var}.changes().to("extra-{var}")']
    if isinstance(handle, Stream) and handle.flow.topology().node(handle.node).kind == "window":
        return [f'{var}.count(name="extra_{var}").changes().to("extra-{var}")']  # a window is only aggregated
    if isinstance(handle, Stream):
        return [f'{var}.filter(_lit(True)).to("extra-{var}")',
                f'_routed_{var} = {var}.branch(hot=_lit(True), default="cold")',
                f'_routed_{var}.hot.to("extra-{var}-hot")',
                f'_routed_{var}.cold.print()',
                f'{var}.group_by(_key()).count().changes().to("extra-{var}-counts")']
    return []


NEW_PIPELINE = [
    '_extra = flow.source("extra-input", key=str, value=str)',
    '_extra.group_by(_value()).count().changes().to("extra-output")',
]


def handles(namespace: dict) -> dict[str, object]:
    return {k: v for k, v in namespace.items() if isinstance(v, (Stream, Table)) and not k.startswith("_")}


def state_names(flow: Flow) -> dict[str, int]:
    """Every internal topic and store, with its partition count."""
    p = plan(flow.topology())
    names = {f"topic {t.name}": t.partitions for t in p.topics if t.internal}
    names.update({f"store {s.name}": s.partitions for s in p.stores})
    return names


def extended_source(path: Path, mode: str) -> str:
    source = path.read_text()
    found = handles(runpy.run_path(str(path)))
    lines = source.splitlines()
    if mode == "appended":
        extra = [line for var, h in found.items() for line in extra_steps(var, h)] + NEW_PIPELINE
        return HEADER + "\n".join(lines + extra) + "\n"
    # interleaved: after each top-level statement that defines a handle, its extra steps
    inserts: dict[int, list[str]] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            var = stmt.targets[0].id
            if var in found:
                inserts[stmt.end_lineno] = extra_steps(var, found[var])
            if var == "flow":
                inserts[stmt.end_lineno] = NEW_PIPELINE
    out = []
    for number, line in enumerate(lines, 1):
        out.append(line)
        out.extend(inserts.get(number, []))
    return HEADER + "\n".join(out) + "\n"


@pytest.mark.parametrize("mode", ["appended", "interleaved"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.usefixtures("examples_importable")  # the copies in tmp_path call agents in examples/storefront/
def test_unrelated_steps_rename_no_topic_or_store(example, mode, tmp_path):
    original = runpy.run_path(str(example))["flow"]
    extended_file = tmp_path / example.name
    extended_file.write_text(extended_source(example, mode))
    extended = runpy.run_path(str(extended_file))["flow"]

    before, after = state_names(original), state_names(extended)
    assert {k: after.get(k) for k in before} == before
    assert len(after) > len(before)  # the extra steps did add state of their own
    assert len(extended.topology()) > len(original.topology())


def test_interleaving_really_puts_new_steps_first():
    """A guard on the test itself: the extra steps are built before the existing ones after them."""
    text = extended_source(ROOT / "examples" / "fraud.py", "interleaved")
    assert text.index('large.filter(_lit(True))') < text.index("per_account = (")
