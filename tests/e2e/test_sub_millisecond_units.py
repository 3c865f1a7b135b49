"""docs/language.md, "Micro- and nanoseconds do not pass through a pipeline": exactly what a
sink of the same unit writes, and that an int field carries the exact value."""
from __future__ import annotations

import re
from pathlib import Path

from dataflow.lang import parse_flow

from .conftest import run_flow
from .test_event_time import raw

DOC = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
SECTION = DOC.split("**Micro- and nanoseconds do not pass through a pipeline.**", 1)[1].split("\n#", 1)[0]
EXAMPLE = re.findall(r"^```flow\n(.*?)^```", SECTION, re.S | re.M)[0]


async def test_the_documented_trade_comes_out_rounded_down_to_the_millisecond(kind, tmp_path) -> None:
    assert '`{"id": "t1", "at": 1700000000123456, "at_us": 1700000000123456}`' in SECTION
    assert '`{"id": "t1", "at": 1700000000123000, "at_us": 1700000000123456}`' in SECTION
    inputs = [raw(b'{"id": "t1", "at": 1700000000123456, "at_us": 1700000000123456}', b'"t1"')]
    run = await run_flow(kind, tmp_path, parse_flow("pipeline trades\n" + EXAMPLE, "trades.flow"),
                         {"trades": inputs})
    assert run.values("trades_out") == [{"id": "t1", "at": 1700000000123000, "at_us": 1700000000123456}]
    assert [m.timestamp for m in run.topics["trades_out"]] == [1700000000123]


async def test_nanoseconds_to_a_nanosecond_sink(kind, tmp_path) -> None:
    assert "`1700000000123456789` in a `timestamp(ns)` field as\n`1700000000123000000`" in SECTION
    text = """
pipeline ns
record R { id: str, at: timestamp(ns) }
topic ins: R
topic outs: R
ins | to topic outs
"""
    run = await run_flow(kind, tmp_path, parse_flow(text, "ns.flow"),
                         {"ins": [raw(b'{"id": "a", "at": 1700000000123456789}')]})
    assert run.values("outs") == [{"id": "a", "at": 1700000000123000000}]
