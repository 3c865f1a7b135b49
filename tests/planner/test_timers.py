"""Timers in the planner: validation, sub-topologies, repartitions and the printed plan."""
from __future__ import annotations

import json
from pathlib import Path

from dataflow import Flow, agg, col, fn, key, timestamp
from dataflow.ir import nodes as n
from dataflow.planner import check, plan
from dataflow.planner.render import to_dot, to_json, to_text

HERE = Path(__file__).resolve().relative_to(Path(__file__).resolve().parents[2]).as_posix()
_LINES = Path(__file__).read_text().splitlines()


def at(marker: str) -> str:
    """`file:line` of the line in this file that ends with `# @marker`."""
    (line,) = [i for i, text in enumerate(_LINES, 1) if text.rstrip().endswith(f"# @{marker}")]
    return f"{HERE}:{line}"


def heartbeat_flow() -> Flow:
    flow = Flow("hb", partitions=2)
    flow.every("10s", value={"service": "fraud", "at": fn.now()}, name="heartbeat").to("heartbeats")  # @hb
    return flow


def test_a_zero_interval_is_reported_at_the_builder_call() -> None:
    flow = Flow("app")
    flow.every(0, value=1, name="never").print()  # @zero
    assert [(d.message, d.hint, str(d.loc)) for d in check(flow.topology())] == [
        ("timer 'never' needs an interval above zero", "write a duration such as 10s or 500ms", at("zero"))]


def test_an_unused_timer_is_reported_as_a_timer() -> None:
    flow = Flow("app")
    flow.every("1s", value=1, name="lonely")  # @lonely
    assert [(d.message, str(d.loc)) for d in check(flow.topology())] == [
        ("timer 'lonely' is never used: it has no sink and feeds no step", at("lonely"))]


def test_a_timer_alone_is_a_sub_topology_without_topics_to_read() -> None:
    p = plan(heartbeat_flow().topology())
    (agent,) = p.agents
    assert (agent.name, agent.source_topics, agent.entries) == ("heartbeat", (), ())
    assert agent.nodes == ("heartbeat", "heartbeat.to_heartbeats")
    assert agent.output_topics == ("heartbeats",)
    assert [t.name for t in p.topics] == ["hb-dead-letters", "heartbeats"]


def test_stateless_steps_after_a_timer_fuse_but_the_timer_stays_its_own_node() -> None:
    flow = Flow("app")
    flow.every("1s", value={"n": 1}, name="t").filter(col("n") > 0).map({"m": col("n")}).print()
    topo = plan(flow.topology()).topology
    assert isinstance(topo.node("t"), n.Timer)
    assert [s.kind for s in topo.node("t.filter..t.map").steps] == ["filter", "map"]  # type: ignore[attr-defined]


def test_a_stateful_step_after_a_timer_reads_it_through_a_repartition_topic() -> None:
    """Timer records sit on no partition; the store they update needs one."""
    flow = Flow("app", partitions=3)
    flow.every("1s", value={"n": 1}, name="t").aggregate(total=agg.sum("n"), name="totals").to("out")
    p = plan(flow.topology())
    assert p.topology.predecessors("totals") == ["totals.repartition"]
    assert p.topic("app-totals-repartition").partitions == 3
    assert [a.nodes for a in p.agents] == [("t", "totals.repartition"),
                                           ("totals", "totals.changes", "totals.to_out")]


def test_a_timer_merged_with_a_topic_joins_that_topics_agent() -> None:
    flow = Flow("app")
    ticks = flow.every("1m", value={"id": "tick"}, name="ticks")
    events = flow.source("events", key=str).map({"id": key()}, name="ids")
    ticks.merge(events, name="both").group_by("id").count(name="counts").to("out")
    p = plan(flow.topology())
    first = p.agents[0]
    assert first.name == "events"  # named after the topic it reads, not the timer
    assert {"ticks", "events", "both"} <= set(first.nodes)
    assert p.topology.node("both.by_id.repartition").reason == "group_by"


def test_text_plan_of_a_timer() -> None:
    assert to_text(plan(heartbeat_flow().topology())) == f"""\
Pipeline hb: 1 sub-topology, default 2 partitions, at-least-once

Sub-topology 0: agent heartbeat (2 partitions, concurrency 1)
  Timer: heartbeat [every 10s, emit {{ service: "fraud", at: now() }}]  @ {at("hb")}
    --> heartbeat.to_heartbeats
  Sink: heartbeat.to_heartbeats [topic: heartbeats]  @ {at("hb")}
    <-- heartbeat
    --> none

Topics:
  hb-dead-letters (dead-letter, 1 partition, json)
  heartbeats (sink, 2 partitions, json)
Stores:
  none
"""


def test_json_plan_of_a_timer() -> None:
    model = json.loads(to_json(plan(heartbeat_flow().topology()), locations=False))
    (agent,) = model["agents"]
    assert agent["entries"] == [] and agent["source_topics"] == []
    assert agent["nodes"][0] == {
        "kind": "timer", "name": "heartbeat", "interval": "10s", "value": '{ service: "fraud", at: now() }',
        "inputs": [], "outputs": ["heartbeat.to_heartbeats"],
        "schema": {"key": "null", "shape": "stream",
                   "value": {"fields": {"at": "timestamp", "service": "str"}, "record": ""}},
    }


def test_dot_plan_of_a_timer() -> None:
    dot = to_dot(plan(heartbeat_flow().topology()))
    assert '"heartbeat" [shape=box, label="Timer\\nheartbeat\\nevery 10s, emit { service: \\"fraud\\", at:\\nnow() }"];' \
        in dot
    assert '"heartbeat" -> "heartbeat.to_heartbeats";' in dot
    assert '"heartbeat.to_heartbeats" -> "topic:heartbeats";' in dot


def test_a_timer_value_with_the_tick_time() -> None:
    flow = Flow("app")
    flow.every("1m", value={"minute": fn.format_time(timestamp(), "%H:%M")}, name="t").print()
    assert check(flow.topology()) == []
