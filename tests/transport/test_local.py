"""The embedded local log: restart/resume, durability layout, atomic transactions, the LOCK."""
from __future__ import annotations

import asyncio
import doctest
import os
import struct
from pathlib import Path

import msgpack
import plyvel
import pytest

import dataflow.transport.local as local_module
from dataflow.transport.base import TP, LogLockedError, ProducerRecord, TopicSpec, TransportError, open_transport
from dataflow.transport.local import LocalTransport

TP0 = TP("orders", 0)


def records(n: int, start: int = 0, topic: str = "orders") -> list[ProducerRecord]:
    return [ProducerRecord(topic, None, f"v{i}".encode(), partition=0, timestamp=i) for i in range(start, start + n)]


async def fresh(path: Path, **kwargs) -> LocalTransport:
    transport = LocalTransport(path, **kwargs)
    await transport.start()
    return transport


async def test_restart_resumes_from_the_committed_offset(tmp_path: Path) -> None:
    first = await fresh(tmp_path)
    await first.create_topics([TopicSpec("orders", 2, compacted=True)])
    await first.producer().send_batch(records(10))
    consumer = first.consumer("app", ["orders"])
    await consumer.start()
    assert [m.offset for m in (await consumer.getmany(max_records=6, timeout=0))[TP0]] == [0, 1, 2, 3, 4, 5]
    await consumer.commit({TP0: 6})
    await first.stop()

    second = await fresh(tmp_path)  # a new transport object on the same directory
    assert await second.describe_topics(["orders"]) == {"orders": 2}
    assert second.log.spec("orders").compacted is True
    async with second.consumer("app", ["orders"]) as again:
        assert await again.committed(TP0) == 6
        assert again.highwater(TP0) == 10
        batch = await again.getmany(timeout=0)
        assert [(m.offset, m.value, m.timestamp) for m in batch[TP0]] == [(i, f"v{i}".encode(), i) for i in range(6, 10)]
    # Appends continue after the recovered end.
    assert await second.producer().send(ProducerRecord("orders", None, b"next", partition=0)) == (0, 10)
    await second.stop()


async def test_uncommitted_reads_are_redelivered(tmp_path: Path) -> None:
    first = await fresh(tmp_path)
    await first.create_topics([TopicSpec("orders", 1)])
    await first.producer().send_batch(records(5))
    async with first.consumer("app", ["orders"]) as consumer:
        assert len((await consumer.getmany(timeout=0))[TP0]) == 5
        await consumer.commit({TP0: 2})
    await first.stop()

    second = await fresh(tmp_path)
    async with second.consumer("app", ["orders"]) as consumer:
        assert [m.offset for m in (await consumer.getmany(timeout=0))[TP0]] == [2, 3, 4]
    await second.stop()


async def test_a_second_open_of_a_locked_log_fails_clearly(tmp_path: Path) -> None:
    holder = await fresh(tmp_path)
    intruder = LocalTransport(tmp_path, open_attempts=3, open_backoff=0.001)
    with pytest.raises(LogLockedError) as info:
        await intruder.start()
    # The holder is named: it wrote its PID beside the LOCK when it opened the log.
    assert str(info.value) == (
        f"local log {tmp_path / 'log'} is in use by process {os.getpid()} (this process); "
        "hint: stop it, or pass a different --data-dir (one process per data directory)"
    )
    await holder.stop()
    await intruder.start()  # the lock is free now
    await intruder.stop()


async def test_open_retries_until_the_previous_owner_lets_go(tmp_path: Path) -> None:
    holder = await fresh(tmp_path)
    # A generous retry budget (backoff doubles), so the outcome does not depend on timing.
    waiting = asyncio.create_task(fresh(tmp_path, open_attempts=30, open_backoff=0.002))
    await asyncio.sleep(0)
    await holder.stop()
    successor = await waiting
    assert await successor.list_topics() == []
    await successor.stop()


async def test_on_disk_layout(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("orders", 2)])
    await transport.producer().send(ProducerRecord("orders", b"k", b"v", partition=1, timestamp=7, headers=(("h", b"1"),)))
    async with transport.consumer("app", ["orders"]) as consumer:
        await consumer.commit({TP("orders", 1): 1})
    await transport.stop()

    db = plyvel.DB(str(tmp_path / "log"))
    try:
        layout = dict(db.iterator())
    finally:
        db.close()
    assert layout == {
        b"c/orders/1/app": struct.pack(">Q", 1),
        b"m/orders/1/" + struct.pack(">Q", 0): msgpack.packb((7, b"k", b"v", (("h", b"1"),)), use_bin_type=True),
        b"t/orders": msgpack.packb({"partitions": 2, "compacted": False}),
        b"v": b"1",
    }


async def test_gaps_in_the_log_are_skipped(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("orders", 1)])
    await transport.producer().send_batch(records(5))
    await transport.stop()
    db = plyvel.DB(str(tmp_path / "log"))  # what compaction would do: drop superseded records
    for offset in (0, 2, 3):
        db.delete(b"m/orders/0/" + struct.pack(">Q", offset))
    db.close()

    transport = await fresh(tmp_path)
    async with transport.consumer("app", ["orders"]) as consumer:
        assert [m.offset for m in (await consumer.getmany(timeout=0))[TP0]] == [1, 4]
        consumer.seek(TP0, 2)
        assert [m.offset for m in (await consumer.getmany(timeout=0))[TP0]] == [4]
    await transport.stop()


async def test_large_batches_round_trip_through_the_executor(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("orders", 1)])
    placed = await transport.producer().send_batch(records(3000))
    assert placed == [(0, i) for i in range(3000)]
    async with transport.consumer("app", ["orders"]) as consumer:
        batch = await consumer.getmany(max_records=2500, timeout=0)
        assert [m.offset for m in batch[TP0]] == list(range(2500))
        assert [m.value for m in (await consumer.getmany(max_records=2500, timeout=0))[TP0]] == [
            f"v{i}".encode() for i in range(2500, 3000)
        ]
    await transport.stop()


async def test_transaction_writes_records_offsets_and_state_together(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("orders", 1), TopicSpec("totals", 1)])
    await transport.producer().send_batch(records(3))
    consumer = transport.consumer("app", ["orders"])
    await consumer.start()
    out = transport.consumer("sink", ["totals"])
    await out.start()
    waiting = asyncio.create_task(out.getmany(timeout=30))
    await asyncio.sleep(0)

    async with transport.transaction() as txn:
        txn.send(ProducerRecord("totals", b"u", b"3", timestamp=1))
        txn.send(ProducerRecord("totals", b"u", b"4", timestamp=2))
        txn.commit_offsets("app", {TP0: 3})
        txn.put("totals", b"u", b"4")
        txn.put("totals", b"gone", b"x")
        txn.delete("totals", b"gone")
    assert txn.results == [(0, 0), (0, 1)]
    assert [m.value for m in (await waiting)[TP("totals", 0)]] == [b"3", b"4"]  # woke the reader
    assert await consumer.committed(TP0) == 3
    with pytest.raises(TransportError, match="transaction already finished"):
        txn.send(ProducerRecord("totals", None, b"late"))
    await transport.stop()

    transport = await fresh(tmp_path)
    assert transport.log.committed("app", TP0) == 3
    assert transport.log.end_offset(TP("totals", 0)) == 2
    assert list(transport.store_db("totals").iterator()) == [(b"u", b"4")]
    await transport.stop()


async def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("totals", 1)])
    with pytest.raises(RuntimeError, match="operator failed"):
        async with transport.transaction() as txn:
            txn.send(ProducerRecord("totals", b"u", b"1"))
            txn.commit_offsets("app", {TP("totals", 0): 1})
            txn.put("totals", b"u", b"1")
            raise RuntimeError("operator failed")
    with pytest.raises(TransportError, match="unknown topic 'nope'"):
        async with transport.transaction() as txn:
            txn.send(ProducerRecord("totals", b"u", b"1"))
            txn.send(ProducerRecord("nope", b"u", b"1"))
    assert transport.log.end_offset(TP("totals", 0)) == 0
    assert transport.log.committed("app", TP("totals", 0)) is None
    assert list(transport.store_db("totals").iterator()) == []
    with pytest.raises(ValueError, match="invalid store name 'a/b'"):
        transport.transaction().put("a/b", b"k", b"v")
    with pytest.raises(TransportError, match="unknown topic 'nope'"):
        await transport.commit_produced_and_offsets([], "app", {TP("nope", 0): 1})
    await transport.stop()


async def test_commit_produced_and_offsets(tmp_path: Path) -> None:
    transport = await fresh(tmp_path)
    await transport.create_topics([TopicSpec("in", 1), TopicSpec("totals", 2)])
    placed = await transport.commit_produced_and_offsets(
        [ProducerRecord("totals", None, b"a", partition=1), ProducerRecord("totals", None, b"b", partition=1)],
        "app",
        {TP("in", 0): 17},
        puts=[("agg", b"k", b"v"), ("agg", b"k2", None)],
    )
    assert placed == [(1, 0), (1, 1)]
    assert transport.log.committed("app", TP("in", 0)) == 17
    assert transport.store_db("agg").get(b"k") == b"v"
    await transport.stop()


async def test_layout_version_mismatch_is_refused(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    db = plyvel.DB(str(tmp_path / "log"), create_if_missing=True)
    db.put(b"v", b"99")
    db.close()
    with pytest.raises(TransportError, match=r"has layout version '99', this dataflow reads '1'"):
        await fresh(tmp_path)


async def test_using_a_log_that_is_not_open(tmp_path: Path) -> None:
    transport = LocalTransport(tmp_path)
    assert transport.url == f"local://{tmp_path}"
    with pytest.raises(TransportError, match="is not open; hint: start the transport first"):
        transport.store_db("x")
    await transport.stop()  # stopping an unopened log is harmless


def test_open_transport_local_urls(tmp_path: Path) -> None:
    for url, where in [(None, tmp_path), ("local://", tmp_path), (f"local://{tmp_path}/elsewhere", tmp_path / "elsewhere")]:
        local = open_transport(url, str(tmp_path))
        assert isinstance(local, LocalTransport)
        assert local.log.path == where / "log"
    assert open_transport("local://rel/dir", str(tmp_path)).url == "local://rel/dir"


def test_doctests() -> None:
    assert doctest.testmod(local_module).failed == 0
