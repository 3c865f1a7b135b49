"""Tables of Python apps (``app.Table``, ``app.SetTable``, windowed tables) on the Kafka
test broker: exact contents, a fresh member rebuilding them from their changelogs, and
partitions moving with their state between two members of one group mid-stream.

The broker is shared by the session: apps and topics get unique names. Every app here
commits only when it must (``commit_interval=3600``, ``commit_every=10**9``: on
revocation and on stop), so the changelogs, and what a restore replays, are exact.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow.runtime.app import App
from dataflow.runtime.events import current_event
from dataflow.transport.base import open_transport, partition_for
from tests.kafka_broker import unique_name

from .conftest import read_topics

pytestmark = pytest.mark.kafka

WORDS = [f"w{i % 13}" for i in range(13 * 40)]  # 13 keys, 40 each, on all 4 partitions (2 to 4 keys each)
ONLY_WHEN_NEEDED = {"commit_interval": 3600, "commit_every": 10**9}


def fast_groups(kafka_url: str) -> str:
    """The broker's URL with the short group timeouts the fixture also sets in the
    environment (Tansu lets a member join in about half a session timeout)."""
    return f"{kafka_url}?session_timeout_ms=2000&heartbeat_interval_ms=300"


async def until(check: Callable[[], bool], what: str, *, polls: int = 3000) -> None:
    """Poll ``check`` at most ``polls`` times, 10 ms apart: a hang guard, not a timing assertion."""
    for _ in range(polls):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def changelog(url: str, topic: str) -> list[tuple[int, Any, Any]]:
    """Every record of a changelog topic as (partition, key, value), in offset order per partition."""
    transport = open_transport(url, ".")
    await transport.start()
    try:
        messages = (await read_topics(transport, [topic]))[topic]
    finally:
        await transport.stop()
    return [(m.partition, None if m.key is None else orjson.loads(m.key),
             None if m.value is None else orjson.loads(m.value)) for m in messages]


class Counting:
    """A member of the word-counting group: ``counts[word] += 1`` in an agent with one
    actor per partition; ``seen`` lists (partition, word) of every event it processed.
    With ``hold_at=K``, each actor holds its K-th event until this member's partitions
    are being revoked, so a rebalance is sure to come mid-stream."""

    def __init__(self, name: str, url: str, topic: str, data_dir: Path, *, hold_at: int | None = None,
                 **settings: Any) -> None:
        self.app = app = App(name, broker=url, data_dir=data_dir, topic_partitions=4, **ONLY_WHEN_NEEDED, **settings)
        self.counts = counts = app.Table("counts", default=int)
        self.seen: list[tuple[int, str]] = []
        self.holding = self.released = 0

        @app.agent(app.topic(topic), concurrency=4)  # actor p reads partition p
        async def count(stream):  # type: ignore[no-untyped-def]
            processed = 0
            async for word in stream:
                await asyncio.sleep(0.001)  # slow enough that the other member finds work left
                counts[word] += 1
                event = current_event()
                assert event is not None and event.message is not None
                self.seen.append((event.message.partition, word))
                processed += 1
                if processed == hold_at:
                    self.holding += 1
                    # `_give_back` takes revoked partitions out of `_ready` before it waits for held events.
                    await until(lambda: len(app._ready) < 4, "a rebalance to revoke the partitions")
                    self.released += 1

    def partitions(self) -> list[int]:
        return sorted(self.counts._store.partitions)

    def table(self) -> dict[str, int]:
        return dict(self.counts.items())


async def test_a_word_count_table_and_a_fresh_member_rebuilding_it_from_the_changelog(
        kafka_url: str, tmp_path: Path) -> None:
    url, name, topic = fast_groups(kafka_url), unique_name("wc"), unique_name("words")
    expected = dict(Counter(WORDS))

    first = Counting(name, url, topic, tmp_path / "first")
    await first.app.start()
    try:
        await first.app.topic(topic).send_many([(w, w) for w in WORDS])
        await first.app.run_until_idle(stop=False)
        assert first.table() == expected and first.partitions() == [0, 1, 2, 3]
        assert first.app.monitor.restored_records == 0  # a new changelog: nothing to replay
    finally:
        await first.app.stop()
    assert sorted(Counter(w for _, w in first.seen).items()) == sorted(expected.items())
    # One commit (at stop): one record per key, in the partition of its events.
    records = await changelog(url, f"{name}-counts-changelog")
    assert sorted(records) == sorted((p, w, n) for p, w in set(first.seen) for n in [expected[w]])
    assert len(records) == 13 and first.app.monitor.changelog_records == 13
    # The stores are LevelDB databases in the app's data_dir, one per table partition.
    assert sorted(p.name for p in (tmp_path / "first" / "state" / "counts").iterdir()) == ["0", "1", "2", "3"]

    # A new member with an empty data directory: every partition replayed from the changelog,
    # no input read again (the group committed it all).
    fresh = Counting(name, url, topic, tmp_path / "fresh")
    await fresh.app.start()
    try:
        await fresh.app.run_until_idle(stop=False)
        assert fresh.table() == expected and fresh.partitions() == [0, 1, 2, 3]
        assert fresh.app.monitor.restored_records == 13 and fresh.seen == []
        await fresh.app.topic(topic).send_many([("w0", "w0"), ("new", "new")])
        await fresh.app.run_until_idle(stop=False)
        assert fresh.table() == {**expected, "w0": 41, "new": 1}
    finally:
        await fresh.app.stop()

    # The first member's data directory is intact: it replays only the two records written since.
    again = Counting(name, url, topic, tmp_path / "first")
    await again.app.start()
    try:
        await again.app.run_until_idle(stop=False)
        assert again.table() == {**expected, "w0": 41, "new": 1}
        assert again.app.monitor.restored_records == 2 and again.seen == []
    finally:
        await again.app.stop()


async def test_a_member_joins_mid_stream_and_leaves_and_every_word_is_counted_once(
        kafka_url: str, tmp_path: Path) -> None:
    url, name, topic = fast_groups(kafka_url), unique_name("wc"), unique_name("words")
    expected = dict(Counter(WORDS))
    per_partition = Counter(partition_for(orjson.dumps(w), 4) for w in WORDS)  # where the producer puts them
    hold_at = 20

    first = Counting(name, url, topic, tmp_path / "first", hold_at=hold_at)
    second = Counting(name, url, topic, tmp_path / "second")
    await first.app.start()
    try:
        await first.app.topic(topic).send_many([(w, w) for w in WORDS])
        await until(lambda: first.holding == 4, "every actor of the first member to hold its 20th event")
        await second.app.start()  # the group rebalances: the first gives back two partitions mid-stream
        try:
            await until(lambda: sorted(first.partitions() + second.partitions()) == [0, 1, 2, 3],
                        "the first member to take its share back")
            moved, kept = second.partitions(), first.partitions()
            assert sorted(moved + kept) == [0, 1, 2, 3] and len(moved) == len(kept) == 2
            # The second member restored what the first had counted in its partitions
            # (one changelog record per key, written when the first gave them back).
            assert second.app.monitor.restored_records == len({w for p, w in first.seen if p in moved})
            await second.app.run_until_idle(stop=False)
            await first.app.run_until_idle(stop=False)
            # The first member processed exactly the events it had before the rebalance in the
            # partitions that moved (its queued ones were dropped), the second the rest.
            assert Counter(p for p, _ in first.seen) == {
                p: hold_at if p in moved else per_partition[p] for p in range(4)}
            assert Counter(p for p, _ in second.seen) == {p: per_partition[p] - hold_at for p in moved}
            assert set(first.table()).isdisjoint(second.table())
            assert {**first.table(), **second.table()} == expected
        finally:
            await second.app.stop()  # the group rebalances: the first gets everything back
        await until(lambda: first.partitions() == [0, 1, 2, 3], "the first member to get every partition back")
        await first.app.run_until_idle(stop=False)
        assert first.partitions() == [0, 1, 2, 3] and first.table() == expected
        assert first.app.monitor.restored_records == len({w for _, w in second.seen})  # what the second wrote
        assert sorted(Counter(w for _, w in first.seen + second.seen).items()) == sorted(expected.items())
        # The partitions that came back take new events on top of their restored counts.
        await first.app.topic(topic).send_many([(w, w) for w in sorted(expected)])
        await first.app.run_until_idle(stop=False)
        assert first.table() == {w: n + 1 for w, n in expected.items()}
    finally:
        await first.app.stop()


async def test_run_until_idle_waits_through_a_rebalance(kafka_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    url, name, topic = fast_groups(kafka_url), unique_name("wc"), unique_name("words")
    expected = dict(Counter(WORDS))
    first = Counting(name, url, topic, tmp_path / "first")
    second = Counting(name, url, topic, tmp_path / "second")
    await first.app.start()
    try:
        await second.app.start()
        await until(lambda: sorted(first.partitions() + second.partitions()) == [0, 1, 2, 3],
                    "both members to hold their share")
        await first.app.topic(topic).send_many([(w, w) for w in WORDS])
        await second.app.run_until_idle(stop=False)
        await first.app.run_until_idle(stop=False)
        assert {**first.table(), **second.table()} == expected
        # The first member asks for its end offsets; the answer comes back after the
        # second member has left and the group has revoked the first's partitions (as a
        # slow broker would answer): a rebalance in the middle of an idle check.
        consumer = first.app._consumer
        assert consumer is not None
        end_offsets, asked = consumer.end_offsets, asyncio.Event()

        async def slow_end_offsets(tps):  # type: ignore[no-untyped-def]
            tps = set(tps)
            ends = await end_offsets(tps)
            if tps and not asked.is_set():
                asked.set()
                await until(lambda: not tps <= consumer.assignment(), "the rebalance to revoke the partitions")
            return ends

        monkeypatch.setattr(consumer, "end_offsets", slow_end_offsets)
        idle = asyncio.ensure_future(first.app.run_until_idle(stop=False))
        try:
            await asyncio.wait_for(asked.wait(), 30)  # a hang guard
            await second.app.stop()
        finally:
            await idle  # returns once the first holds everything again
        await until(lambda: first.partitions() == [0, 1, 2, 3], "the first member to get every partition back")
        assert first.table() == expected
    finally:
        await second.app.stop()
        await first.app.stop()


async def test_a_rebalance_waits_only_for_the_events_the_actors_hold(kafka_url: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, name, topic = fast_groups(kafka_url), unique_name("wc"), unique_name("words")
    first = Counting(name, url, topic, tmp_path / "first", hold_at=20, revoke_wait=3600)
    second = Counting(name, url, topic, tmp_path / "second")
    revoked_commits: list[tuple[list[int], Counter[int]]] = []  # what was committed, and processed by then
    commit = first.app._commit

    async def spy_commit(only=None):  # type: ignore[no-untyped-def]
        if only is not None:
            revoked_commits.append((sorted(tp.partition for tp in only), Counter(p for p, _ in first.seen)))
        return await commit(only)

    monkeypatch.setattr(first.app, "_commit", spy_commit)
    await first.app.start()
    joining: asyncio.Future[None] | None = None
    try:
        await first.app.topic(topic).send_many([(w, w) for w in WORDS])
        await until(lambda: first.holding == 4, "every actor of the first member to hold its 20th event")
        joining = asyncio.ensure_future(second.app.start())  # the first gives back every partition (eager)
        await until(lambda: first.released == 4, "the actors to go on past the events they held")
        # Nothing the actors hold is left: the revoked partitions are committed right away.
        # (A hang guard 100 times what this takes; today it waits for revoke_wait, an hour.)
        await until(lambda: bool(revoked_commits), "the revoked partitions to be committed", polls=300)
        await joining
        assert revoked_commits[0] == ([0, 1, 2, 3], {p: 20 for p in range(4)})  # the queued events were dropped
    finally:
        await first.app.stop()  # (a give_back still waiting stops waiting when the app stops)
        if joining is not None:
            await asyncio.wait_for(joining, 60)  # a hang guard
        await second.app.stop()


def visits_app(name: str, url: str, clicks: str, views: str, data_dir: Path) -> tuple[App, Any, Any]:
    app = App(name, broker=url, data_dir=data_dir, topic_partitions=2, **ONLY_WHEN_NEEDED)
    visitors = app.SetTable("visitors")  # page -> the users who saw it
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=3600)

    @app.agent(app.topic(clicks))
    async def track(stream):  # type: ignore[no-untyped-def]
        async for page, (action, user) in stream.items():
            if action == "in":
                visitors[page].add(user)
            else:
                visitors[page].discard(user)

    @app.agent(app.topic(views))
    async def count(stream):  # type: ignore[no-untyped-def]
        async for page in stream:
            per_minute[page] += 1

    return app, visitors, per_minute


CLICKS = [("home", ["in", "bo"]), ("home", ["in", "al"]), ("home", ["in", "al"]), ("shop", ["in", "cy"]),
          ("home", ["out", "bo"]), ("shop", ["out", "cy"]), ("shop", ["out", "nobody"]), ("docs", ["in", 7]),
          ("docs", ["in", "x"])]
VIEWS = [("/home", 0), ("/home", 30), ("/cart", 45), ("/home", 59), ("/home", 61), ("/cart", 125), ("/home", 125)]


async def test_a_set_table_and_a_tumbling_window_table_with_exact_contents(kafka_url: str, tmp_path: Path) -> None:
    url, name = fast_groups(kafka_url), unique_name("visits")
    clicks, views = unique_name("clicks"), unique_name("views")
    sets = [("docs", {7, "x"}), ("home", {"al"})]  # "shop" emptied: deleted
    windows = [(("/cart", (0.0, 60.0)), 1), (("/cart", (120.0, 180.0)), 1), (("/home", (0.0, 60.0)), 3),
               (("/home", (60.0, 120.0)), 1), (("/home", (120.0, 180.0)), 1)]

    app, visitors, per_minute = visits_app(name, url, clicks, views, tmp_path / "a")
    await app.start()
    try:
        await app.topic(clicks).send_many(CLICKS)
        for page, second in VIEWS:
            await app.topic(views).send(key=page, value=page, timestamp=second * 1000)
        await app.run_until_idle(stop=False)
        assert sorted(visitors.items(), key=repr) == sets
        assert list(visitors["home"]) == ["al"] and "shop" not in visitors and len(visitors) == 2
        assert sorted(per_minute.table.items()) == windows and per_minute.keys() == ["/cart", "/home"]
    finally:
        await app.stop()
    # Sets are stored as sorted lists, an emptied one as a tombstone; windows as [key, [start, end]].
    set_records = await changelog(url, f"{name}-visitors-changelog")
    assert sorted((k, v) for _, k, v in set_records) == [("docs", [7, "x"]), ("home", ["al"]), ("shop", None)]
    window_records = await changelog(url, f"{name}-per_minute-changelog")
    # Windowed keys as [key, start ms]; the partition's stream time (ms) in a keyless record.
    assert partition_for(b'"/home"', 2) == partition_for(b'"/cart"', 2) == 0
    assert sorted(window_records, key=repr) == sorted(
        [(0, None, 125_000)] + [(0, [k, int(start * 1000)], n) for (k, (start, _)), n in windows], key=repr)

    # A fresh data directory: both tables rebuilt from their changelogs, tombstone included.
    app, visitors, per_minute = visits_app(name, url, clicks, views, tmp_path / "b")
    await app.start()
    try:
        await app.run_until_idle(stop=False)
        assert sorted(visitors.items(), key=repr) == sets and "shop" not in visitors
        assert sorted(per_minute.table.items()) == windows
        assert app.monitor.restored_records == 3 + 5  # the stream time is not a record of the table
        assert per_minute.table._store.partitions[0].stream_time == 125_000  # restored with the windows
        # A view an hour and more later expires the old windows of its partition (end + expires
        # passed), with tombstones in the changelog.
        await app.topic(views).send(key="/home", value="/home", timestamp=(125 + 3600) * 1000)
        await app.run_until_idle(stop=False)
        assert sorted(per_minute.table.items()) == [
            (("/cart", (120.0, 180.0)), 1), (("/home", (120.0, 180.0)), 1), (("/home", (3720.0, 3780.0)), 1)]
    finally:
        await app.stop()
    later = (await changelog(url, f"{name}-per_minute-changelog"))[len(window_records):]
    assert sorted(later, key=repr) == sorted([
        (0, ["/cart", 0], None), (0, ["/home", 0], None), (0, ["/home", 60_000], None),
        (0, ["/home", 3_720_000], 1), (0, None, 3_725_000)], key=repr)
