"""`table NAME = topic T bootstrap`: the .flow twin of `flow.table(T, bootstrap=True)`."""
from __future__ import annotations

import json

import pytest

from dataflow import Flow, Record
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json, to_text

TEXT = """\
pipeline fx

record Rate {
  rate: float
  at: int
}

topic rates: Rate key str event_time at
topic payments key str
topic priced

table rates = topic rates bootstrap
payments | join rates | to topic priced
"""


class Rate(Record):
    rate: float
    at: int


def builder() -> Flow:
    flow = Flow("fx")
    flow.topic("rates", key=str, value=Rate, timestamp="at")
    flow.topic("payments", key=str)
    flow.topic("priced")
    rates = flow.table("rates", bootstrap=True)
    flow.source("payments").join(rates).to("priced")
    return flow


def test_bootstrap_reaches_the_table_source_and_its_event_time_too() -> None:
    node = parse_flow(TEXT, "fx.flow").topology().node("rates")
    assert (node.kind, node.bootstrap, node.timestamp_field) == ("table_source", True, "at")


def test_the_plan_shows_it_in_text_and_json() -> None:
    compiled = plan(parse_flow(TEXT, "fx.flow").topology())
    assert "Table source: rates [topic: rates, 4 partitions, json, bootstrap]" in to_text(compiled)
    source = next(n for a in json.loads(to_json(compiled))["agents"] for n in a["nodes"] if n["name"] == "rates")
    assert (source["bootstrap"], source["timestamp_field"]) == (True, "at")


def test_flow_and_builder_give_the_same_plan_json() -> None:
    from_flow = to_json(plan(parse_flow(TEXT, "fx.flow").topology()), locations=False)
    assert from_flow == to_json(plan(builder().topology()), locations=False)


def test_format_keeps_it() -> None:
    assert "table rates = topic rates bootstrap\n" in format_source(TEXT)


def test_bootstrap_on_a_stream_is_an_error() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(TEXT + "stream p = topic payments bootstrap\n", "fx.flow")
    assert str(info.value) == """\
fx.flow:14:12: error: 'bootstrap' applies to a table read from a topic; declare it as one: table NAME = topic payments \
bootstrap
stream p = topic payments bootstrap
           ^~~~~~~~~~~~~~~~~~~~~~~~"""


def test_bootstrap_must_be_true_or_false_in_the_builder() -> None:
    with pytest.raises(TypeError, match="bootstrap takes True or False, not 'yes'"):
        Flow("fx").table("rates", bootstrap="yes")  # type: ignore[arg-type]
