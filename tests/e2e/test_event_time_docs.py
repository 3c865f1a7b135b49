"""The examples of docs/state.md "Event time" compile, and the first one runs as documented."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dataflow.lang import parse_flow
from dataflow.planner import plan

from .conftest import run_flow
from .test_event_time import raw

DOC = (Path(__file__).resolve().parents[2] / "docs" / "state.md").read_text()
SECTION = DOC.split("\n## Event time\n", 1)[1].split("\n## ", 1)[0]
EXAMPLES = re.findall(r"^```flow\n(.*?)^```", SECTION, re.S | re.M)


def test_the_section_has_its_examples() -> None:
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_every_event_time_example_plans(index: int) -> None:
    assert plan(parse_flow(EXAMPLES[index], f"state-event-time-{index}.flow").topology()).agents


async def test_the_seconds_example_sums_per_minute(kind, tmp_path) -> None:
    inputs = [raw(b'{"user": "ann", "amount": 2.5, "ts": 1700000099.999}', b'"ann"'),
              raw(b'{"user": "ann", "amount": 1.0, "ts": 1700000100.000}', b'"ann"'),
              raw(b'{"user": "ann", "amount": 4.0, "ts": "2023-11-14T22:15:00.001Z"}', b'"ann"')]
    run = await run_flow(kind, tmp_path, parse_flow(EXAMPLES[0], "payments.flow"), {"payments": inputs})
    assert run.tables["per_minute"] == [
        (("ann", 1700000040000), {"total": 2.5, "n": 1, "window_start": 1700000040000, "window_end": 1700000100000}),
        (("ann", 1700000100000), {"total": 5.0, "n": 2, "window_start": 1700000100000, "window_end": 1700000160000}),
    ]
