"""Windowed tables in Python agents: tumbling, hopping and sliding windows, what
``current()``, ``delta()``, ``now()`` and ``value()`` read, which time a wrapper uses, and
expiry of old windows (with tombstones in the changelog)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dataflow.runtime.app import App
from dataflow.transport.base import TP
from dataflow.transport.memory import MemoryTransport

S = 1000  # timestamps are epoch ms; window sizes are seconds, as in Faust


async def run(app: App, topic: str, events: list[tuple[str, Any, int]]) -> None:
    """Start ``app`` if needed, send ``(key, value, timestamp)`` in order, process them all."""
    await app.start()
    for key, value, ts in events:
        await app.topic(topic).send(key=key, value=value, timestamp=ts)
    await app.run_until_idle(stop=False)


async def test_tumbling_counts_and_what_each_read_sees() -> None:
    app = App("tumble", topic_partitions=1)
    counts = app.Table("counts", default=int).tumbling(10, expires=timedelta(hours=1))
    reads: list[tuple[Any, ...]] = []

    @app.agent(app.topic("clicks"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for user in stream:
            counts[user] += 1
            window = counts[user]
            reads.append((user, window.current(), window.value(), window.delta(10), window.delta(20), window.now()))

    await run(app, "clicks", [("a", "a", 1 * S), ("a", "a", 9 * S), ("b", "b", 9 * S), ("a", "a", 10 * S),
                              ("a", "a", 25 * S), ("b", "b", 3 * S)])
    try:
        assert reads == [
            # user, current, value, delta(10), delta(20), now
            ("a", 1, 1, 0, 0, 1),
            ("a", 2, 2, 0, 0, 2),
            ("b", 1, 1, 0, 0, 1),
            ("a", 1, 1, 2, 0, 1),  # delta(10) reads the window of 0 s: [0, 10)
            ("a", 1, 1, 1, 2, 1),
            ("b", 2, 2, 0, 0, 0),  # an old event of b; now() is the window of stream time 25 s
        ]
        assert counts.table.items() == [
            (("a", (0.0, 10.0)), 2), (("b", (0.0, 10.0)), 2), (("a", (10.0, 20.0)), 1), (("a", (20.0, 30.0)), 1)]
        assert counts.keys() == ["a", "b"] and len(counts) == 2
        assert counts.relative_to(27.5).items() == [("a", 1), ("b", 0)]  # b has no [20, 30): its default
        assert counts.table["a", (10.0, 20.0)] == 1
    finally:
        await app.stop()


async def test_hopping_windows_overlap() -> None:
    app = App("hop", topic_partitions=1)
    counts = app.Table("counts", default=int).hopping(10, 5)
    reads: list[tuple[Any, ...]] = []

    @app.agent(app.topic("clicks"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for user in stream:
            counts[user] += 1
            reads.append((user, counts[user].value(), counts[user].now(), counts[user].delta(5)))

    await run(app, "clicks", [("a", "a", 1 * S), ("a", "a", 7 * S), ("a", "a", 12 * S), ("b", "b", 12 * S)])
    try:
        # value(): the newest window holding the time; now(): the oldest holding stream time.
        assert reads == [("a", 1, 1, 1), ("a", 1, 2, 2), ("a", 1, 2, 2), ("b", 1, 1, 1)]
        assert counts.table.items() == [
            (("a", (-5.0, 5.0)), 1), (("a", (0.0, 10.0)), 2), (("a", (5.0, 15.0)), 2), (("b", (5.0, 15.0)), 1),
            (("a", (10.0, 20.0)), 1), (("b", (10.0, 20.0)), 1)]
    finally:
        await app.stop()


async def test_set_delete_and_contains_apply_to_the_windows_of_the_event() -> None:
    app = App("latest", topic_partitions=1)
    latest = app.Table("latest").hopping(10, 5)
    seen: list[tuple[Any, ...]] = []

    @app.agent(app.topic("prices"))
    async def track(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            symbol, price = event.key, event.value
            if price == "delisted":
                del latest[symbol]
            else:
                latest[symbol] = price
            seen.append((symbol, symbol in latest))

    await run(app, "prices", [("x", 1.5, 7 * S), ("x", 2.5, 12 * S), ("y", 9, 12 * S), ("y", "delisted", 13 * S)])
    try:
        assert seen == [("x", True), ("x", True), ("y", True), ("y", False)]
        assert latest.table.items() == [
            (("x", (0.0, 10.0)), 1.5), (("x", (5.0, 15.0)), 2.5), (("x", (10.0, 20.0)), 2.5)]
        assert latest.relative_to(3)["x"].value() == 1.5
        with pytest.raises(KeyError):  # no default: a missing window is a KeyError, as in Faust
            latest.relative_to(30)["x"].value()
    finally:
        await app.stop()


async def test_sliding_windows_are_faust_s_one_window_per_event_time() -> None:
    app = App("slide", topic_partitions=1)
    counts = app.Table("counts", default=int).sliding(2, 3, expires=60)
    reads: list[int] = []

    @app.agent(app.topic("clicks"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for user in stream:
            counts[user] += 1
            reads.append(counts[user].current())

    await run(app, "clicks", [("a", "a", 10 * S), ("a", "a", 10 * S), ("a", "a", 11 * S)])
    try:
        assert reads == [1, 2, 1]
        assert counts.table.items() == [(("a", (8.0, 13.0)), 2), (("a", (9.0, 14.0)), 1)]
    finally:
        await app.stop()


async def test_windows_relative_to_a_field_of_the_value() -> None:
    app = App("field", topic_partitions=1)
    per_minute = app.Table("per_minute", default=int).tumbling(timedelta(minutes=1)).relative_to_field("at")

    @app.agent(app.topic("logins"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for login in stream:
            per_minute[login["user"]] += 1

    # The message timestamps (all 0) are not what counts: the field "at" (epoch seconds) is.
    await run(app, "logins", [("k", {"user": "a", "at": 30}, 0), ("k", {"user": "a", "at": 59.5}, 0),
                              ("k", {"user": "a", "at": 61}, 0)])
    try:
        assert per_minute.table.items() == [(("a", (0.0, 60.0)), 2), (("a", (60.0, 120.0)), 1)]
    finally:
        await app.stop()


async def test_a_fixed_time_outside_an_event() -> None:
    app = App("fixed", topic_partitions=3)
    hourly = app.Table("hourly", default=int).tumbling(3600)
    noon = datetime(2024, 1, 1, 12, 30, tzinfo=timezone.utc)
    seen: list[Any] = []

    @app.task
    async def backfill() -> None:
        at_noon = hourly.relative_to(noon)
        at_noon["k"] += 1
        at_noon["k"] += 2
        seen.append(at_noon["k"].value())
        with pytest.raises(RuntimeError, match="outside of stream iteration"):
            hourly["k"] += 1  # the default time is the event's: there is none here

    await app.run_until_idle(stop=False)
    try:
        start = datetime(2024, 1, 1, 12, tzinfo=timezone.utc).timestamp()
        assert seen == [3] and hourly.table.items() == [(("k", (start, start + 3600)), 3)]
    finally:
        await app.stop()


async def test_expired_windows_are_deleted_with_tombstones() -> None:
    name = f"windows-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    app = App("expiry", broker=f"memory://{name}", topic_partitions=1, commit_interval=3600)
    counts = app.Table("counts", default=int).tumbling(10, expires=20)
    late: list[int] = []

    @app.agent(app.topic("clicks"))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for user in stream:
            counts[user] += 1
            late.append(counts[user].current())

    await run(app, "clicks", [("a", "a", 0), ("a", "a", 5 * S), ("b", "b", 15 * S)])
    await app.commit()
    # Stream time 100 s: windows ending at or before 80 s are gone; a write into one is dropped.
    await run(app, "clicks", [("a", "a", 100 * S), ("a", "a", 1 * S)])
    try:
        assert late == [1, 2, 1, 1, 0]
        assert counts.table.items() == [(("a", (100.0, 110.0)), 1)]
        assert counts.relative_to(5)["a"].value() == 0
    finally:
        await app.stop()
    changelog = await keep.read_partition(TP("expiry-counts-changelog", 0), 0, 100)
    data = [(m.key, m.value) for m in changelog if m.key is not None]  # keyless records carry stream time
    assert data == [(b'["a",0]', b"2"), (b'["b",10000]', b"1"),
                    (b'["a",100000]', b"1"), (b'["a",0]', None), (b'["b",10000]', None)]
    del keep


def test_window_arguments_are_checked() -> None:
    app = App("args")
    with pytest.raises(ValueError, match="hopping step must be positive and at most the size"):
        app.Table("h").hopping(10, 20)
    with pytest.raises(TypeError, match="size must be seconds"):
        app.Table("t").tumbling("1h")  # type: ignore[arg-type]
    table = app.Table("twice")
    table.tumbling(10)
    with pytest.raises(ValueError, match="already windowed"):
        table.hopping(10, 5)
