"""The ExecutionPlan: agents per sub-topology, internal topics and state stores."""
from __future__ import annotations

from dataflow import Flow, Record, agg, col, hopping
from dataflow.ir.types import INT, STR
from dataflow.loader import load_pipeline
from dataflow.planner import AgentPlan, ExecutionPlan, plan
from dataflow.planner.naming import changelog_topic, dead_letter_topic, internal_topic_names, join_store, \
    repartition_topic
from dataflow.planner.split_subtopologies import SubTopology, split_subtopologies


class W(Record):
    account_id: str
    amount: float


def test_wordcount_plan():
    p = plan(load_pipeline("examples/wordcount.py").topology())
    assert isinstance(p, ExecutionPlan) and p.name == "wordcount"
    assert p.agents == (
        AgentPlan(name="lines", index=0, source_topics=("lines",), entries=(("lines", "lines"),),
                  nodes=("lines", "words..by_word", "by_word.repartition"),
                  output_topics=("wordcount-by_word-repartition",), stores=(), partitions=4, concurrency=1),
        AgentPlan(name="by_word.repartition", index=1, source_topics=("wordcount-by_word-repartition",),
                  entries=(("by_word.repartition", "wordcount-by_word-repartition"),),
                  nodes=("counts", "counts.changes", "counts.to_word-counts"),
                  output_topics=("word-counts",), stores=("counts",), partitions=4, concurrency=1),
    )
    assert [(t.name, t.role, t.internal, t.compacted, t.partitions) for t in p.topics] == [
        ("lines", "source", False, False, 4),
        ("word-counts", "sink", False, False, 4),
        ("wordcount-by_word-repartition", "repartition", True, False, 4),
        ("wordcount-counts-changelog", "changelog", True, True, 4),
        ("wordcount-dead-letters", "dead-letter", True, False, 1),
    ]
    counts = p.store("counts")
    assert (counts.node, counts.kind, counts.changelog, counts.partitions, counts.key_type, counts.window) == (
        "counts", "aggregate", "wordcount-counts-changelog", 4, STR, None)
    assert counts.value_type.field("count").type == INT
    assert p.topic("wordcount-by_word-repartition").key_type == STR
    assert p.agent_of("counts.changes").index == 1
    assert p.settings.partitions == 4 and len(p.schemas) == len(p.topology)


def test_fraud_store_keeps_its_window():
    p = plan(load_pipeline("examples/fraud.py").topology())
    store = p.store("per_account")
    assert (store.window.window, store.window.size_ms, store.window.grace_ms) == ("tumbling", 60_000, 10_000)


def test_clicks_join_has_a_window_store_per_side():
    p = plan(load_pipeline("examples/clicks.py").topology())
    assert [(s.name, s.kind, s.changelog) for s in p.stores if s.node == "matched"] == [
        ("matched.left", "join-window", "clicks-matched.left-changelog"),
        ("matched.right", "join-window", "clicks-matched.right-changelog"),
    ]
    assert p.agent_of("matched").stores == ("matched.left", "matched.right")


def test_a_table_read_from_a_topic_uses_that_topic_as_its_changelog():
    p = plan(load_pipeline("examples/orders.py").topology())
    customers = p.store("customers")
    assert (customers.kind, customers.changelog) == ("table", "customers")
    assert p.topic("customers").compacted is True
    assert not any(t.role == "changelog" for t in p.topics)


def test_sub_topologies_split_at_repartition_and_through_topics():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.through("mid").filter(col("amount") > 1).group_by("account_id").window(hopping("10m", "1m")).aggregate(
        total=agg.sum("amount"), name="totals").to("out")
    p = plan(flow.topology())
    subs = split_subtopologies(p.topology)
    assert subs == (
        SubTopology(0, "w", ("w", "w.through_mid"), (("w", "w"),), ("mid",)),
        SubTopology(1, "w.through_mid",
                    ("w.through_mid.filter..w.through_mid.by_account_id", "w.through_mid.by_account_id.repartition"),
                    (("w.through_mid", "mid"),), ("app-w.through_mid.by_account_id-repartition",)),
        SubTopology(2, "w.through_mid.by_account_id.repartition",
                    ("w.through_mid.by_account_id.hopping_10m_1m", "totals", "totals.changes", "totals.to_out"),
                    (("w.through_mid.by_account_id.repartition", "app-w.through_mid.by_account_id-repartition"),),
                    ("out",)),
    )
    assert [a.name for a in p.agents] == ["w", "w.through_mid", "w.through_mid.by_account_id.repartition"]
    assert p.agents[0].output_topics == ("mid",)


def test_agent_partitions_follow_their_inputs():
    flow = Flow("app", partitions=2, concurrency=3)
    flow.source("w", value=W, partitions=5).group_by("account_id", partitions=7).count(name="n").to("out")
    p = plan(flow.topology())
    assert [(a.partitions, a.concurrency) for a in p.agents] == [(5, 3), (7, 3)]
    assert p.store("n").partitions == 7
    assert p.topic("out").partitions == 2  # a sink topic gets the pipeline default unless told


def test_planning_does_not_change_the_flow():
    flow = Flow("app")
    flow.source("w", value=W).group_by("account_id").count(name="n").to("out")
    before = [x.name for x in flow.topology().nodes()]
    plan(flow.topology())
    assert [x.name for x in flow.topology().nodes()] == before


def test_naming():
    assert repartition_topic("fraud", "large.by_account_id") == "fraud-large.by_account_id-repartition"
    assert changelog_topic("fraud", "per_account") == "fraud-per_account-changelog"
    assert dead_letter_topic("fraud") == "fraud-dead-letters"
    assert join_store("matched", "left") == "matched.left"
    flow = Flow("app")
    flow.source("w").group_by("k").count(name="n")
    topo = flow.topology()
    assert internal_topic_names(topo, topo.node("w.by_k")) == ["app-w.by_k-repartition"]
    # the repartition before an aggregate is reserved even where the plan needs none (its input is keyed)
    assert internal_topic_names(topo, topo.node("n")) == ["app-n-repartition", "app-n-changelog"]
    assert internal_topic_names(topo, topo.node("w")) == []
