"""Printed forms of a plan: pieces the example snapshots do not pin down on their own."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dataflow import Flow, Record, agg, col, hopping, tumbling
from dataflow.planner import plan
from dataflow.planner.render import FORMATS, describe, to_dot, to_json, to_text


class W(Record):
    account_id: str
    amount: float
    ts: int


class Customer(Record):
    name: str


def stream_table_join() -> Flow:
    flow = Flow("app")
    customers = flow.table("customers", key=str, value=Customer)
    orders = flow.source("orders", key=str, value=W)
    orders.join(customers, on="account_id", name="enriched").to("out")
    return flow


def test_a_node_fed_from_another_sub_topology_lists_that_input():
    """The join reads its left side from a repartition topic written by another sub-topology; its
    `<--` line must still show both sides (it used to show only the right)."""
    text = to_text(plan(stream_table_join().topology()), locations=False)
    assert "  Join: enriched [inner]\n    <-- enriched.left.repartition (left), customers (right)\n" in text
    model = describe(plan(stream_table_join().topology()), locations=False)
    join = next(x for a in model["agents"] for x in a["nodes"] if x["name"] == "enriched")
    assert join["inputs"] == ["enriched.left.repartition (left)", "customers (right)"]


def test_text_of_every_kind_of_step():
    flow = Flow("app", partitions=2)
    s = flow.source("w", key=str, value=W, partitions=3, serializer="msgpack")
    b = s.filter(col("amount") > 1).branch(big=col("amount") > 100, default="rest")
    b.big.event_time("ts").echo("audit").through("mid").to("big")
    rest = b.rest.map({"account_id": col("account_id"), "amount": col("amount"), "ts": col("ts")})
    rest.group_by("account_id").window(hopping("10m", "1m", grace="5s", expires="1h")).aggregate(
        total=agg.sum("amount"), name="hops")
    rest.group_by("account_id", name="g2").window(tumbling("1m", on="ts")).count(name="t", emit="final")
    rest.print()
    assert to_text(plan(flow.topology()), locations=False) == KITCHEN_SINK


KITCHEN_SINK = """\
Pipeline app: 4 sub-topologies, default 2 partitions, at-least-once

Sub-topology 0: agent w (3 partitions, concurrency 1)
  Source: w [topic: w, 3 partitions, msgpack]
    --> w.filter
  Filter: w.filter [amount > 1]
    <-- w
    --> w.branch
  Branch: w.branch [big: amount > 100; rest: otherwise]
    <-- w.filter
    --> w.branch.big.event_time_ts..w.branch.big.echo [big], w.branch.rest.map [rest]
  Fused: w.branch.big.event_time_ts..w.branch.big.echo [event_time ts; echo topics: audit]
    <-- w.branch [big]
    --> w.branch.big.through_mid
  Through: w.branch.big.through_mid [topic: mid, 3 partitions]
    <-- w.branch.big.event_time_ts..w.branch.big.echo
    --> topic mid
  Map: w.branch.rest.map [{ account_id: account_id, amount: amount, ts: ts }]
    <-- w.branch [rest]
    --> g2, w.branch.rest.by_account_id, w.branch.rest.print
  GroupBy: g2 [key: account_id]
    <-- w.branch.rest.map
    --> g2.repartition
  Repartition: g2.repartition [topic: app-g2-repartition, 3 partitions, group_by]
    <-- g2
    --> topic app-g2-repartition
  GroupBy: w.branch.rest.by_account_id [key: account_id]
    <-- w.branch.rest.map
    --> w.branch.rest.by_account_id.repartition
  Repartition: w.branch.rest.by_account_id.repartition [topic: app-w.branch.rest.by_account_id-repartition, \
3 partitions, group_by]
    <-- w.branch.rest.by_account_id
    --> topic app-w.branch.rest.by_account_id-repartition
  Sink: w.branch.rest.print [stdout]
    <-- w.branch.rest.map
    --> none

Sub-topology 1: agent g2.repartition (3 partitions, concurrency 1)
  Source: g2.repartition (topic: app-g2-repartition, 3 partitions)
    --> g2.tumbling_1m
  Window: g2.tumbling_1m [tumbling 1m, on ts]
    <-- g2.repartition
    --> t
  Aggregate: t [count: count(); emit final]
    store: t (changelog: app-t-changelog)
    <-- g2.tumbling_1m
    --> none

Sub-topology 2: agent w.branch.big.through_mid (3 partitions, concurrency 1)
  Source: w.branch.big.through_mid (topic: mid, 3 partitions)
    --> w.branch.big.through_mid.to_big
  Sink: w.branch.big.through_mid.to_big [topic: big]
    <-- w.branch.big.through_mid
    --> none

Sub-topology 3: agent w.branch.rest.by_account_id.repartition (3 partitions, concurrency 1)
  Source: w.branch.rest.by_account_id.repartition (topic: app-w.branch.rest.by_account_id-repartition, \
3 partitions)
    --> w.branch.rest.by_account_id.hopping_10m_1m
  Window: w.branch.rest.by_account_id.hopping_10m_1m [hopping 10m, every 1m, event time (record timestamp), grace 5s, expires 1h]
    <-- w.branch.rest.by_account_id.repartition
    --> hops
  Aggregate: hops [total: sum(amount); emit changes]
    store: hops (changelog: app-hops-changelog)
    <-- w.branch.rest.by_account_id.hopping_10m_1m
    --> none

Topics:
  app-dead-letters (dead-letter, 1 partition, json)
  app-g2-repartition (repartition, 3 partitions, json)
  app-hops-changelog (changelog, 3 partitions, compacted, json)
  app-t-changelog (changelog, 3 partitions, compacted, json)
  app-w.branch.rest.by_account_id-repartition (repartition, 3 partitions, json)
  audit (echo, 2 partitions, json)
  big (sink, 2 partitions, json)
  mid (through, 3 partitions, json)
  w (source, 3 partitions, msgpack)
Stores:
  hops (aggregate, hopping 10m every 1m, 3 partitions, changelog: app-hops-changelog)
  t (aggregate, tumbling 1m, 3 partitions, changelog: app-t-changelog)
"""


def test_no_stores_prints_none():
    flow = Flow("app")
    flow.source("w").to("out")
    assert to_text(plan(flow.topology())).endswith("Stores:\n  none\n")


def test_json_is_sorted_and_complete():
    p = plan(stream_table_join().topology())
    text = to_json(p)
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert sorted(data) == ["agents", "pipeline", "settings", "stores", "topics"]
    assert [a["name"] for a in data["agents"]] == [a.name for a in p.agents]
    assert "location" in data["agents"][0]["nodes"][0]
    assert "location" not in json.loads(to_json(p, locations=False))["agents"][0]["nodes"][0]


def test_dot_has_a_cluster_per_agent_and_topics_as_nodes():
    dot = to_dot(plan(stream_table_join().topology()))
    assert dot.startswith('digraph "app" {\n  rankdir=TB;\n')
    assert dot.count("subgraph \"cluster_") == 2
    assert '"topic:app-enriched.left-repartition" [shape=cylinder' in dot
    assert '"topic:orders" [shape=ellipse' in dot
    assert '"topic:app-enriched.left-repartition" -> "enriched";' in dot
    assert '"customers" -> "enriched" [label="right"];' in dot


def test_every_format_is_listed():
    assert list(FORMATS) == ["text", "json", "dot", "svg"]


@pytest.mark.parametrize("locations", [True, False])
def test_locations_can_be_left_out(locations):
    text = to_text(plan(stream_table_join().topology()), locations=locations)
    assert (" @ tests/planner/test_render.py:" in text) is locations


@pytest.mark.usefixtures("examples_importable")
def test_agents_in_text_json_and_dot():
    flow = Flow("quotes", partitions=2)
    priced = flow.source("orders", key=str).call_agent("storefront.pricing:quote", output=float, name="priced")
    priced.to("quotes")
    priced.to_agent("storefront.pricing:audit")
    p = plan(flow.topology())
    text = to_text(p, locations=False)
    assert "  CallAgent: priced [agent: storefront.pricing:quote -> float]\n" in text
    assert "  Sink: priced.to_agent_audit [agent: storefront.pricing:audit]\n" in text
    nodes = {node["name"]: node for node in describe(p)["agents"][0]["nodes"]}
    assert {k: nodes["priced"][k] for k in ("kind", "agent", "output")} == \
        {"kind": "call_agent", "agent": "storefront.pricing:quote", "output": "float"}
    assert {k: nodes["priced.to_agent_audit"][k] for k in ("kind", "sink", "target")} == \
        {"kind": "sink", "sink": "agent", "target": "storefront.pricing:audit"}
    dot = to_dot(p)
    assert '"agent:storefront.pricing:quote" [shape=component, label="agent\\nstorefront.pricing:quote"];' in dot
    assert '"priced" -> "agent:storefront.pricing:quote" [dir=both];' in dot  # asked: the reply comes back
    assert '"priced.to_agent_audit" -> "agent:storefront.pricing:audit";' in dot


# --------------------------------------------------------------------------- the drawn graph


EXAMPLE_FLOWS = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.flow"))


def example_plan(path: Path, monkeypatch: pytest.MonkeyPatch):
    """An example's plan, loaded from the project root as `dataflow plan examples/X.flow` does."""
    from dataflow.loader import load_pipeline
    monkeypatch.chdir(path.parents[1])
    return plan(load_pipeline(str(path.relative_to(path.parents[1]))).topology())


def _dot_ids(dot: str) -> tuple[set[str], set[str]]:
    """(every node declared, every node that an edge touches) in DOT text."""
    declared = set(re.findall(r'^\s+"([^"]+)" \[(?:shape|label)', dot, re.M))
    connected = set()
    for a, b in re.findall(r'^\s+"([^"]+)" -> "([^"]+)"', dot, re.M):
        connected |= {a, b}
    return declared, connected


@pytest.mark.parametrize("path", EXAMPLE_FLOWS, ids=lambda p: p.stem)
def test_every_topic_and_store_of_an_example_is_connected(path, monkeypatch):
    p = example_plan(path, monkeypatch)
    dot = to_dot(p)
    declared, connected = _dot_ids(dot)
    assert {f"topic:{t.name}" for t in p.topics if t.role != "changelog"} | {f"store:{s.name}" for s in p.stores} \
        <= declared
    assert declared - connected == set()
    for store in p.stores:  # a changelog is drawn inside its store
        [line] = [x for x in dot.splitlines() if x.strip().startswith(f'"store:{store.name}" [')]
        assert store.changelog.replace("-", "") in line.replace("\\n", "").replace("-", "")


def test_stores_hang_off_their_step_and_name_their_changelog():
    flow = Flow("app")
    flow.source("words", key=str, value=W).group_by(col("account_id"), name="by_account").count(name="counts") \
        .changes().to("out")
    dot = to_dot(plan(flow.topology()))
    assert '    "store:counts" [shape=folder, label="store\\ncounts\\naggregate, key str\\nchangelog:\\napp-counts-changelog"];' \
        in dot
    assert '  "counts" -> "store:counts" [style=dashed, arrowhead=none];' in dot
    assert dot.count('-> "topic:app-dead-letters" [ltail="cluster_') == 2  # one per sub-topology


def test_long_details_wrap_and_a_cut_shows_an_ellipsis():
    flow = Flow("app")
    long_name = "x" * 90
    flow.source("words", key=str, value=W).filter(col("account_id") == long_name, name="f").to("out")
    dot = to_dot(plan(flow.topology()))
    [line] = [x for x in dot.splitlines() if x.startswith('    "f" [') or '"words..f"' in x and "label" in x]
    label = line.split('label="', 1)[1].rsplit('"]', 1)[0]
    assert all(len(part) <= 62 for part in label.split("\\n"))
    assert "…" in label and long_name not in label


@pytest.mark.parametrize("path", EXAMPLE_FLOWS, ids=lambda p: p.stem)
def test_an_examples_svg_is_narrow_enough_to_read_at_screen_width(path, monkeypatch):
    """The fraud example used to be drawn 2,915 pt wide and 228 pt high: unreadable at screen width."""
    from dataflow.planner.render import to_svg
    svg = to_svg(example_plan(path, monkeypatch))
    width = int(re.search(r'<svg width="(\d+)pt"', svg).group(1))
    assert width <= 1200  # 1,600 px: it fits a 1,920 px screen at full size
