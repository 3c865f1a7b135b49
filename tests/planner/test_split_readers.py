"""Readers of one topic boundary share a sub-topology (one consumer, one decode, one agent name)."""
from dataflow import Flow, col
from dataflow.planner import plan


def test_readers_of_one_repartition_topic_form_one_agent() -> None:
    flow = Flow("app")
    by_user = flow.source("clicks").group_by("user", name="by_user")
    by_user.filter(col("n") > 1, name="busy").to("busy")
    by_user.to("all")
    p = plan(flow.topology())
    names = [a.name for a in p.agents]
    assert names == ["clicks", "by_user.repartition"]
    reader = p.agents[1]
    assert reader.source_topics == ("app-by_user-repartition",)
    assert reader.output_topics == ("all", "busy")
