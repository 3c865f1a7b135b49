"""Event time after a repartition follows the slowest upstream partition, and bounded runs finish.

The pipelines here are the shapes of issue 12's findings 4 and 6: a 10 s tumbling count per
user after a `group_by` over 4 source partitions (the repartition mixes them), fed by a
consumer that hands the source partitions out at very different speeds; `emit final` with
`--until-idle`; a left stream-stream join whose unmatched rows wait for event time. Every
expected output is computed here by brute force from the input alone.
"""
from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow import Flow, Record, tumbling
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.watermarks import is_heartbeat
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, ProducerRecord, Transport

from .conftest import make_transport, read_all

PARTITIONS = 4
WINDOW = 10_000
T0 = 1_700_000_000_000


class Click(Record):
    user: str
    ts: int


def clicks_plan(emit: str, name: str = "wm", on_field: bool = False, topic: str = "clicks") -> ExecutionPlan:
    """Event time from the source's `event_time` (the record timestamp), or (`on_field`) read
    by the window from the `ts` field while the record timestamp is the time of production."""
    flow = Flow(name, partitions=PARTITIONS)
    (flow.source(topic, key=str, value=Click, timestamp=None if on_field else "ts", partitions=PARTITIONS)
     .group_by("user", name="by_user", partitions=PARTITIONS)
     .window(tumbling("10s", on="ts" if on_field else None))  # grace 0: late only if its window has closed
     .count(name="per_user", emit=emit)
     .changes().to("counts" if topic == "clicks" else f"{topic}-counts"))
    return build_plan(flow.topology())


def clicks(seed: int, per_partition: int, start: int = 0) -> dict[int, list[tuple[str, str, int]]]:
    """(session key, user, ts) per source partition, in time order within each partition.

    Partitions cover different time spans, so the fast ones run far ahead of the slow ones.
    """
    rng = random.Random(seed)
    out: dict[int, list[tuple[str, str, int]]] = {}
    for p in range(PARTITIONS):
        ts = T0 + start + p * 7_000
        rows = []
        for i in range(per_partition):
            ts += rng.randrange(0, 900 * (p + 1))
            rows.append((f"s{p}-{i}", f"u{rng.randrange(12)}", ts))
        out[p] = rows
    return out


def to_records(rows: dict[int, list[tuple[str, str, int]]], topic: str = "clicks") -> list[ProducerRecord]:
    return [ProducerRecord(topic, orjson.dumps(k), orjson.dumps({"user": u, "ts": ts}), p)
            for p, part in rows.items() for k, u, ts in part]


def windows_of(rows: dict[int, list[tuple[str, str, int]]]) -> Counter:
    """The brute-force reference: clicks per (user, window start)."""
    return Counter((u, ts - ts % WINDOW) for part in rows.values() for _k, u, ts in part)


class Uneven:
    """A consumer that hands the `clicks` partitions out at very different speeds.

    Partition 0 comes whole and first; 1 three records a fetch; 2 only after 40 fetches;
    3 only after 80, twenty a fetch. What it holds back it seeks back to, as a slow
    broker or a lagging leader would deliver it later.
    """

    SCHEDULE = {0: (0, None), 1: (0, 3), 2: (40, None), 3: (80, 20)}  # partition: (from fetch, at most)

    def __init__(self, inner: Any, topic: str = "clicks") -> None:
        self.inner = inner
        self.topic = topic
        self.fetches = 0
        self.held: set[int] = set()  # the partitions it did hold back

    async def getmany(self, max_records: int, timeout: float) -> dict[TP, list[Any]]:
        self.fetches += 1
        batches = await self.inner.getmany(max_records=max_records, timeout=timeout)
        out = {}
        for tp, messages in batches.items():
            if tp.topic == self.topic:
                after, most = self.SCHEDULE[tp.partition]
                keep = [] if self.fetches < after else messages[:most]
                if len(keep) < len(messages):
                    self.held.add(tp.partition)
                    self.inner.seek(tp, messages[len(keep)].offset)
                messages = keep
            if messages:
                out[tp] = messages
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class UnevenTransport:
    def __init__(self, inner: Transport, topic: str = "clicks") -> None:
        self.inner = inner
        self.topic = topic
        self.made: list[Uneven] = []

    def consumer(self, *args: Any, **kwargs: Any) -> Uneven:
        self.made.append(Uneven(self.inner.consumer(*args, **kwargs), self.topic))
        return self.made[-1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def run_once(transport: Transport, plan: ExecutionPlan, records: list[ProducerRecord], data_dir: Path | None,
                   *, bounded: bool, uneven: bool = True) -> Worker:
    worker = Worker(plan, UnevenTransport(transport) if uneven else transport,  # type: ignore[arg-type]
                    WorkerOptions(batch_size=50, commit_every=200, stdout=io.StringIO(),
                                  data_dir=str(data_dir) if data_dir else None))
    await worker.start()
    if records:
        await worker.producer.send_batch(records)
    await worker.run(until_idle=True, bounded=bounded)
    await worker.stop()
    return worker


def finals(messages: list[Any]) -> list[tuple[str, int, int]]:
    return sorted((orjson.loads(m.key), orjson.loads(m.value)["window_start"], orjson.loads(m.value)["count"])
                  for m in messages if not is_heartbeat(m))


@pytest.mark.parametrize("on_field", [False, True], ids=["event_time", "on_field"])
@pytest.mark.parametrize("emit", ["final", "changes"])
async def test_a_group_by_over_partitions_read_at_different_speeds_drops_nothing(kind, tmp_path, emit, on_field):
    rows = clicks(seed=12, per_partition=150)
    plan = clicks_plan(emit, on_field=on_field)
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = await run_once(transport, plan, to_records(rows), tmp_path / "log" if kind == "local" else None,
                                bounded=True)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    assert worker.transport.made[0].held == {1, 2, 3}  # the schedule did hold the slow partitions back
    assert worker.monitor.as_dict()["late_events"] == 0
    expected = windows_of(rows)
    if emit == "final":  # every window once, the last one of each user included
        assert finals(topics["counts"]) == sorted((u, start, n) for (u, start), n in expected.items())
    else:  # every click counted: one update each, and each window's last update is its total
        updates = [m for m in topics["counts"] if not is_heartbeat(m)]
        assert len(updates) == sum(len(p) for p in rows.values())
        last = {}
        for m in updates:
            value = orjson.loads(m.value)
            last[(orjson.loads(m.key), value["window_start"])] = value["count"]
        assert last == dict(expected)


@pytest.mark.parametrize("on_field", [False, True], ids=["event_time", "on_field"])
async def test_without_the_end_of_input_windows_close_at_the_slowest_partition(kind, tmp_path, on_field):
    # An unbounded run stops with exactly the windows that end at or before the lowest of
    # the partitions' highest times closed: the slowest partition decides, not the fastest.
    rows = clicks(seed=5, per_partition=120)
    plan = clicks_plan("final", on_field=on_field)
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        await run_once(transport, plan, to_records(rows), tmp_path / "log" if kind == "local" else None,
                       bounded=False)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    watermark = min(part[-1][2] for part in rows.values())
    assert finals(topics["counts"]) == sorted((u, start, n) for (u, start), n in windows_of(rows).items()
                                              if start + WINDOW <= watermark)


@pytest.mark.parametrize("on_field", [False, True], ids=["event_time", "on_field"])
async def test_a_restart_in_the_middle_keeps_each_upstream_partitions_watermark(kind, tmp_path, on_field):
    # Run 1 reads partition 0 far ahead (to +400 s) and the others to about +60 s. Run 2, a
    # new worker on the same state, reads more of partitions 1-3 and nothing of 0: only the
    # watermark of partition 0 saved with the table lets it close the windows in between.
    first = clicks(seed=3, per_partition=60)
    first[0] = [(f"s0-{i}", f"u{i % 12}", T0 + i * 6_000) for i in range(70)]
    second = clicks(seed=4, per_partition=60, start=200_000)
    second[0] = []
    plan = clicks_plan("final", on_field=on_field)
    data = tmp_path / "log" if kind == "local" else None
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        await run_once(transport, plan, to_records(first), data, bounded=False)
        if kind == "local":  # a new process: the log and the stores are opened again
            await transport.stop()
            transport = make_transport(kind, tmp_path / "log")
            await transport.start()
        await run_once(transport, plan, to_records(second), data, bounded=False)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    both = {p: first[p] + second[p] for p in range(PARTITIONS)}
    watermark = min(part[-1][2] for part in both.values())
    assert watermark > max(first[p][-1][2] for p in (1, 2, 3))  # run 2 moved it, with partition 0 silent
    assert finals(topics["counts"]) == sorted((u, start, n) for (u, start), n in windows_of(both).items()
                                              if start + WINDOW <= watermark)


async def test_watermark_headers_ride_on_records_and_heartbeats_reach_partitions_that_got_none(kind, tmp_path):
    # One user: every record lands on one repartition partition; the three others hear of
    # the watermark through heartbeats alone, and steps never see them.
    rows = {p: [(f"s{p}-{i}", "only", T0 + p * 1_000 + i * 5_000) for i in range(20)] for p in range(PARTITIONS)}
    plan = clicks_plan("final")
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = await run_once(transport, plan, to_records(rows), tmp_path / "log" if kind == "local" else None,
                                bounded=True, uneven=False)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    repartition = topics["wm-by_user-repartition"]
    data = [m for m in repartition if not is_heartbeat(m)]
    beats = [m for m in repartition if is_heartbeat(m)]
    assert {m.partition for m in data} == {data[0].partition}
    assert len(data) == 80
    assert {m.partition for m in beats} == set(range(PARTITIONS))  # the end of input reaches all
    assert all(m.key is None and m.value is None for m in beats)
    d = worker.monitor.as_dict()
    assert d["heartbeats_sent"] == len(beats) == d["heartbeats_received"]
    assert d["messages_received_by_topic"]["wm-by_user-repartition"] == 80
    assert d["dead_letters"] == 0
    assert finals(topics["counts"]) == sorted((u, s, n) for (u, s), n in windows_of(rows).items())


def disordered(seed: int, per_partition: int) -> dict[int, list[tuple[str, str, int]]]:
    """Like `clicks`, but a fifth of the records are up to 25 s early: many late where they come from."""
    rng = random.Random(seed)
    rows = clicks(seed, per_partition)
    return {p: [(k, u, ts - rng.randrange(25_000) if rng.random() < 0.2 else ts) for k, u, ts in part]
            for p, part in rows.items()}


def judged_at_origin(rows: dict[int, list[tuple[str, str, int]]]) -> tuple[Counter, int]:
    """The reference: a record is late when its window had closed at the highest time read
    before it from its own source partition (grace 0); the rest are counted."""
    counts, late = Counter(), 0
    for part in rows.values():
        high = None
        for _k, u, ts in part:
            start = ts - ts % WINDOW
            if high is not None and start + WINDOW <= high:
                late += 1
            else:
                counts[(u, start)] += 1
            high = ts if high is None else max(high, ts)
    return counts, late


@pytest.mark.parametrize("on_field", [False, True], ids=["event_time", "on_field"])
@pytest.mark.parametrize("uneven", [False, True], ids=["even", "uneven"])
async def test_late_records_are_those_late_where_they_came_from_whatever_the_speeds(kind, tmp_path, on_field, uneven):
    rows = disordered(seed=8, per_partition=150)
    plan = clicks_plan("final", on_field=on_field)
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = await run_once(transport, plan, to_records(rows), tmp_path / "log" if kind == "local" else None,
                                bounded=True, uneven=uneven)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    counts, late = judged_at_origin(rows)
    assert late == 89  # of 600: the input does have records late where they come from
    assert worker.monitor.as_dict()["late_events"] == late
    assert finals(topics["counts"]) == sorted((u, start, n) for (u, start), n in counts.items())


async def test_a_through_topic_carries_watermarks_too(kind, tmp_path):
    # `through` writes records to the partitions of their keys, mixing the source partitions
    # as a repartition does; the windows after it follow the slowest of them.
    flow = Flow("thru", partitions=PARTITIONS)
    (flow.source("clicks", key=str, value=Click, timestamp="ts", partitions=PARTITIONS)
     .through("thru-mid", partitions=PARTITIONS)
     .window(tumbling("10s"))
     .count(name="per_key", emit="final")
     .changes().to("counts"))
    plan = build_plan(flow.topology())
    rows = clicks(seed=17, per_partition=100)
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = await run_once(transport, plan, to_records(rows), tmp_path / "log" if kind == "local" else None,
                                bounded=True)
        topics = await read_all(transport)
    finally:
        await transport.stop()
    assert worker.transport.made[0].held == {1, 2, 3}
    assert worker.monitor.as_dict()["late_events"] == 0
    expected = Counter((k, ts - ts % WINDOW) for part in rows.values() for k, _u, ts in part)
    assert finals(topics["counts"]) == sorted((k, start, n) for (k, start), n in expected.items())
