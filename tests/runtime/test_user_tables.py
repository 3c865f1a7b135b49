"""Tables in Python agents (``app.Table``, ``app.SetTable``): the dict API, partitioning,
changelog commits, restarts on the local log, and partitions moving between two members."""
from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow.runtime.app import App
from dataflow.runtime.tables import TableNotAssigned
from dataflow.transport.base import TP, Message, open_transport, partition_for
from dataflow.transport.memory import MemoryTransport

WORDS = [f"w{i % 13}" for i in range(200)]  # 13 keys, counts 16 and 15


@pytest.fixture(params=["memory", "local"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        name = f"tables-{uuid.uuid4().hex}"
        keep = MemoryTransport(name)  # keeps the named broker (and the changelogs) after a stop
        yield f"memory://{name}"
        del keep
    else:
        yield f"local://{tmp_path / 'data'}"


async def read_topic(url: str, topic: str) -> list[Message]:
    """Every record of ``topic``, partition by partition (the app must be stopped: LOCK)."""
    transport = open_transport(url, data_dir="unused")
    await transport.start()
    try:
        count = (await transport.describe_topics([topic]))[topic]
        out: list[Message] = []
        for p in range(count):
            end = await transport.end_offset(TP(topic, p))  # type: ignore[attr-defined]
            out += await transport.read_partition(TP(topic, p), 0, end)  # type: ignore[attr-defined]
        return out
    finally:
        await transport.stop()


def word_count_app(url: str, **settings: Any) -> tuple[App, Any]:
    app = App("wc", broker=url, topic_partitions=4, **settings)
    counts = app.Table("counts", default=int)
    words = app.topic("words")

    @app.agent(words, concurrency=3)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    return app, counts


async def test_counts_with_a_default_in_an_agent_with_concurrency(broker: str) -> None:
    app, counts = word_count_app(broker)
    await app.start()
    await app.topic("words").send_many([(w, w) for w in WORDS])
    await app.run_until_idle(stop=False)
    try:
        assert dict(counts.items()) == dict(Counter(WORDS))
        assert len(counts) == 13 and sorted(counts) == sorted(set(WORDS))
        assert counts["never"] == 0 and "never" not in counts and len(counts) == 13  # default() is not stored
        # Each key was written to the partition of its events: where its JSON key hashes to.
        for p, part in counts._store.partitions.items():
            assert {orjson.loads(k) for k, _ in part.range()} == {w for w in set(WORDS)
                                                                 if partition_for(orjson.dumps(w), 4) == p}
    finally:
        await app.stop()


async def test_the_dict_api() -> None:
    app = App("dict", topic_partitions=3)
    plain = app.Table("plain")
    seen: dict[str, Any] = {}

    @app.task
    async def use() -> None:
        plain["a"] = {"n": 1, "tags": ("x", "y")}
        plain[("k", 2)] = 7
        plain["b"] = None
        seen["a"] = plain["a"]
        seen["contains"] = ("a" in plain, "b" in plain, "zz" in plain)
        seen["get"] = (plain.get("zz"), plain.get("zz", 5), plain.get("b", 5))
        with pytest.raises(KeyError):
            plain["zz"]
        seen["len"] = len(plain)
        seen["keys"] = sorted(plain, key=repr)
        seen["pop"] = plain.pop("b"), plain.pop("b", "gone")
        del plain[("k", 2)]
        with pytest.raises(KeyError):
            del plain["zz"]
        seen["setdefault"] = plain.setdefault("c", [1]), plain.setdefault("c", [2])
        seen["items"] = plain.items()
        with pytest.raises(TypeError, match=r"table 'plain': the value for key 'bad' is not JSON-serializable"):
            plain["bad"] = object()
        with pytest.raises(TypeError, match=r"table 'plain': key .* is not JSON-serializable"):
            plain[object()] = 1

    await app.run_until_idle(stop=False)
    try:
        assert seen == {
            "a": {"n": 1, "tags": ["x", "y"]},  # as it reads back from JSON
            "contains": (True, True, False),
            "get": (None, 5, None),
            "len": 3,
            "keys": ["a", "b", ("k", 2)],
            "pop": (None, "gone"),
            "setdefault": ([1], [1]),
            "items": [("a", {"n": 1, "tags": ["x", "y"]}), ("c", [1])],
        }
    finally:
        await app.stop()


async def test_a_table_outside_a_running_app_says_so() -> None:
    app = App("idle")
    table = app.Table("t", default=int)
    with pytest.raises(TableNotAssigned, match=r"table 't' is not open; hint: use tables while the app runs"):
        table["x"] += 1
    with pytest.raises(ValueError, match="already defined"):
        app.Table("t")
    with pytest.raises(ValueError, match="invalid topic name"):
        app.Table("no spaces")


async def test_events_from_a_wider_topic_than_the_table_are_refused() -> None:
    app = App("wide")
    narrow = app.Table("narrow", default=int, partitions=2)
    errors: list[BaseException] = []

    @app.agent(app.topic("wide", partitions=4), on_error=lambda agent, exc: errors.append(exc))
    async def use(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            narrow["k"] += 1

    await app.start()
    await app.topic("wide").send(value=1, partition=3)
    await app.run_until_idle()
    assert [str(e) for e in errors] == [
        "table 'narrow' has 2 partitions, but the current event came from wide[3]; "
        "hint: give the table partitions= as many as its topic's"]


async def test_set_table(broker: str) -> None:
    app = App("visits", broker=broker, topic_partitions=2)
    pages = app.SetTable("pages")
    clicks = app.topic("clicks", partitions=1)  # one partition: the checks come in send order
    checks: list[tuple[Any, ...]] = []

    @app.agent(clicks)
    async def visit(stream):  # type: ignore[no-untyped-def]
        async for page, (action, user) in stream.items():
            if action == "in":
                pages[page].add(user)
            else:
                pages[page].discard(user)
            checks.append((page, user, user in pages[page], len(pages[page])))

    await app.start()
    await clicks.send_many([("home", ["in", "bo"]), ("home", ["in", "al"]), ("home", ["in", "al"]),
                            ("shop", ["in", "cy"]), ("home", ["out", "bo"]), ("shop", ["out", "cy"]),
                            ("shop", ["out", "nobody"]), ("docs", ["in", 7]), ("docs", ["in", "x"])])
    await app.run_until_idle(stop=False)
    try:
        assert list(pages["home"]) == ["al"] and "al" in pages["home"] and "bo" not in pages["home"]
        assert sorted(pages.items(), key=repr) == [("docs", {7, "x"}), ("home", {"al"})]  # "shop" emptied: deleted
        assert "shop" not in pages and len(pages) == 2 and list(pages["shop"]) == []
        assert checks == [("home", "bo", True, 1), ("home", "al", True, 2), ("home", "al", True, 2),
                          ("shop", "cy", True, 1), ("home", "bo", False, 1), ("shop", "cy", False, 0),
                          ("shop", "nobody", False, 0), ("docs", 7, True, 1), ("docs", "x", True, 2)]
    finally:
        await app.stop()
    # Sets are stored as sorted lists; an emptied set as a tombstone.
    final = {m.key: m.value for m in await read_topic(broker, "visits-pages-changelog")}
    assert final == {b'"home"': b'["al"]', b'"shop"': None, b'"docs"': b'[7,"x"]'}


async def test_one_changelog_record_per_changed_key_per_commit() -> None:
    name = f"tables-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    url = f"memory://{name}"
    app, counts = word_count_app(url, commit_every=10**9, commit_interval=3600)
    words = app.topic("words")
    await app.start()
    await words.send_many([(w, w) for w in WORDS])
    await app.run_until_idle(stop=False)
    await app.commit()
    first = await read_topic(url, "wc-counts-changelog")
    await words.send_many([("w1", "w1")] * 10 + [("w2", "w2")] * 5)
    await app.run_until_idle(stop=False)
    await app.commit()
    await app.commit()  # nothing changed: nothing written
    await app.stop()
    records = await read_topic(url, "wc-counts-changelog")
    del keep
    assert sorted((m.key, m.value) for m in first) == sorted(
        (orjson.dumps(w), str(n).encode()) for w, n in Counter(WORDS).items())
    earlier = {(m.partition, m.offset) for m in first}
    assert sorted((m.key, m.value) for m in records if (m.partition, m.offset) not in earlier) == [
        (b'"w1"', b"26"), (b'"w2"', b"21")]
    assert len(records) == 13 + 2 and app.monitor.changelog_records == 15
    # Each record is in the table partition its key was written to.
    assert all(m.partition == partition_for(m.key, 4) for m in records)


async def test_a_restart_on_the_local_log_restores_the_tables(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'data'}"
    app, _ = word_count_app(url)
    await app.start()
    await app.topic("words").send_many([(w, w) for w in WORDS])
    await app.run_until_idle()

    # Stores intact: nothing to replay.
    app, counts = word_count_app(url)
    await app.start()
    await app.run_until_idle(stop=False)
    assert dict(counts.items()) == dict(Counter(WORDS)) and app.monitor.restored_records == 0
    await app.topic("words").send_many([("w0", "w0"), ("new", "new")])
    await app.run_until_idle()

    # Stores deleted: rebuilt from the changelog (13 keys, then w0 and new once more).
    shutil.rmtree(tmp_path / "data" / "state" / "counts")
    app, counts = word_count_app(url)
    await app.start()
    await app.run_until_idle(stop=False)
    try:
        assert dict(counts.items()) == {**Counter(WORDS), "w0": 17, "new": 1}
        assert app.monitor.restored_records == 15
        assert sorted(p.name for p in (tmp_path / "data" / "state" / "counts").iterdir()) == ["0", "1", "2", "3"]
    finally:
        await app.stop()


async def test_a_write_outside_an_event_goes_to_the_partition_of_its_key() -> None:
    name = f"tables-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    app = App("timer", broker=f"memory://{name}", topic_partitions=5)
    last = app.Table("last")

    @app.task
    async def mark() -> None:
        for key in ["a", "b", "c", 42]:
            last[key] = "seen"

    await app.run_until_idle()
    records = await read_topic(f"memory://{name}", "timer-last-changelog")
    del keep
    assert sorted((m.partition, m.key) for m in records) == sorted(
        (partition_for(orjson.dumps(k), 5), orjson.dumps(k)) for k in ["a", "b", "c", 42])


async def test_partitions_move_between_members_with_their_state() -> None:
    """A second member joins: the first commits and closes the partitions it loses, the
    second opens them and replays their changelog before reading any of their records."""
    name = f"tables-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    url = f"memory://{name}"
    first, first_counts = word_count_app(url, commit_interval=3600)  # one commit: at the rebalance
    await first.start()
    await first.topic("words").send_many([(w, w) for w in WORDS])
    await first.run_until_idle(stop=False)
    second, second_counts = word_count_app(url, commit_interval=3600)
    await second.start()  # joining rebalances the group: range assignor, partitions 0-1 and 2-3
    try:
        assert sorted(first_counts._store.partitions) == [0, 1]
        assert sorted(second_counts._store.partitions) == [2, 3]
        expected = Counter(WORDS)
        mine = {w: n for w, n in expected.items() if partition_for(orjson.dumps(w), 4) >= 2}
        assert dict(second_counts.items()) == mine and second.monitor.restored_records == len(mine)
        await first.topic("words").send_many([(w, w) for w in WORDS])
        await first.run_until_idle(stop=False)
        await second.run_until_idle(stop=False)
        both = {**dict(first_counts.items()), **dict(second_counts.items())}
        assert both == {w: 2 * n for w, n in expected.items()}
    finally:
        await second.stop()
        await first.stop()
        del keep


async def test_a_write_made_while_a_commit_is_in_flight_goes_with_the_next_commit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The store flush after a commit clears the dirty marks: writes made while the
    changelog was being sent must not lose theirs."""
    name = f"tables-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    app = App("race", broker=f"memory://{name}", topic_partitions=1, commit_interval=3600)
    table = app.Table("t")
    await app.start()  # no agent: the app holds every partition
    table["a"] = 1
    producer = app._producer
    assert producer is not None
    send_batch, entered, release = producer.send_batch, asyncio.Event(), asyncio.Event()

    async def held(records):  # type: ignore[no-untyped-def]
        entered.set()
        await release.wait()
        return await send_batch(records)

    monkeypatch.setattr(producer, "send_batch", held)
    commit = asyncio.ensure_future(app.commit())
    await entered.wait()
    table["a"] = 2
    table["b"] = 3
    release.set()
    await commit
    await app.stop()
    records = await read_topic(f"memory://{name}", "race-t-changelog")
    del keep
    assert [(m.key, m.value) for m in records] == [(b'"a"', b"1"), (b'"a"', b"2"), (b'"b"', b"3")]


async def test_a_rebalance_mid_stream_drops_queued_events_and_waits_for_restores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Events queued for partitions that move away are dropped (their next owner reads them
    from the commit), the event an actor holds finishes first, and records fetched while a
    returning partition restores its tables wait for it: every word is counted exactly once."""
    from dataflow.runtime.state import StateManager

    real_open = StateManager.open

    async def slow_open(self, pairs, committed):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.02)
        await real_open(self, pairs, committed)

    monkeypatch.setattr(StateManager, "open", slow_open)
    name = f"tables-{uuid.uuid4().hex}"
    keep = MemoryTransport(name)
    url = f"memory://{name}"
    gate = asyncio.Event()

    def gated_counting_app() -> tuple[App, Any]:
        app = App("wc", broker=url, topic_partitions=4, commit_interval=3600, stream_buffer_maxsize=8)
        counts = app.Table("counts", default=int)

        @app.agent(app.topic("words"))
        async def count(stream):  # type: ignore[no-untyped-def]
            async for word in stream:
                await gate.wait()
                counts[word] += 1

        return app, counts

    first, first_counts = gated_counting_app()
    await first.start()
    try:
        await first.topic("words").send_many([(w, w) for w in WORDS])
        while first._tracker.in_flight < 9:  # one held by the actor, eight queued behind it
            await asyncio.sleep(0.001)
        second, _ = gated_counting_app()
        joining = asyncio.ensure_future(second.start())  # first gives back partitions 2 and 3
        await asyncio.sleep(0.01)
        gate.set()
        await joining
        await second.run_until_idle(stop=False)
        await second.stop()  # first gets them back, restoring what second counted
        await first.run_until_idle(stop=False)
        assert first.agents["count"].crashes == 0
        assert dict(first_counts.items()) == dict(Counter(WORDS))
    finally:
        await first.stop()
        del keep
