"""A merge of two topics is a task with two inputs: its records come out in event-time order."""
from __future__ import annotations

from dataflow import Flow
from dataflow.transport.base import ProducerRecord

from .conftest import record, run_flow


def at(ts: int, value: str) -> ProducerRecord:
    r = record(value, "k")
    return ProducerRecord("", r.key, r.value, None, ts)


async def test_a_merge_interleaves_its_inputs_by_event_time(kind, tmp_path):
    flow = Flow("merged", partitions=1)
    web, app = flow.source("web", key=str, value=str), flow.source("app", key=str, value=str)
    flow.merge(web, app, name="all").to("all-out")
    inputs = {"web": [at(ts, f"web@{ts}") for ts in (1, 4, 4, 9)],
              "app": [at(ts, f"app@{ts}") for ts in (2, 3, 4, 10, 11)]}
    run = await run_flow(kind, tmp_path, flow, inputs, batch_size=3)
    # ties: neither is a table, so the topic name decides ("app" before "web")
    assert run.values("all-out") == ["web@1", "app@2", "app@3", "app@4", "web@4", "web@4", "web@9", "app@10",
                                     "app@11"]
