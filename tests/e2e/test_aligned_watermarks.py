"""A task that is time-aligned AND follows watermarks: two re-keyed streams merged into one
window read two repartition topics, so their records wait in the aligner's queues while
the watermarks in those topics' headers (and heartbeats) decide when windows close.

Heartbeats must stay in their queue (never decoded, never dead-lettered) and their marks
apply where they stand, or records still queued would be judged against a watermark written
after them and dropped as late.
"""
from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dataflow import Flow, Record, tumbling
from dataflow.planner import plan as build_plan
from dataflow.runtime.watermarks import is_heartbeat
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import ProducerRecord

from .conftest import make_transport, read_all

T0 = 1_700_000_000_000
WINDOW = 10_000


class View(Record):
    user: str
    ts: int


def merged_windows_plan(emit: str):  # type: ignore[no-untyped-def]
    flow = Flow("mw", partitions=3)
    pages = flow.source("pages", key=str, value=View, timestamp="ts", partitions=3).group_by("user", name="p_by_user")
    ads = flow.source("ads", key=str, value=View, timestamp="ts", partitions=3).group_by("user", name="a_by_user")
    (pages.merge(ads, name="both").window(tumbling("10s"))
     .count(name="per_user", emit=emit).changes().to("counts"))
    return build_plan(flow.topology())


def inputs(seed: int) -> dict[str, list[tuple[int, str, int]]]:
    """(partition, user, ts) per topic; each partition in time order, the two topics at
    different paces so that one runs far ahead of the other."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[int, str, int]]] = {}
    for topic, pace in (("pages", 700), ("ads", 2_300)):
        rows = []
        for p in range(3):
            ts = T0 + p * 1_000
            for _ in range(60):
                ts += rng.randrange(pace)
                rows.append((p, f"u{rng.randrange(7)}", ts))
        out[topic] = rows
    return out


@pytest.mark.parametrize("batch_size", [7, 200])
@pytest.mark.parametrize("emit", ["final", "changes"])
async def test_merged_repartitions_are_aligned_and_follow_watermarks(kind, tmp_path: Path, emit, batch_size):
    data = inputs(seed=batch_size)
    plan = merged_windows_plan(emit)
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = Worker(plan, transport, WorkerOptions(batch_size=batch_size, commit_every=100, stdout=io.StringIO(),
                                                       data_dir=str(tmp_path / "log") if kind == "local" else None))
        await worker.start()
        assert worker.aligner is not None  # the merge reads two repartition topics: an aligned task
        await worker.producer.send_batch([
            ProducerRecord(topic, orjson.dumps(f"k{i}"), orjson.dumps({"user": user, "ts": ts}), p)
            for topic, rows in data.items() for i, (p, user, ts) in enumerate(rows)])
        await worker.run(until_idle=True, bounded=True)
        await worker.stop()
        topics = await read_all(transport)
    finally:
        await transport.stop()
    stats = worker.monitor.as_dict()
    assert (stats["late_events"], stats["dead_letters"]) == (0, 0)
    expected = Counter((user, ts - ts % WINDOW) for rows in data.values() for _p, user, ts in rows)
    counts = [m for m in topics["counts"] if not is_heartbeat(m)]
    if emit == "final":
        got = sorted((orjson.loads(m.key), orjson.loads(m.value)["window_start"], orjson.loads(m.value)["count"])
                     for m in counts)
        assert got == sorted((u, start, n) for (u, start), n in expected.items())
    else:
        last = {}
        for m in counts:
            value = orjson.loads(m.value)
            last[(orjson.loads(m.key), value["window_start"])] = value["count"]
        assert (len(counts), last) == (sum(expected.values()), dict(expected))
