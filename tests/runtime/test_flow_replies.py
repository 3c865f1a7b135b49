"""A compiled flow answers asks: its sink output for the asked record, null when the record
was filtered out, an error naming the stage when it failed -- across repartitions too."""
from __future__ import annotations

import orjson

from dataflow import Flow, col
from dataflow.planner import plan as build_plan
from dataflow.runtime.replies import AgentError, read_reply, request_headers
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, ProducerRecord, TopicSpec
from dataflow.transport.memory import MemoryTransport


def ask(topic: str, value: object, correlation_id: str, key: object = None) -> ProducerRecord:
    return ProducerRecord(topic, orjson.dumps(key) if key is not None else None, orjson.dumps(value), None, None,
                          request_headers("replies", correlation_id))


async def replies_of(flow: Flow, records: list[ProducerRecord]) -> dict[str, object]:
    transport = MemoryTransport()
    await transport.start()
    try:
        await transport.create_topics([TopicSpec("replies", 1)])
        worker = Worker(build_plan(flow.topology()), transport, WorkerOptions(batch_size=10))
        await worker.start()
        await worker.producer.send_batch(records)
        await worker.run(until_idle=True)
        await worker.stop()
        messages = await transport.read_partition(TP("replies", 0), 0, 100)
        return dict(read_reply(m.headers, m.value) for m in messages)  # type: ignore[misc]
    finally:
        await transport.stop()


async def test_a_flow_replies_with_its_output_null_when_filtered_and_an_error_when_it_fails():
    flow = Flow("prices", partitions=1)
    (flow.source("orders")
         .filter(col("amount") > 0)
         .map({"id": col("id"), "with_tax": col("amount") * 1.25})
         .to("priced"))
    replies = await replies_of(flow, [ask("orders", {"id": "a", "amount": 8}, "1"),
                                      ask("orders", {"id": "b", "amount": -1}, "2"),
                                      ask("orders", {"id": "c", "amount": "x"}, "3"),
                                      ProducerRecord("orders", None, b'{"id": "d", "amount": 4}')])
    assert replies["1"] == {"id": "a", "with_tax": 10.0}
    assert replies["2"] is None
    assert isinstance(replies["3"], AgentError)
    assert str(replies["3"]).startswith("flow prices failed at ")
    assert len(replies) == 3  # the record nobody asked about gets no reply


async def test_an_ask_travels_through_a_repartition_to_the_aggregate_that_answers():
    flow = Flow("tally", partitions=2)
    flow.source("votes").group_by(col("choice"), name="by_choice").count(name="counts").to("totals")
    replies = await replies_of(flow, [ask("votes", {"choice": "tea"}, "1"), ask("votes", {"choice": "tea"}, "2"),
                                      ask("votes", {"choice": "coffee"}, "3")])
    assert replies == {"1": {"count": 1}, "2": {"count": 2}, "3": {"count": 1}}
