"""`.flow` for event time: timestamp units, the event_time stage, and topics that declare
their event time. Mistakes point at file:line:col; the builder gives byte-identical plans."""
from __future__ import annotations

import pytest

from dataflow import Flow, Record, Timestamp, agg, col, fn, tumbling
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json

HEADER = """\
pipeline ads
record Click { user: str, secs: float, at: timestamp(s), raw: str }
topic clicks: Click key str
topic out
"""


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        parse_flow(HEADER + body, "ads.flow")
    return str(info.value)


def test_a_float_event_time_field_is_refused_with_the_seconds_hint() -> None:
    assert report("topic floats: Click key str event_time secs\nfloats | to stdout\n") == """\
ads.flow:5:1: error: the event-time field 'secs' is a float; event time must be a timestamp or an int of epoch ms; \
if it holds epoch seconds (e.g. 1700000000.123), declare the field timestamp(s)
topic floats: Click key str event_time secs
^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"""


def test_a_float_window_field_is_refused_with_the_seconds_hint() -> None:
    assert report("table n = clicks | window tumbling 1m on secs | aggregate { n: count() }\nn | to stdout\n") == """\
ads.flow:5:20: error: the event-time field 'secs' is a float; event time must be a timestamp or an int of epoch ms; \
if it holds epoch seconds (e.g. 1700000000.123), declare the field timestamp(s)
table n = clicks | window tumbling 1m on secs | aggregate { n: count() }
                   ^~~~~~~~~~~~~~~~~~~~~~~~~~"""


def test_a_float_event_time_expression_is_refused_at_its_own_span() -> None:
    assert report("clicks | event_time secs * 1000 | to stdout\n") == """\
ads.flow:5:21: error: the event time is a float; event time must be a timestamp or an int of epoch ms; \
if it holds epoch seconds (e.g. 1700000000.123), declare the field timestamp(s)
clicks | event_time secs * 1000 | to stdout
                    ^~~~~~~~~~~"""


def test_a_text_event_time_expression_is_refused_with_parse_time_in_the_hint() -> None:
    assert report("clicks | event_time raw | to stdout\n") == """\
ads.flow:5:21: error: the event time must be a timestamp, got str; if it holds ISO-8601 text, declare the field \
'raw' timestamp (ISO-8601 text is read in every unit), or set the time in a stage: `event_time parse_time(raw)` \
(builder: `.event_time(fn.parse_time(col("raw")))`)
clicks | event_time raw | to stdout
                    ^~~"""
    assert report("clicks | event_time lower(raw) | to stdout\n") == """\
ads.flow:5:21: error: the event time must be a timestamp, got str; if it holds ISO-8601 text, set the time in a \
stage: `event_time parse_time(lower(raw))`
clicks | event_time lower(raw) | to stdout
                    ^~~~~~~~~~"""


def test_a_text_event_time_field_is_refused_and_what_the_hint_says_compiles() -> None:
    assert report("topic texts: Click key str event_time raw\ntexts | to stdout\n") == """\
ads.flow:5:1: error: the event-time field 'raw' must be a timestamp, got str; if it holds ISO-8601 text, declare \
the field 'raw' timestamp (ISO-8601 text is read in every unit), or set the time in a stage: \
`event_time parse_time(raw)` (builder: `.event_time(fn.parse_time(col("raw")))`)
topic texts: Click key str event_time raw
^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"""
    parse_flow(HEADER + "topic texts: Click key str\ntexts | event_time parse_time(raw) | to stdout\n", "ads.flow")
    parse_flow(HEADER.replace("raw: str", "raw: timestamp") + "topic texts: Click key str event_time raw\n"
               "texts | to stdout\n", "ads.flow")

    class Text(Record):
        raw: str

    flow = Flow("ads")
    flow.source("texts", value=Text).event_time(fn.parse_time(col("raw"))).to("out")
    plan(flow.topology())


def test_only_timestamps_take_a_unit_and_units_are_known() -> None:
    assert report("record R { n: int(s) }\n") == """\
ads.flow:5:15: error: 'int' takes no unit; only timestamps have a unit: timestamp(s), timestamp(ms), \
timestamp(us), timestamp(ns)
record R { n: int(s) }
              ^~~"""
    assert report("record R { t: timestamp(sec) }\n") == """\
ads.flow:5:25: error: unknown timestamp unit 'sec'; units are: s, ms, us, ns
record R { t: timestamp(sec) }
                        ^~~"""


def test_fmt_writes_one_spelling_per_timestamp_type() -> None:
    text = "pipeline p\nrecord R { a: timestamp( ms ), b: timestamp(s)?, c: list<timestamp(ns)> }\n"
    assert format_source(text, "x.flow") == (
        "pipeline p\nrecord R {\n  a: timestamp\n  b: timestamp(s)?\n  c: list<timestamp(ns)>\n}\n")


FLOW = """\
pipeline ads

record Click {
  user: str
  at: timestamp(s)
  raw: str
}

topic clicks: Click key str
topic stamped: Click key str event_time at
topic mid: Click key str event_time at

stream parsed = clicks | event_time parse_time(raw)
parsed | to topic stamped
table per_minute = clicks
  | through mid
  | window tumbling 1m
  | aggregate { n: count() }
per_minute | to stdout
"""


class Click(Record):
    user: str
    at: Timestamp("s")
    raw: str


def builder() -> Flow:
    flow = Flow("ads")
    flow.topic("stamped", key=str, value=Click, timestamp="at")
    flow.topic("mid", key=str, value=Click, timestamp="at")
    clicks = flow.source("clicks", key=str, value=Click)
    clicks.event_time(fn.parse_time(col("raw")), name="parsed").to("stamped")
    clicks.through("mid").window(tumbling("1m")).aggregate(n=agg.count(), name="per_minute").changes().print()
    return flow


def test_the_builder_makes_the_same_plan_including_the_event_time_steps_of_topics() -> None:
    from_flow = plan(parse_flow(FLOW, "ads.flow").topology())
    assert to_json(from_flow, locations=False) == to_json(plan(builder().topology()), locations=False)
    kinds = {name: from_flow.topology.node(name).kind for name in from_flow.topology.order()}
    # `to topic stamped` and `through mid` set the time from `at` first, as the topics declare
    assert sorted(n for n, k in kinds.items() if k in ("event_time", "fused")) == [
        "clicks.event_time_at", "parsed..parsed.event_time_at"]


def test_the_event_time_step_shows_in_every_form_of_the_plan() -> None:
    from dataflow.planner.render import to_dot, to_text

    text = HEADER + "clicks | event_time parse_time(raw) | window tumbling 1m | aggregate { n: count() }\n"
    p = plan(parse_flow(text, "ads.flow").topology())
    assert "  EventTime: clicks.event_time_parse_time_raw [parse_time(raw)]  @ ads.flow:5:10\n" in to_text(p)
    assert '"EventTime\\nclicks.event_time_parse_time_raw\\nparse_time(raw)"' in to_dot(p)
    import json
    nodes = [n for a in json.loads(to_json(p))["agents"] for n in a["nodes"] if n["kind"] == "event_time"]
    assert [(n["name"], n["expr"]) for n in nodes] == [("clicks.event_time_parse_time_raw", "parse_time(raw)")]
