"""Helpers for end-to-end runs of plans on `memory://` and on the local log (LevelDB tables)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow import Flow
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.monitor import Monitor
from dataflow.runtime.watermarks import is_heartbeat
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, Message, ProducerRecord, Transport
from dataflow.transport.local import LocalTransport
from dataflow.transport.memory import MemoryTransport

KINDS = ["memory", "local"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test that takes `kind` runs on both embedded transports."""
    return request.param


def make_transport(kind: str, data_dir: Path) -> Transport:
    return MemoryTransport() if kind == "memory" else LocalTransport(data_dir)


def record(value: Any, key: Any = None) -> ProducerRecord:
    """An input record: JSON-encoded value (bytes pass through untouched) and key."""
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    k = key if isinstance(key, bytes) or key is None else orjson.dumps(key)
    return ProducerRecord("", k, raw)


@dataclass
class Run:
    plan: ExecutionPlan
    monitor: Monitor
    topics: dict[str, list[Message]]  # every topic's messages, partition by partition
    stdout: str = ""
    committed: dict[TP, int | None] = field(default_factory=dict)
    ends: dict[TP, int] = field(default_factory=dict)
    tables: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)  # rows when the run went idle

    def messages(self, topic: str) -> list[Message]:
        """What a topic holds, without the heartbeats that carry watermarks (control records)."""
        return [m for m in self.topics[topic] if not is_heartbeat(m)]

    def values(self, topic: str) -> list[Any]:
        return [orjson.loads(m.value) for m in self.messages(topic)]

    def pairs(self, topic: str) -> list[tuple[Any, Any]]:
        return [(orjson.loads(m.key) if m.key is not None else None, orjson.loads(m.value))
                for m in self.messages(topic)]

    def by_partition(self, topic: str) -> dict[int, list[tuple[Any, Any]]]:
        out: dict[int, list[tuple[Any, Any]]] = {}
        for m in self.messages(topic):
            out.setdefault(m.partition, []).append(
                (orjson.loads(m.key) if m.key is not None else None, orjson.loads(m.value)))
        return out


async def read_all(transport: Transport) -> dict[str, list[Message]]:
    broker = transport.broker  # type: ignore[attr-defined]
    out: dict[str, list[Message]] = {}
    for topic in broker.list_topics():
        msgs: list[Message] = []
        for p in range(broker.spec(topic).partitions):
            tp = TP(topic, p)
            msgs.extend(await broker.read(tp, 0, broker.end_offset(tp) + 1))
        out[topic] = msgs
    return out


async def run_on(transport: Transport, flow: Flow | ExecutionPlan, inputs: dict[str, list[ProducerRecord]] | None = None,
                 *, batch_size: int = 1000, after_start: Any = None, bounded: bool | None = None) -> Run:
    """Start a worker on a started transport, produce `inputs`, run until idle, stop.

    `bounded=False`: stop when idle without finishing (windows and join rows stay open).
    """
    plan = flow if isinstance(flow, ExecutionPlan) else build_plan(flow.topology())
    stdout = io.StringIO()
    data_dir = str(transport.log.path.parent) if isinstance(transport, LocalTransport) else None
    worker = Worker(plan, transport, WorkerOptions(batch_size=batch_size, stdout=stdout, data_dir=data_dir))
    await worker.start()
    for topic, records in (inputs or {}).items():
        await worker.producer.send_batch([ProducerRecord(topic, r.key, r.value, r.partition, r.timestamp, r.headers)
                                          for r in records])
    if after_start is not None:
        await after_start(worker)
    await worker.run(until_idle=True, bounded=bounded)
    tables = {name: table.rows() for name, table in worker.tables.items()}
    await worker.stop()
    broker = transport.broker  # type: ignore[attr-defined]
    committed: dict[TP, int | None] = {}
    ends: dict[TP, int] = {}
    for topic in sorted({t for a in plan.agents for t in a.source_topics}):
        for p in range(broker.spec(topic).partitions):
            tp = TP(topic, p)
            committed[tp] = broker.committed(plan.name, tp)
            ends[tp] = broker.end_offset(tp)
    return Run(plan, worker.monitor, await read_all(transport), stdout.getvalue(), committed, ends, tables)


async def run_flow(kind: str, tmp_path: Path, flow: Flow, inputs: dict[str, list[ProducerRecord]] | None = None,
                   **kw: Any) -> Run:
    transport = make_transport(kind, tmp_path / "data")
    await transport.start()
    try:
        return await run_on(transport, flow, inputs, **kw)
    finally:
        await transport.stop()
