"""Snapshots of the text and JSON plans of every example pipeline (syrupy).

Review a change with `pytest tests/planner/test_example_plans.py --snapshot-update` and `git diff`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dataflow.loader import load_pipeline
from dataflow.planner import plan
from dataflow.planner.render import to_json, to_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("*.py"))


def test_the_four_examples_are_covered():
    assert {"wordcount", "fraud", "orders", "clicks"} <= {Path(e).stem for e in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: Path(e).stem)
def test_text_plan(example, snapshot):
    assert to_text(plan(load_pipeline(example).topology())) == snapshot


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: Path(e).stem)
def test_json_plan(example, snapshot):
    assert to_json(plan(load_pipeline(example).topology())) == snapshot
