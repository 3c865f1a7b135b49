"""Tables are rebuilt from their changelogs: a lost store, a store behind its changelog.

The changelog is the truth and a LevelDB store a cache of it (`runtime.state`). These tests
run a stateful pipeline on the embedded local log, stop it, then damage its stores the way
disks and operators do -- delete a store partition's directory, or put back an old copy
of it -- and run again. The tables must come back exactly, only the missing part of each
changelog may be replayed, and new input must carry on as if nothing had happened: same
counts, same windows, the same late events dropped (stream time is restored too).
"""
from __future__ import annotations

import asyncio
import io
import random
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow import Flow, Record, agg, session, sliding, tumbling
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.query import read_table
from dataflow.runtime.state import META_HEADER
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.state.stores import LevelDBStore, store_path
from dataflow.state.table import PLAIN_KEYS, TablePartition
from dataflow.transport.base import TP, ProducerRecord
from dataflow.transport.local import LocalTransport

PARTITIONS = 2
TABLES = ("counts", "per_window", "recent", "recent.events", "sessions", "sessions.events")  # NAME.events: buffers
SINKS = ("counts-out", "windows-out", "recent-out", "sessions-out")


class Ev(Record):
    word: str
    n: int
    ts: int


def make_plan() -> ExecutionPlan:
    flow = Flow("rec", partitions=PARTITIONS)
    # One source partition: the order of each key's events is the same in every run.
    by_word = (flow.source("ev", value=Ev, timestamp="ts", partitions=1)
               .group_by("word", name="by_word", partitions=PARTITIONS))
    by_word.aggregate(count=agg.count(), total=agg.sum("n"), ns=agg.collect("n"), name="counts").to("counts-out")
    (by_word.window(tumbling("10s", grace="2s", expires="30s", on="ts"))
        .aggregate(count=agg.count(), total=agg.sum("n"), name="per_window", emit="final").to("windows-out"))
    (by_word.window(sliding("5s", grace="1s", expires="20s", on="ts"))
        .aggregate(count=agg.count(), ns=agg.collect("n"), name="recent").to("recent-out"))
    (by_word.window(session("2s", grace="1s", expires="30s", on="ts"))
        .aggregate(count=agg.count(), ns=agg.collect("n"), name="sessions", emit="final").to("sessions-out"))
    return build_plan(flow.topology())


PLAN = make_plan()
WORDS = [f"w{i}" for i in range(9)]


def events(seed: int, start: int, end: int, count: int) -> list[dict[str, Any]]:
    """Mostly in time order between start and end (ms), some up to 3 s out of order."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ts = start + (end - start) * i // count - (rng.randrange(3000) if rng.random() < 0.2 else 0)
        out.append({"word": rng.choice(WORDS), "n": rng.randrange(1, 50), "ts": max(start, ts)})
    return out


def late_for(stream_time: int) -> list[dict[str, Any]]:
    """One event per word 20 s before `stream_time`: late for a store that remembers its stream time
    (grace: 2 s tumbling, 1 s sliding), accepted by one that forgot it."""
    return [{"word": w, "n": 1, "ts": stream_time - 20_000 + i} for i, w in enumerate(WORDS)]


A = events(1, 0, 60_000, 300)
B = late_for(60_000) + events(2, 60_000, 120_000, 300)
C = late_for(120_000) + events(3, 120_000, 150_000, 200)


@dataclass
class Result:
    tables: dict[str, list[tuple[Any, Any]]]
    sinks: dict[str, dict[Any, list[Any]]]  # topic -> key -> values in order
    restored: int
    late: int


async def run(data: Path, records: list[dict[str, Any]]) -> Result:
    """One `dataflow run --until-idle --unbounded` of PLAN on the local log in `data`, fed `records` first."""
    transport = LocalTransport(data)
    await transport.start()
    try:
        worker = Worker(PLAN, transport, WorkerOptions(batch_size=13, commit_every=40, stdout=io.StringIO(),
                                                       data_dir=str(data)))
        await worker.start()
        if records:
            await worker.producer.send_batch([ProducerRecord("ev", None, orjson.dumps(r)) for r in records])
        # Each run is a chunk of one stream: it stops when idle without finishing (an
        # unbounded run), so windows close by event time across runs, never at a run's end.
        await worker.run(until_idle=True, bounded=False)
        tables = {name: worker.tables[name].rows() for name in TABLES}
        await worker.stop()
        log = transport.log
        sinks: dict[str, dict[Any, list[Any]]] = {}
        for topic in SINKS:
            per_key = sinks.setdefault(topic, {})
            for p in range(log.spec(topic).partitions):
                for m in await log.read(TP(topic, p), 0, log.end_offset(TP(topic, p))):
                    per_key.setdefault(orjson.loads(m.key), []).append(orjson.loads(m.value))
        dead = log.spec("rec-dead-letters")
        assert sum(log.end_offset(TP(dead.name, p)) for p in range(dead.partitions)) == 0
        monitor = worker.monitor.as_dict()
        return Result(tables, sinks, monitor["restored_records"], monitor["late_events"])
    finally:
        await transport.stop()


async def changelog_records(data: Path, store: str, partition: int, start: int = 0) -> int:
    """How many key records (not stream-time records) a store's changelog partition holds from `start`."""
    transport = LocalTransport(data)
    await transport.start()
    try:
        tp = TP(PLAN.store(store).changelog, partition)
        messages = await transport.log.read(tp, start, transport.log.end_offset(tp))
        return sum(1 for m in messages if not any(h == META_HEADER for h, _ in m.headers))
    finally:
        await transport.stop()


def applied_offset(data: Path, store: str, partition: int) -> int:
    """The changelog offset a store partition has applied up to, as it recorded it."""
    leveldb = LevelDBStore(store, partition, store_path(data, store, partition))
    try:
        return TablePartition(leveldb, PLAIN_KEYS).changelog_offset
    finally:
        leveldb.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """A data directory no one damages: A, then B, then C, each in a run of its own."""
    data = tmp_path_factory.mktemp("reference")

    async def runs() -> dict[str, Result]:
        return {"A": await run(data, A), "B": await run(data, B), "C": await run(data, C)}
    out = asyncio.run(runs())
    # The reference is right on its own terms: the plain counts are what the inputs say.
    words = Counter(e["word"] for e in A + B + C)
    assert {k: v["count"] for k, v in out["C"].tables["counts"]} == dict(words)
    assert out["B"].late >= 2 * len(WORDS) and out["C"].late >= 2 * len(WORDS)  # late_for(...) in both windows
    assert all(out[phase].restored == 0 for phase in out)  # nothing was lost, nothing replayed
    return out


def delete(data: Path, store: str, partitions: list[int]) -> None:
    for p in partitions:
        path = store_path(data, store, p)
        assert path.is_dir()
        shutil.rmtree(path)


@pytest.mark.parametrize("store", TABLES)
@pytest.mark.parametrize("which", ["one partition", "all partitions"])
async def test_a_deleted_store_is_rebuilt_from_its_changelog(tmp_path, reference, store, which):
    data = tmp_path / "data"
    first = await run(data, A)
    assert first.tables == reference["A"].tables
    partitions = [1] if which == "one partition" else list(range(PARTITIONS))
    expected_replay = sum([await changelog_records(data, store, p) for p in partitions])
    assert expected_replay > 0
    delete(data, store, partitions)

    # A run with no new input rebuilds exactly the deleted partitions, and emits nothing.
    again = await run(data, [])
    assert again.restored == expected_replay
    assert again.tables == first.tables
    assert again.sinks == first.sinks
    assert all(applied_offset(data, store, p) > 0 for p in partitions)

    # New input carries on from the rebuilt state: the same as if the store had never been lost.
    later = await run(data, B)
    assert later.restored == 0
    assert later.tables == reference["B"].tables
    assert later.sinks == reference["B"].sinks
    assert later.late == reference["B"].late


async def test_dataflow_query_rebuilds_a_deleted_table_too(tmp_path, reference):
    data = tmp_path / "data"
    first = await run(data, A)
    for table in TABLES:
        delete(data, table, list(range(PARTITIONS)))
    for table in ("counts", "per_window", "recent", "sessions"):
        assert await read_table(PLAN, table, data) == first.tables[table]
    again = await run(data, B)
    assert again.restored == 0  # the query left the stores caught up
    assert again.tables == reference["B"].tables


@pytest.mark.parametrize("store", TABLES)
async def test_a_store_behind_its_changelog_catches_up(tmp_path, reference, store):
    data = tmp_path / "data"
    await run(data, A)
    old = tmp_path / "old"
    shutil.copytree(data / "state" / store, old)
    behind_from = {p: applied_offset(data, store, p) for p in range(PARTITIONS)}
    after_b = await run(data, B)
    # Put back the copy from before B: the store is behind its changelog (its data and its
    # stream time are A's), as after a crash between a commit and the store's flush.
    shutil.rmtree(data / "state" / store)
    shutil.copytree(old, data / "state" / store)
    missing = sum([await changelog_records(data, store, p, behind_from[p]) for p in range(PARTITIONS)])
    assert missing > 0
    twin = tmp_path / "twin"
    shutil.copytree(data, twin)

    # With no new input: exactly the missing suffix is replayed, and the tables are B's again.
    caught_up = await run(data, [])
    assert caught_up.restored == missing
    assert caught_up.tables == after_b.tables
    assert caught_up.sinks == after_b.sinks

    # With new input straight away: C is decided on B's stream time (late_for(B) is late).
    later = await run(twin, C)
    assert later.restored == missing
    assert later.tables == reference["C"].tables
    assert later.late == reference["C"].late
    assert later.sinks == reference["C"].sinks
