"""Every example pipeline in full on the Kafka test broker, and `dataflow run --until-idle`
with several workers.

Each example (`examples/*.flow` and its builder twin `examples/*.py`) runs on Kafka and on
memory:// with the same input records, including their timestamps. The tables each worker
holds once idle, and what every sink, repartition and dead-letter topic holds, must be the
same on both, and equal to values written out here. A table rebuilt from its changelog in a
fresh data directory (`read_table` against the broker) must equal it too. Changelog topics
are not compared record by record: how many records they hold depends on commit boundaries.

The broker is shared by the session, so each run renames the pipeline and its user topics
with a unique suffix (`renamed`): the same graph of steps under other topic names.

Where records reach a partition from more than one upstream partition, their interleaving
depends on fetch timing. Topic contents are therefore compared per partition and per key:
a key's records keep their order (each example's inputs are chosen so a key's records come
from one upstream partition, or, for `orders`, compared as a multiset).

Several workers: two `dataflow run --until-idle` processes share an 8-partition input, started
together or one while the other runs, and must make exactly the tables and outputs of one run.
"""
from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow.ir import nodes as n
from dataflow.ir.topology import Topology
from dataflow.loader import load_pipeline
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.monitor import Monitor
from dataflow.runtime.query import read_table
from dataflow.runtime.runner import encode_line
from dataflow.runtime.watermarks import BEHIND, HEADER, is_heartbeat
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import Message, ProducerRecord, TopicSpec, open_transport, partition_for
from tests.kafka_broker import unique_name

from .conftest import read_topics, record

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
T0 = 1_795_000_000_000
MIN = 60_000
VARIANTS = ("flow", "py")

Inputs = dict[str, list[ProducerRecord]]  # by topic name as the example spells it


# ---------------------------------------------------------------------------- running an example


def renamed(topology: Topology, sfx: str) -> Topology:
    """The same steps with `sfx` after the pipeline's name and every user topic's name
    (internal topics take the pipeline's name, so they follow)."""

    def rename(node: n.Node) -> n.Node:
        if isinstance(node, (n.Source, n.TableSource, n.Through)):
            return dataclasses.replace(node, topic=node.topic + sfx)
        if isinstance(node, n.Echo):
            return dataclasses.replace(node, topics=tuple(t + sfx for t in node.topics))
        if isinstance(node, n.Sink) and node.sink == "topic":
            return dataclasses.replace(node, target=node.target + sfx)
        return node

    out = topology.map_nodes(rename)
    return Topology(topology.name + sfx, out.settings, out.graph)


def example_plan(name: str, variant: str, sfx: str = "", **overrides: Any) -> ExecutionPlan:
    flow = load_pipeline(str(EXAMPLES / f"{name}.{variant}"), overrides)
    return build_plan(renamed(flow.topology(), sfx))


class SteppedClock:
    """The timers' clock (epoch seconds): it moves only when the test calls `advance`, and
    `sleep` returns once it has moved far enough, so every tick happens at a chosen time."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeping = 0
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + seconds
        self.sleeping += 1
        try:
            while self.now < target - 1e-9:
                moved = self._moved
                await moved.wait()
        finally:
            self.sleeping -= 1

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._moved.set()
        self._moved = asyncio.Event()


async def until(condition: Callable[[], bool], what: str, polls: int = 2000) -> None:
    for _ in range(polls):  # a bound on polls (a hang guard), not a timing assertion
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


@dataclass
class Outcome:
    plan: ExecutionPlan
    sfx: str
    tables: dict[str, list[tuple[Any, Any]]]  # rows of every table once the worker was idle
    topics: dict[str, list[Message]]  # every topic but the changelogs, by the name the example gives it
    monitor: Monitor

    def records(self, topic: str) -> list[tuple[Any, Any, int]]:
        """(key, value, timestamp) in partition, then offset order."""
        return [(_json(m.key), _json(m.value), m.timestamp) for m in self.topics[topic] if not is_heartbeat(m)]

    def by_key(self, topic: str) -> dict[Any, list[Any]]:
        """Each key's values, in offset order."""
        out: dict[Any, list[Any]] = {}
        for key, value, _ts in self.records(topic):
            out.setdefault(_hashable(key), []).append(value)
        return out

    def canonical(self, topic: str, ordered: bool = True, volatile: str | None = None) -> dict[int, dict[Any, Any]]:
        """Per partition, per key: (value, timestamp, headers) in offset order (`ordered`),
        else sorted. Offsets, and the interleaving of keys in a partition, are left out; so is
        the `volatile` field of values (a wall-clock time), but not whether it is there."""
        out: dict[int, dict[Any, list[Any]]] = {}
        for m in self.topics[topic]:
            if is_heartbeat(m):
                continue  # watermarks for the reader: where they fall depends on batching
            value = _json(m.value)
            if volatile is not None and isinstance(value, dict) and volatile in value:
                value = {**value, volatile: "..."}
            # a dead letter's dataflow.source header names the renamed topic
            headers = [(k, unsuffixed(v.decode(), self.sfx)) for k, v in m.headers if k not in (HEADER, BEHIND)]
            row = (value, m.timestamp, headers)
            out.setdefault(m.partition, {}).setdefault(_hashable(_json(m.key)), []).append(row)
        if not ordered:
            out = {p: {k: sorted(rows, key=repr) for k, rows in keys.items()} for p, keys in out.items()}
        return out


def unsuffixed(name: str, sfx: str) -> str:
    return name.replace(sfx, "") if sfx else name


def _json(raw: bytes | None) -> Any:
    """The decoded JSON, or the bytes themselves when they are not JSON (a dead letter's)."""
    try:
        return None if raw is None else orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def sorted_rows(rows: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return sorted(rows, key=repr)


Drive = Callable[[Worker], Awaitable[None]]


async def run_example(url: str, plan: ExecutionPlan, sfx: str, phases: list[Inputs], *,
                      data_dir: Path | None = None, drive: Drive | None = None,
                      clock: SteppedClock | None = None, batch_size: int = 1000) -> Outcome:
    """One worker: each phase's records are produced and the worker runs until idle before
    the next phase; then `drive` (e.g. ticks of the timers). Returns what it holds and wrote."""
    transport = open_transport(url, str(data_dir or "."), plan.settings)
    await transport.start()
    try:
        worker = Worker(plan, transport, WorkerOptions(
            batch_size=batch_size, stdout=io.StringIO(), data_dir=str(data_dir) if data_dir else None,
            timer_clock=clock, timer_sleep=clock.sleep if clock else None))
        await worker.start()
        for phase in phases:
            await worker.producer.send_batch([
                ProducerRecord(topic + sfx, r.key, r.value, r.partition, r.timestamp, r.headers)
                for topic, records in phase.items() for r in records])
            # Phases are chunks of one stream: stop idle without finishing (windows and join
            # rows close by event time across phases, never at a phase's end).
            await worker.run(until_idle=True, bounded=False)
        if drive is not None:
            await drive(worker)
        tables = {name: table.rows() for name, table in worker.tables.items()}
        await worker.stop()
        names = [t.name for t in plan.topics if t.role != "changelog"]
        topics = await read_topics(transport, names)
    finally:
        await transport.stop()
    return Outcome(plan, sfx, tables, {unsuffixed(name, sfx): msgs for name, msgs in topics.items()},
                   worker.monitor)


async def run_everywhere(kafka_url: str, tmp_path: Path, example: str, phases: list[Inputs], *,
                         unordered: tuple[str, ...] = (), volatile: dict[str, str] | None = None,
                         make_drive: Callable[[SteppedClock], Drive] | None = None,
                         clock_start: float = 0.0, **overrides: Any) -> Outcome:
    """Both variants of `example` on Kafka (at once) and on memory://; everything must agree.
    Returns the Kafka run of the `.flow` variant, for the test's own exact expectations."""

    async def one(variant: str, url: str) -> Outcome:
        sfx = "-" + unique_name(example) if url != "memory://" else ""
        plan = example_plan(example, variant, sfx, **overrides)
        clock = SteppedClock(clock_start) if make_drive else None
        drive = make_drive(clock) if make_drive and clock else None
        data_dir = tmp_path / f"{variant}-data" if url != "memory://" else None
        return await run_example(url, plan, sfx, phases, data_dir=data_dir, drive=drive, clock=clock)

    on_kafka = dict(zip(VARIANTS, await asyncio.gather(*(one(v, kafka_url) for v in VARIANTS))))
    on_memory = {v: await one(v, "memory://") for v in VARIANTS}
    reference = on_memory["flow"]
    compared = sorted(t for t in reference.topics)
    assert compared  # the comparisons below compare something
    for run in [*on_kafka.values(), on_memory["py"]]:
        assert sorted(run.topics) == compared
        for name, rows in reference.tables.items():
            assert sorted_rows(run.tables[name]) == sorted_rows(rows), name
        assert run.tables.keys() == reference.tables.keys()
        for topic in compared:
            ordered = topic not in unordered
            masked = (volatile or {}).get(topic)
            assert run.canonical(topic, ordered, masked) == reference.canonical(topic, ordered, masked), topic
        for counter in ("messages_sent_by_topic", "dead_letters_by_stage", "late_events_by_step"):
            # changelog records depend on commit boundaries
            got = {unsuffixed(k, run.sfx): v for k, v in run.monitor.as_dict()[counter].items()
                   if not k.endswith("-changelog")}
            want = {k: v for k, v in reference.monitor.as_dict()[counter].items() if not k.endswith("-changelog")}
            assert got == want, counter
    # Every table is rebuilt exactly from its changelog in a data directory that never held it
    # (a table read from a topic: see test_a_table_read_from_a_topic_is_rebuilt_by_read_table).
    for variant, run in on_kafka.items():
        for name, rows in run.tables.items():
            if run.plan.topic(run.plan.store(name).changelog).role == "table-source":
                continue
            if run.plan.store(name).kind == "window-events":
                continue  # a window's event buffer is not a table users read
            fresh = await read_table(run.plan, name, tmp_path / f"fresh-{variant}-{name}", broker=kafka_url)
            assert sorted_rows(fresh) == sorted_rows(rows), (variant, name)
    return on_kafka["flow"]


def data_file(name: str) -> list[ProducerRecord]:
    """An example data file as `dataflow run --input` produces it, with fixed timestamps."""
    out = []
    for i, line in enumerate((EXAMPLES / "data" / name).read_bytes().splitlines()):
        if line.strip():
            key, raw = encode_line(line, "json", False)
            out.append(ProducerRecord("", key, raw, timestamp=T0 + i * 1000))
    return out


def at(value: Any, key: Any, ts: int) -> ProducerRecord:
    return record(value, key, timestamp=ts)


# ---------------------------------------------------------------------------- the examples


async def test_wordcount_in_full(kafka_url: str, tmp_path: Path) -> None:
    lines = data_file("lines.jsonl")  # keyless: all on partition 0, so every order is fixed
    run = await run_everywhere(kafka_url, tmp_path, "wordcount", [{"lines": lines}])
    updates: dict[str, list[tuple[dict[str, int], int, int]]] = {}  # word: (row, time, partition)
    for i, line in enumerate((EXAMPLES / "data" / "lines.jsonl").read_text().splitlines()):
        for w in orjson.loads(line).lower().split():
            seen = updates.setdefault(w, [])
            seen.append(({"count": len(seen) + 1}, T0 + i * 1000, partition_for(orjson.dumps(w), 4)))
    assert len(updates) == 11 and len(updates["the"]) == len(updates["dog"]) == 3
    assert sorted_rows(run.tables["counts"]) == sorted_rows([(w, rows[-1][0]) for w, rows in updates.items()])
    # every update of every word, in order, on the word's partition, stamped with its line's time
    got: dict[str, list[tuple[dict[str, int], int, int]]] = {}
    for m in run.topics["word-counts"]:
        got.setdefault(orjson.loads(m.key), []).append((orjson.loads(m.value), m.timestamp, m.partition))
    assert got == updates
    assert run.topics["wordcount-dead-letters"] == []


NINE = int(datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc).timestamp() * 1000)  # the data files' minute


def withdrawal(account: str, amount: float, seconds: int) -> dict[str, Any]:
    return {"account_id": account, "amount": amount, "country": "NO", "ts": NINE + seconds * 1000}


async def test_fraud_in_full(kafka_url: str, tmp_path: Path) -> None:
    # Phase 1: the example's data file (keyless, with three malformed lines). Phase 2: keyed by
    # account (acc-1 on partition 2; acc-2, acc-3, acc-5 on partition 3), into the next minute,
    # with two events that come after their window closed (grace 10s).
    assert [partition_for(orjson.dumps(f"acc-{i}"), 4) for i in (1, 2, 3, 5)] == [2, 3, 3, 3]
    keyed = [("acc-1", 1200.0, 65), ("acc-1", 1100.0, 70), ("acc-1", 5000.0, 80),
             ("acc-1", 4000.0, 30),  # partition 2 is at 09:01:20: 09:00 closed at 09:01:10, late
             ("acc-5", 1500.0, 59),  # partition 3 is at 09:00:59: 09:00 is open
             ("acc-3", 2000.0, 75), ("acc-2", 1500.0, 5)]  # ... and now closed: late
    phase2 = [at(withdrawal(a, amount, s), a, T0 + 100_000 + i) for i, (a, amount, s) in enumerate(keyed)]
    run = await run_everywhere(kafka_url, tmp_path, "fraud",
                               [{"withdrawals": data_file("withdrawals.jsonl")}, {"withdrawals": phase2}])
    nine = {"window_start": NINE, "window_end": NINE + MIN}
    one = {"window_start": NINE + MIN, "window_end": NINE + 2 * MIN}
    assert sorted_rows(run.tables["per_account"]) == sorted_rows([
        (("acc-1", NINE), {"total": 7000.0, "n": 3, **nine}),
        (("acc-1", NINE + MIN), {"total": 7300.0, "n": 3, **one}),
        (("acc-3", NINE), {"total": 1200.0, "n": 1, **nine}),
        (("acc-3", NINE + MIN), {"total": 2000.0, "n": 1, **one}),
        (("acc-5", NINE), {"total": 2501.0, "n": 2, **nine}),
    ])
    assert [(k, v) for k, v, _ts in run.records("alerts")] == [
        ("acc-1", {"total": 7000.0, "n": 3, **nine}), ("acc-1", {"total": 7300.0, "n": 3, **one})]
    assert [ts for _k, _v, ts in run.records("alerts")] == [NINE + 31_000, NINE + 80_000]  # event times
    assert run.monitor.as_dict()["late_events_by_step"] == {"per_account": 2}
    dead = run.topics["fraud-dead-letters"]
    raw = (EXAMPLES / "data" / "withdrawals.jsonl").read_bytes().splitlines()
    assert [(m.value, dict(m.headers)["dataflow.stage"]) for m in dead] == [
        (raw[5], b"validate"), (raw[6], b"validate"), (raw[8], b"decode")]


async def test_orders_in_full(kafka_url: str, tmp_path: Path) -> None:
    customers = [at({"name": "Ada", "tier": "gold"}, "c1", T0), at({"name": "Brian", "tier": "silver"}, "c2", T0 + 1)]
    orders = [at({"order_id": o, "customer_id": c, "amount": a}, o, T0 + 10 + i)
              for i, (o, c, a) in enumerate([("o1", "c1", 30.0), ("o2", "c2", 12.5), ("o3", "c9", 99.0),
                                             ("o4", "c1", 5.0)])]
    orders.append(at(b'{"order_id": "o5", "customer_id": "c1"}', "o5", T0 + 20))  # no amount: a dead letter
    changed = [at({"name": "Ada", "tier": "platinum"}, "c1", T0 + 30), ProducerRecord("", b'"c2"', None, None, T0 + 31)]
    later = [at({"order_id": o, "customer_id": c, "amount": a}, o, T0 + 40 + i)
             for i, (o, c, a) in enumerate([("o6", "c1", 7.0), ("o7", "c2", 8.0)])]
    # Each phase runs to idle before the next: a join reads the table as the phases left it.
    run = await run_everywhere(kafka_url, tmp_path, "orders", [{"customers": customers}, {"orders": orders},
                                                               {"customers": changed}, {"orders": later}],
                               unordered=("enriched-orders", "orders-enriched.left-repartition"))

    def enriched(o: str, name: str | None, tier: str | None, amount: float) -> dict[str, Any]:
        return {"order_id": o, "customer": name, "tier": tier, "amount": amount}

    assert sorted(run.records("enriched-orders"), key=repr) == sorted([
        ("c1", enriched("o1", "Ada", "gold", 30.0), T0 + 10), ("c2", enriched("o2", "Brian", "silver", 12.5), T0 + 11),
        ("c9", enriched("o3", None, None, 99.0), T0 + 12), ("c1", enriched("o4", "Ada", "gold", 5.0), T0 + 13),
        ("c1", enriched("o6", "Ada", "platinum", 7.0), T0 + 40), ("c2", enriched("o7", None, None, 8.0), T0 + 41),
    ], key=repr)
    assert run.tables["customers"] == [("c1", {"name": "Ada", "tier": "platinum"})]  # c2 was deleted
    assert [(m.key, dict(m.headers)["dataflow.stage"]) for m in run.topics["orders-dead-letters"]] == [
        (b'"o5"', b"validate")]


def ids_on(partition: int, prefix: str, count: int) -> list[str]:
    """The first `count` ids `PREFIX<n>` whose key lands on `partition` (of 4)."""
    out = [f"{prefix}{i}" for i in range(1000) if partition_for(orjson.dumps(f"{prefix}{i}"), 4) == partition]
    return out[:count]


async def test_clicks_in_full(kafka_url: str, tmp_path: Path) -> None:
    # Each ad's impressions share a partition, so an ad's rows reach its count in one order.
    a1, a2, a3 = ids_on(1, "imp-", 3)
    b1, b2 = ids_on(2, "imp-", 2)
    imps = [(a1, "ad-1", 1_000), (a2, "ad-1", 2_000), (b1, "ad-2", 3_000), (a3, "ad-1", 2_000_000),
            (b2, "ad-2", 2_000_000)]
    clicks = [(a1, 5_000), (b2, 2_000_100), (a3, 2_000_100)]
    impressions = [at({"impression_id": i, "ad_id": ad, "ts": T0 + ts}, i, T0 + ts) for i, ad, ts in imps]
    click_records = [at({"impression_id": i, "ts": T0 + ts}, i, T0 + ts) for i, ts in clicks]
    click_records.append(at({"impression_id": a2, "ts": "soon"}, a2, T0 + 2_000_200))  # a dead letter
    # Impressions first, then the clicks: a1 is clicked at once; a2 and b1 are closed unclicked only
    # when a partition's clicks reach 2,000,100, past their ts + 10m on both sides.
    run = await run_everywhere(kafka_url, tmp_path, "clicks",
                               [{"impressions": impressions}, {"clicks": click_records}])
    attributed = {k: v for k, v, _ts in run.records("attributed-impressions")}
    assert attributed == {a1: {"impression_id": a1, "ad_id": "ad-1", "clicked": True},
                          a2: {"impression_id": a2, "ad_id": "ad-1", "clicked": False},
                          a3: {"impression_id": a3, "ad_id": "ad-1", "clicked": True},
                          b1: {"impression_id": b1, "ad_id": "ad-2", "clicked": False},
                          b2: {"impression_id": b2, "ad_id": "ad-2", "clicked": True}}
    assert len(run.topics["attributed-impressions"]) == 5  # each impression once
    assert sorted_rows(run.tables["per_ad"]) == [("ad-1", {"impressions": 3, "clicks": 2}),
                                                 ("ad-2", {"impressions": 2, "clicks": 1})]
    stats = run.by_key("ad-stats")
    assert [v["impressions"] for v in stats["ad-1"]] == [1, 2, 3] and stats["ad-1"][-1]["clicks"] == 2
    assert [v["impressions"] for v in stats["ad-2"]] == [1, 2] and stats["ad-2"][-1]["clicks"] == 1
    assert [dict(m.headers)["dataflow.stage"] for m in run.topics["clicks-dead-letters"]] == [b"validate"]


async def test_visits_in_full(kafka_url: str, tmp_path: Path) -> None:
    # One partition, so every session shares one stream time; the merge and the late view of
    # tests/e2e/test_sessions.py, fed in two phases.
    def view(user: str, minutes: float, page: str) -> ProducerRecord:
        return at({"user": user, "page": page, "ts": T0 + int(minutes * MIN)}, user, T0 + int(minutes * MIN))

    first = [view("u1", 0, "home"), view("u2", 0, "home"), view("u1", 10, "cart"), view("u2", 30.5, "blog")]
    then = [view("u2", 15, "about"), view("u1", 50, "home"), view("u1", 30, "faq"), view("u3", 120, "home")]
    run = await run_everywhere(kafka_url, tmp_path, "visits", [{"views": first}, {"views": then}], partitions=1)

    def bounds(start: float, end: float) -> dict[str, int]:
        return {"window_start": T0 + int(start * MIN), "window_end": T0 + int(end * MIN)}

    assert [(k, v) for k, v, _ts in run.records("visit-updates")] == [
        ("u1", {"views": 1, "pages": ["home"], **bounds(0, 0)}),
        ("u2", {"views": 1, "pages": ["home"], **bounds(0, 0)}),
        ("u1", {"views": 2, "pages": ["home", "cart"], **bounds(0, 10)}),
        ("u2", {"views": 1, "pages": ["blog"], **bounds(30.5, 30.5)}),
        ("u2", {"views": None, "pages": None, **bounds(30.5, 30.5)}),  # retracted: merged into [0, 30.5]
        ("u2", {"views": 3, "pages": ["home", "blog", "about"], **bounds(0, 30.5)}),
        ("u1", {"views": 1, "pages": ["home"], **bounds(50, 50)}),
        # u1's view at 30m touches its closed [0, 10]: late (sessions stay more than 30m apart)
        ("u3", {"views": 1, "pages": ["home"], **bounds(120, 120)}),
    ]
    assert run.records("finished-visits") == [
        ("u1", {"views": 2, "exit": "cart", **bounds(0, 10)}, T0 + 10 * MIN),
        ("u2", {"views": 3, "exit": "about", **bounds(0, 30.5)}, T0 + int(30.5 * MIN)),
        ("u1", {"views": 1, "exit": "home", **bounds(50, 50)}, T0 + 50 * MIN),
    ]
    assert sorted_rows(run.tables["visits"]) == sorted_rows([
        (("u1", T0), {"views": 2, "pages": ["home", "cart"], **bounds(0, 10)}),
        (("u2", T0), {"views": 3, "pages": ["home", "blog", "about"], **bounds(0, 30.5)}),
        (("u1", T0 + 50 * MIN), {"views": 1, "pages": ["home"], **bounds(50, 50)}),
        (("u3", T0 + 120 * MIN), {"views": 1, "pages": ["home"], **bounds(120, 120)}),
    ])


def minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


async def test_monitoring_in_full_with_its_timers_on_a_clock_the_test_moves(kafka_url: str, tmp_path: Path) -> None:
    start = (T0 // MIN + 1) * MIN  # a whole minute: the timers' clock starts here (epoch ms)
    # Withdrawals of one minute come from one account (one partition), so each minute's rows
    # are summed in one order. The clock stands still while they are read.
    rows = [("acc-1", 100.0, -55), ("acc-1", 50.0, -30), ("acc-2", 70.0, 65), ("acc-3", 30.0, 190)]
    withdrawals = [at({"account_id": a, "amount": amount}, a, start + s * 1000) for a, amount, s in rows]
    withdrawals.insert(2, at({"account_id": "acc-1"}, "acc-1", start - 20_000))  # no amount: a dead letter
    heartbeats = 12  # and two ticks

    def make_drive(clock: SteppedClock) -> Drive:
        async def drive(worker: Worker) -> None:
            """Two minutes in steps of ten seconds: a heartbeat each, and a tick each minute."""
            timers = {t.name: t for t in worker.timers}
            assert sorted(timers) == ["heartbeat", "ticks"]
            done = False
            running = asyncio.ensure_future(worker.run(until_idle=True, idle_when=lambda: done))
            try:
                for step in range(1, heartbeats + 1):
                    await until(lambda: clock.sleeping == 2, "both timers wait for the clock")
                    clock.advance(10)
                    await until(lambda s=step: timers["heartbeat"].ticks == s  # type: ignore[misc]
                                and timers["ticks"].ticks == s // 6 and clock.sleeping == 2, f"tick {step}")
                done = True
                await running
            finally:
                running.cancel()
            assert (timers["heartbeat"].skipped, timers["ticks"].skipped) == (0, 0)
        return drive

    run = await run_everywhere(kafka_url, tmp_path, "monitoring", [{"withdrawals": withdrawals}],
                               volatile={"heartbeats": "at"}, make_drive=make_drive, clock_start=start / 1000)
    m = [minute(start + i * MIN) for i in (-1, 0, 1, 2, 3)]
    assert sorted_rows(run.tables["per_minute"]) == sorted_rows([
        (m[0], {"withdrawals": 2, "total": 150.0}),
        (m[2], {"withdrawals": 1, "total": 70.0}),  # a withdrawal and the tick at its start
        (m[3], {"withdrawals": 0, "total": 0.0}),  # a tick alone: a minute with no withdrawals
        (m[4], {"withdrawals": 1, "total": 30.0}),  # after the last tick: no tick row
    ])
    assert run.by_key("per-minute") == {
        m[0]: [{"withdrawals": 1, "total": 100.0}, {"withdrawals": 2, "total": 150.0}],
        m[2]: [{"withdrawals": 1, "total": 70.0}, {"withdrawals": 1, "total": 70.0}],
        m[3]: [{"withdrawals": 0, "total": 0.0}],
        m[4]: [{"withdrawals": 1, "total": 30.0}],
    }
    beats = run.records("heartbeats")
    assert [(k, ts) for k, _v, ts in beats] == [(None, start + i * 10_000) for i in range(1, heartbeats + 1)]
    assert all(v.keys() == {"service", "at"} and v["service"] == "fraud" and isinstance(v["at"], int)
               for _k, v, _ts in beats)
    assert [dict(m.headers)["dataflow.stage"] for m in run.topics["monitoring-dead-letters"]] == [b"validate"]


async def test_a_table_read_from_a_topic_is_rebuilt_by_read_table(kafka_url: str, tmp_path: Path) -> None:
    sfx = "-" + unique_name("orders")
    plan = example_plan("orders", "flow", sfx)
    customers = [at({"name": "Ada", "tier": "gold"}, "c1", T0), at({"name": "Brian", "tier": "silver"}, "c2", T0 + 1)]
    run = await run_example(kafka_url, plan, sfx, [{"customers": customers}], data_dir=tmp_path / "data")
    rows = [("c1", {"name": "Ada", "tier": "gold"}), ("c2", {"name": "Brian", "tier": "silver"})]
    assert sorted_rows(run.tables["customers"]) == rows
    # the worker's own data directory has the rows; one that never held them must rebuild them
    assert sorted_rows(await read_table(plan, "customers", tmp_path / "data", broker=kafka_url)) == rows
    assert sorted_rows(await read_table(plan, "customers", tmp_path / "fresh", broker=kafka_url)) == rows


# ---------------------------------------------------------------------------- several workers
# Two `dataflow run --until-idle` processes, each with its own data directory, over an
# 8-partition input produced before they start, must each exit 0 on their own; together they
# must have made exactly one clean run's table and changes (nothing twice, nothing missing).
# The pipeline keeps per-key state on its input's own partitions: with a repartition topic
# between the workers, see the last test of this file.


PER_USER = '''
import os, pathlib, time
from dataflow import Flow, agg

def paced(event):
    """Marks the process as running at its first event; takes DELAY seconds per event."""
    marker = os.environ.get("DATAFLOW_TEST_MARKER")
    if marker and not pathlib.Path(marker).exists():
        pathlib.Path(marker).write_text("running")
    time.sleep(float(os.environ.get("DATAFLOW_TEST_DELAY", "0")))
    return event

flow = Flow("{name}", partitions=8)
(flow.source("{source}", key=str)
     .map(paced, name="paced")
     .aggregate(n=agg.count(), last=agg.max("seq"), name="per_user")
     .changes().to("{out}"))
'''

EVENTS = [(f"u{i % 29}", {"seq": i}) for i in range(240)]  # keyed by user: 29 keys over 8 partitions


async def produce(kafka_url: str, topic: str, records: list[tuple[str, Any]]) -> None:
    transport = open_transport(kafka_url, ".")
    await transport.start()
    try:
        await transport.create_topics([TopicSpec(topic, 8)])
        async with transport.producer() as producer:
            await producer.send_batch([ProducerRecord(topic, orjson.dumps(k), orjson.dumps(v), None, T0 + i)
                                       for i, (k, v) in enumerate(records)])
    finally:
        await transport.stop()
    assert len({partition_for(orjson.dumps(k), 8) for k, _v in records}) == 8


def per_user_pipeline(tmp_path: Path) -> tuple[Path, ExecutionPlan, str, str]:
    sfx = "-" + unique_name("peruser")
    source, out = f"events{sfx}", f"per-user{sfx}"
    path = tmp_path / "per_user.py"
    path.write_text(PER_USER.format(name=f"per-user{sfx}", source=source, out=out))
    plan = build_plan(load_pipeline(str(path)).topology())
    assert not [t for t in plan.topics if t.role == "repartition"]  # each worker's state is its own partitions'
    return path, plan, source, out


async def start_worker(pipeline: Path, kafka_url: str, data_dir: Path,
                       env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dataflow.cli", "run", str(pipeline), "--broker", kafka_url, "--data-dir", str(data_dir),
        "--until-idle", "--set", "batch_size=20", "--set", "commit_interval=0.2",
        cwd=str(ROOT), env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(workers: list[asyncio.subprocess.Process]) -> list[str]:
    """Wait for every worker to exit on its own (120 s is a hang guard); their stderr."""
    try:
        outs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 120)
    except asyncio.TimeoutError:
        for w in workers:
            if w.returncode is None:
                w.kill()
        raise AssertionError("a dataflow run --until-idle worker did not stop on its own") from None
    errs = [err.decode() for _out, err in outs]
    assert [w.returncode for w in workers] == [0] * len(workers), errs
    return errs


async def assert_one_clean_run(plan: ExecutionPlan, source: str, out: str, errs: list[str], kafka_url: str,
                               fresh: Path) -> None:
    """The table, rebuilt from its changelog, and the changes topic are those of one clean run."""
    summary = f"  read  {source}: "
    read = [int(line[len(summary):]) for err in errs for line in err.splitlines() if line.startswith(summary)]
    assert sum(read) == len(EVENTS), errs  # each event processed once, by one of the workers
    seqs: dict[str, list[int]] = {}
    for user, v in EVENTS:
        seqs.setdefault(user, []).append(v["seq"])
    rows = await read_table(plan, "per_user", fresh, broker=kafka_url)
    assert sorted_rows(rows) == sorted_rows([(u, {"n": len(s), "last": max(s)}) for u, s in seqs.items()])
    transport = open_transport(kafka_url, ".")
    await transport.start()
    try:
        changes = (await read_topics(transport, [out]))[out]
    finally:
        await transport.stop()
    updates: dict[str, list[tuple[int, int]]] = {}
    for m in changes:
        v = orjson.loads(m.value)
        updates.setdefault(orjson.loads(m.key), []).append((v["n"], v["last"]))
    # each user's events counted one by one, in order: nothing processed twice, nothing skipped
    assert updates == {u: [(i + 1, seq) for i, seq in enumerate(s)] for u, s in seqs.items()}


async def test_two_until_idle_workers_started_together_share_the_input_and_exit(kafka_url: str, tmp_path: Path) -> None:
    pipeline, plan, source, out = per_user_pipeline(tmp_path)
    await produce(kafka_url, source, EVENTS)  # all of it, before either worker starts
    workers = [await start_worker(pipeline, kafka_url, tmp_path / name) for name in ("a", "b")]
    errs = await finish(workers)
    await assert_one_clean_run(plan, source, out, errs, kafka_url, tmp_path / "fresh")


async def test_an_until_idle_worker_that_starts_while_another_runs(kafka_url: str, tmp_path: Path) -> None:
    pipeline, plan, source, out = per_user_pipeline(tmp_path)
    await produce(kafka_url, source, EVENTS)
    marker = tmp_path / "a-running"
    # 240 events at 20 ms: A still has seconds of work when it reports its first event
    first = await start_worker(pipeline, kafka_url, tmp_path / "a",
                               {"DATAFLOW_TEST_MARKER": str(marker), "DATAFLOW_TEST_DELAY": "0.02"})
    await until(lambda: marker.exists() or first.returncode is not None, "worker A reads its first event", 6000)
    assert first.returncode is None, "worker A must still be running when B starts"
    second = await start_worker(pipeline, kafka_url, tmp_path / "b", {"DATAFLOW_TEST_DELAY": "0.02"})
    errs = await finish([first, second])
    await assert_one_clean_run(plan, source, out, errs, kafka_url, tmp_path / "fresh")


async def test_until_idle_workers_with_a_repartition_between_them_process_everything(
        kafka_url: str, tmp_path: Path) -> None:
    """Two workers of examples/wordcount.flow over a finished 8-partition input. Its group_by
    writes a repartition topic both read, so each worker's partitions also receive what the
    other sends. Y's loop starts once X's has returned, or has found nothing to read a hundred
    times (a worker that waits for what its peer will send), and X leaves the group only once Y
    is done: the window in which `dataflow run --until-idle` workers lose records, held open so
    the outcome does not depend on timing. (Two real `dataflow run --until-idle` processes on
    such an input came out short in about half of the runs.)"""
    sfx = "-" + unique_name("wc")
    plan = example_plan("wordcount", "flow", sfx, partitions=8)
    lines = [(f"l{i}", f"w{i % 11} w{i % 7} x{i % 5} the") for i in range(160)]
    await produce(kafka_url, f"lines{sfx}", lines)
    transports = [open_transport(kafka_url, str(tmp_path), plan.settings) for _ in range(2)]
    for t in transports:
        await t.start()
    try:
        x, y = (Worker(plan, t, WorkerOptions(batch_size=20, data_dir=str(tmp_path / name)))
                for t, name in zip(transports, "xy"))
        await x.start()
        await y.start()
        await until(lambda: len(x.consumer.assignment()) == len(y.consumer.assignment()) == 8,
                    "the two workers split the 8 + 8 partitions")
        probes = 0

        def idle_probe() -> bool:  # called each time X's loop finds nothing to read
            nonlocal probes
            probes += 1
            return True

        x_run = asyncio.ensure_future(x.run(until_idle=True, idle_when=idle_probe))
        await until(lambda: x_run.done() or probes >= 100, "X idles or waits")
        await asyncio.wait_for(y.run(until_idle=True), 120)  # hang guards, not timing assertions
        await asyncio.wait_for(x_run, 120)
        await x.stop()
        await y.stop()
    finally:
        for t in transports:
            await t.stop()
    counts = Counter(w for _key, line in lines for w in line.split())
    rows = await read_table(plan, "counts", tmp_path / "fresh", broker=kafka_url)
    assert sorted_rows(rows) == sorted_rows([(w, {"count": c}) for w, c in counts.items()])
