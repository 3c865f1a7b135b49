"""Helpers for running plans on the Kafka test broker and reading back exactly what they wrote.

The broker is shared by the whole session (see tests/kafka_broker.py), so every test
names its pipeline and topics with `unique_name`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KTP

from dataflow import Flow
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.monitor import Monitor
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, Message, ProducerRecord, Transport, open_transport
from dataflow.transport.kafka import KafkaTransport
from tests.kafka_broker import unique_name


@dataclass
class Run:
    plan: ExecutionPlan
    monitor: Monitor
    topics: dict[str, list[Message]]  # every topic of the plan, partition by partition, in offset order
    stdout: str = ""
    committed: dict[TP, int | None] = field(default_factory=dict)
    ends: dict[TP, int] = field(default_factory=dict)

    def values(self, topic: str) -> list[Any]:
        return [orjson.loads(m.value) for m in self.topics[topic]]

    def contents(self, topic: str) -> dict[int, list[tuple[Any, ...]]]:
        """Per partition, in offset order: (offset, key, value, timestamp, headers) as bytes."""
        out: dict[int, list[tuple[Any, ...]]] = {}
        for m in self.topics[topic]:
            out.setdefault(m.partition, []).append((m.offset, m.key, m.value, m.timestamp, m.headers))
        return out


async def read_topics(transport: Transport, topics: list[str]) -> dict[str, list[Message]]:
    """Everything the topics hold now, read by a throwaway group to the true end."""
    out: dict[str, list[Message]] = {t: [] for t in topics}
    counts = await transport.describe_topics(topics)
    present = [t for t in topics if t in counts]
    if not present:
        return out
    per_tp: dict[TP, list[Message]] = {}
    async with transport.consumer(unique_name("reader"), present) as consumer:
        for _ in range(1000):  # a bound on polls, not a timing assertion
            assigned = consumer.assignment()
            ends = await consumer.end_offsets(assigned)
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            for tp, msgs in (await consumer.getmany(max_records=10_000, timeout=0.1)).items():
                per_tp.setdefault(tp, []).extend(msgs)
    for tp in sorted(per_tp):
        out[tp.topic].extend(per_tp[tp])
    return out


async def committed_offsets(transport: KafkaTransport, group: str, tps: list[TP]) -> dict[TP, int | None]:
    """The group's committed offsets, read without joining it (Tansu cannot answer the
    admin client's OffsetFetch, but a consumer's works)."""
    consumer = AIOKafkaConsumer(**transport.config.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: await consumer.committed(KTP(tp.topic, tp.partition)) for tp in tps}
    finally:
        await consumer.stop()


async def run_on(transport: Transport, flow: Flow | ExecutionPlan,
                 inputs: dict[str, list[ProducerRecord]] | None = None, *, batch_size: int = 1000) -> Run:
    """Start a worker on a started transport, produce `inputs`, run until idle, stop, read back."""
    plan = flow if isinstance(flow, ExecutionPlan) else build_plan(flow.topology())
    stdout = io.StringIO()
    worker = Worker(plan, transport, WorkerOptions(batch_size=batch_size, stdout=stdout))
    await worker.start()
    for topic, records in (inputs or {}).items():
        await worker.producer.send_batch([ProducerRecord(topic, r.key, r.value, r.partition, r.timestamp, r.headers)
                                          for r in records])
    await worker.run(until_idle=True)
    await worker.stop()
    topics = await read_topics(transport, [t.name for t in plan.topics])
    sources = sorted({t for a in plan.agents for t in a.source_topics})
    counts = await transport.describe_topics(sources)
    ends = {TP(t, p): 0 for t in sources for p in range(counts[t])}
    for t in sources:
        for m in topics[t]:
            ends[TP(t, m.partition)] = m.offset + 1
    if isinstance(transport, KafkaTransport):
        done = await committed_offsets(transport, plan.name, sorted(ends))
    else:
        broker = transport.broker  # type: ignore[attr-defined]
        done = {tp: broker.committed(plan.name, tp) for tp in ends}
    committed = {tp: done.get(tp) for tp in ends}
    return Run(plan, worker.monitor, topics, stdout.getvalue(), committed, ends)


async def run_url(url: str, flow: Flow, inputs: dict[str, list[ProducerRecord]] | None = None, **kw: Any) -> Run:
    transport = open_transport(url, ".")
    await transport.start()
    try:
        return await run_on(transport, flow, inputs, **kw)
    finally:
        await transport.stop()


def record(value: Any, key: Any = None, timestamp: int | None = None,
           headers: tuple[tuple[str, bytes], ...] = ()) -> ProducerRecord:
    """An input record: JSON-encoded value (bytes pass through untouched) and key."""
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    k = key if isinstance(key, bytes) or key is None else orjson.dumps(key)
    return ProducerRecord("", k, raw, timestamp=timestamp, headers=headers)
