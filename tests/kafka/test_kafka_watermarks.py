"""Issue 12, finding 6 on Kafka: a group_by before a 10 s tumbling count over 4 partitions
read at very different speeds drops nothing with grace 0, and emit final gives every window.

The same pipelines and brute-force references as tests/e2e/test_watermarks.py, on the
Tansu broker: the consumer wrapper holds partitions back, and the source may also carry
records late where they came from (those, and only those, are dropped).
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from dataflow.runtime.watermarks import is_heartbeat
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import open_transport
from tests.e2e.test_watermarks import (UnevenTransport, clicks, clicks_plan, disordered, finals, judged_at_origin,
                                       to_records, windows_of)
from tests.kafka.conftest import read_topics
from tests.kafka_broker import unique_name

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("late_input", [False, True], ids=["in_order", "late_at_origin"])
async def test_group_by_at_different_speeds_on_kafka_drops_only_what_was_late_where_it_came_from(
        kafka_url: str, tmp_path: Path, late_input: bool) -> None:
    topic = unique_name("clicks")
    rows = disordered(seed=31, per_partition=120) if late_input else clicks(seed=30, per_partition=120)
    plan = clicks_plan("final", name=unique_name("wm"), on_field=True, topic=topic)
    transport = open_transport(kafka_url, str(tmp_path))
    await transport.start()
    try:
        worker = Worker(plan, UnevenTransport(transport, topic),  # type: ignore[arg-type]
                        WorkerOptions(batch_size=50, commit_every=200, stdout=io.StringIO(), data_dir=str(tmp_path)))
        await worker.start()
        await worker.producer.send_batch(to_records(rows, topic))
        await worker.run(until_idle=True)
        await worker.stop()
        topics = await read_topics(transport, [f"{topic}-counts"])
    finally:
        await transport.stop()
    counts, late = judged_at_origin(rows) if late_input else (windows_of(rows), 0)
    assert worker.monitor.as_dict()["late_events"] == late
    out = [m for m in topics[f"{topic}-counts"] if not is_heartbeat(m)]
    assert finals(out) == sorted((u, start, n) for (u, start), n in counts.items())
