"""`stream NAME = every INTERVAL emit EXPR | ...`: timers in `.flow`, their names, layout and mistakes."""
from __future__ import annotations

import pytest

from dataflow import Flow, col, fn, timestamp
from dataflow.ir import expr as ir
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json

HEADER = "pipeline hb\ntopic heartbeats\n"


def flow_of(body: str) -> Flow:
    return parse_flow(HEADER + body, "hb.flow")


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        flow_of(body)
    return str(info.value)


def same_plan(a: Flow, b: Flow) -> bool:
    return to_json(plan(a.topology()), locations=False) == to_json(plan(b.topology()), locations=False)


# ---------------------------------------------------------------------------- meaning


def test_a_declared_timer_is_a_builder_timer_at_its_source_position() -> None:
    flow = flow_of('stream heartbeat = every 10s emit { service: "fraud", at: now() } | to topic heartbeats\n')
    node = flow.topology().node("heartbeat")
    assert (node.kind, node.interval_ms) == ("timer", 10_000)
    assert ir.render(node.value) == '{ service: "fraud", at: now() }'
    assert str(node.loc) == "hb.flow:3:20"
    assert [s for s in flow.topology().successors("heartbeat")] == ["heartbeat.to_heartbeats"]


def test_flow_and_builder_timers_compile_to_the_same_plan() -> None:
    text = flow_of('stream heartbeat = every 10s emit { service: "fraud", at: now() } | to topic heartbeats\n'
                   'stream late = every 1m emit _timestamp | map { t: _value } | filter t > 0 | to stdout\n')
    builder = Flow("hb")
    builder.topic("heartbeats")
    builder.every("10s", value={"service": "fraud", "at": fn.now()}, name="heartbeat").to("heartbeats")
    (builder.every("1m", value=timestamp(), name="late.every_1m").map({"t": col("_value")})
     .filter(col("t") > 0, name="late").print())
    assert same_plan(text, builder)


def test_a_timer_followed_by_steps_is_named_after_the_declaration() -> None:
    flow = flow_of("stream m = every 1m emit 1 | map _value + 1 | to stdout\n"
                   "stream n = every 1m emit 2 | map _value + 1 | to stdout\n")
    names = sorted(node.name for node in flow.topology().nodes())
    assert names == ["m", "m.every_1m", "m.print", "n", "n.every_1m", "n.print"]


def test_the_interval_is_kept_in_its_shortest_spelling() -> None:
    flow = flow_of("stream m = every 60s emit 1 | map _value | to stdout\n")
    assert flow.topology().node("m.every_1m").interval_ms == 60_000


def test_a_timer_can_feed_a_table_and_a_merge() -> None:
    flow = flow_of("topic beats: str\n"
                   "stream tick = every 1s emit \"tick\"\n"
                   "stream both = tick | merge beats\n"
                   "table last = both | select_key _value | to_table\n"
                   "last.changes | to topic heartbeats\n")
    planned = plan(flow.topology())
    assert planned.topology.node("last.repartition").reason == "table after re-key"


# ---------------------------------------------------------------------------- layout


def test_fmt_prints_a_timer_canonically() -> None:
    assert format_source(HEADER + 'stream hb=every   10s emit{service:"fraud",at:now()}|to topic heartbeats\n') \
        == HEADER + 'stream hb = every 10s emit { service: "fraud", at: now() } | to topic heartbeats\n'


def test_fmt_breaks_a_long_emitted_record_one_field_per_line() -> None:
    text = HEADER + ('stream long = every 1m emit { service: "fraud-detection", region: "eu-west-1", at: now(), '
                     'version: "1.2.3" } | filter true | to stdout\n')
    formatted = format_source(text)
    assert formatted == HEADER + """\
stream long = every 1m emit {
  service: "fraud-detection"
  region: "eu-west-1"
  at: now()
  version: "1.2.3"
}
  | filter true
  | to stdout
"""
    assert format_source(formatted) == formatted
    assert same_plan(parse_flow(formatted, "a.flow"), parse_flow(text, "b.flow"))


def test_fmt_keeps_comments_around_a_timer() -> None:
    text = HEADER + "# alive\nstream hb = every 5s emit 1  # one\n  | to topic heartbeats\n"
    assert format_source(text) == HEADER + "# alive\nstream hb = every 5s emit 1  # one\n  | to topic heartbeats\n"


def test_fmt_keeps_comments_inside_an_emitted_record() -> None:
    text = HEADER + 'stream hb = every 10s emit {\nservice: "fraud" # who\n# when\nat: now() } | to topic heartbeats\n'
    formatted = format_source(text)
    assert formatted == HEADER + """\
stream hb = every 10s emit {
  service: "fraud"  # who
  # when
  at: now()
}
  | to topic heartbeats
"""
    assert format_source(formatted) == formatted


def test_fmt_formats_a_timer_without_emit_for_check_to_report() -> None:
    assert format_source(HEADER + "stream hb = every 5s | to stdout\n").endswith("stream hb = every 5s | to stdout\n")


# ---------------------------------------------------------------------------- mistakes


def test_a_timer_without_emit() -> None:
    assert report("stream hb = every 10s | to topic heartbeats\n") == """\
hb.flow:3:13: error: 'every 10s' needs a value to emit; every 10s emit { at: now() }
stream hb = every 10s | to topic heartbeats
            ^~~~~~~~~"""


@pytest.mark.parametrize("interval, shown", [("10", "number 10"), ("10x", "number 10"), ("1.5s", "number 1.5")])
def test_an_interval_without_a_unit(interval: str, shown: str) -> None:
    first = report(f"stream hb = every {interval} emit 1 | to topic heartbeats\n").splitlines()[0]
    assert first == (f"hb.flow:3:19: error: unexpected {shown}; expected a duration like 30s; "
                     "a duration has a unit: 500ms, 10s, 5m, 1h or 1d")


def test_a_timer_without_an_interval() -> None:
    assert report("stream hb = every emit 1 | to topic heartbeats\n").splitlines()[0] == \
        "hb.flow:3:19: error: unexpected 'emit'; expected a duration like 30s"


def test_a_zero_interval() -> None:
    assert report("stream hb = every 0s emit 1 | to topic heartbeats\n") == """\
hb.flow:3:13: error: timer 'hb' needs an interval above zero; write a duration such as 10s or 500ms
stream hb = every 0s emit 1 | to topic heartbeats
            ^~~~~~~~~~~~~~~"""


def test_a_timer_value_that_reads_a_field() -> None:
    assert report("stream hb = every 10s emit { at: now(), n: amount } | to topic heartbeats\n") == """\
hb.flow:3:44: error: a timer's value cannot read the field 'amount': a timer has no input record; \
build it from constants and functions such as now(); _timestamp is the tick time
stream hb = every 10s emit { at: now(), n: amount } | to topic heartbeats
                                           ^~~~~~"""


def test_a_timer_value_that_reads_the_position_of_a_message() -> None:
    assert report("stream hb = every 10s emit { p: _partition } | to topic heartbeats\n").splitlines()[0] == (
        "hb.flow:3:33: error: a timer's record has no _partition: it comes from no topic; "
        "build it from constants and functions such as now(); _timestamp is the tick time")


def test_a_type_error_in_a_timer_value() -> None:
    assert report('stream hb = every 10s emit "a" * 2 | to topic heartbeats\n').splitlines()[0] == \
        "hb.flow:3:28: error: operator '*' needs numbers, got str"


def test_a_timer_as_the_head_of_an_anonymous_pipe() -> None:
    assert report("every 10s emit 1 | to topic heartbeats\n") == """\
hb.flow:3:1: error: a timer needs a name; declare it: stream heartbeat = every 10s emit ...
every 10s emit 1 | to topic heartbeats
^~~~~"""


def test_every_is_still_a_plain_name_elsewhere() -> None:
    flow = flow_of("record R { every: int }\ntopic every: R\nevery | filter every > 1 | to topic heartbeats\n")
    assert "every.filter" in flow.topology()


def test_an_unused_timer() -> None:
    assert report("stream hb = every 10s emit 1\n").splitlines()[0] == \
        "hb.flow:3:13: error: timer 'hb' is never used: it has no sink and feeds no step"


def test_a_declared_name_that_is_taken() -> None:
    assert report("stream hb = every 1s emit 1 | to stdout\nstream hb = every 2s emit 2 | to stdout\n") \
        .splitlines()[0] == "hb.flow:4:8: error: 'hb' is declared twice; first declared at line 3"
