"""Every example pipeline exists as a builder file and a `.flow` file that compile to the same plan."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from dataflow.lang import load_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json, to_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEMS = sorted(p.stem for p in EXAMPLES.glob("*.flow"))


def test_every_builder_example_has_a_flow_twin() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} <= set(STEMS)


@pytest.mark.parametrize("stem", STEMS)
def test_flow_and_builder_compile_to_identical_plan_json(stem: str) -> None:
    builder = runpy.run_path(str(EXAMPLES / f"{stem}.py"))["flow"]
    flow = load_flow(EXAMPLES / f"{stem}.flow")
    assert to_json(plan(flow.topology()), locations=False) == to_json(plan(builder.topology()), locations=False)


@pytest.mark.parametrize("stem", STEMS)
def test_flow_example_plan_text(stem: str, repo_root: Path, snapshot) -> None:  # type: ignore[no-untyped-def]
    """The explain text of the `.flow` version, with `.flow` source locations."""
    flow = load_flow(f"examples/{stem}.flow")
    assert to_text(plan(flow.topology())) == snapshot
