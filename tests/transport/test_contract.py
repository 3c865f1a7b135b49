"""One contract, every in-process transport: memory:// and the embedded local log."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dataflow.transport.base import (
    TP,
    CommitFailedError,
    Message,
    ProducerRecord,
    TopicMismatchError,
    TopicSpec,
    Transport,
    TransportError,
    UnknownTopicError,
    partition_for,
)
from dataflow.transport.local import LocalTransport
from dataflow.transport.memory import MemoryTransport

NOW = 1_700_000_000_000


def clock() -> int:
    return NOW


@pytest.fixture(params=["memory", "local"])
async def transport(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Transport]:
    t: Transport = MemoryTransport(clock=clock) if request.param == "memory" else LocalTransport(tmp_path, clock=clock)
    await t.start()
    await t.create_topics([TopicSpec("orders", 4), TopicSpec("one", 1)])
    yield t
    await t.stop()


def values(batch: dict[TP, list[Message]]) -> dict[TP, list[bytes | None]]:
    return {tp: [m.value for m in msgs] for tp, msgs in sorted(batch.items())}


async def drain(consumer, max_records: int = 10_000) -> dict[TP, list[Message]]:
    """Everything currently readable (getmany may split it over several calls)."""
    out: dict[TP, list[Message]] = {}
    while batch := await consumer.getmany(max_records=max_records, timeout=0):
        for tp, msgs in batch.items():
            out.setdefault(tp, []).extend(msgs)
    return out


async def test_messages_keep_send_order_within_each_partition(transport: Transport) -> None:
    producer = transport.producer()
    records = [ProducerRecord("orders", f"user-{i % 5}".encode(), f"v{i}".encode()) for i in range(30)]
    placed = await producer.send_batch(records[:10])
    for record in records[10:]:
        placed.append(await producer.send(record))
    consumer = transport.consumer("app", ["orders"])
    await consumer.start()
    got = await drain(consumer)
    expected: dict[TP, list[bytes | None]] = {}
    for record, (partition, _) in zip(records, placed, strict=True):
        expected.setdefault(TP("orders", partition), []).append(record.value)
    assert values(got) == dict(sorted(expected.items()))
    for tp, msgs in got.items():
        assert [m.offset for m in msgs] == list(range(len(msgs)))
    assert sorted(placed) == sorted((m.partition, m.offset) for msgs in got.values() for m in msgs)


async def test_message_fields_round_trip(transport: Transport) -> None:
    producer = transport.producer()
    await producer.send(ProducerRecord("one", b"k", b"v", timestamp=123, headers=(("trace", b"\x01"), ("h", b""))))
    await producer.send(ProducerRecord("one", None, None))  # a keyless tombstone, stamped by the clock
    async with transport.consumer("app", ["one"]) as consumer:
        got = await drain(consumer)
    assert got == {
        TP("one", 0): [
            Message("one", 0, 0, b"k", b"v", 123, (("trace", b"\x01"), ("h", b""))),
            Message("one", 0, 1, None, None, NOW, ()),
        ]
    }


# Kafka's own murmur2 test vectors (UtilsTest), reduced to partitions the Java way.
KAFKA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java_hash"), KAFKA_MURMUR2)
def test_partition_for_matches_the_java_client(key: bytes, java_hash: int) -> None:
    for partitions in (1, 3, 4, 12, 100):
        assert partition_for(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


def test_partition_for_keyless_and_invalid() -> None:
    assert [partition_for(None, n) for n in (1, 4, 9)] == [0, 0, 0]
    assert partition_for(b"", 4) == partition_for(b"", 4)
    with pytest.raises(ValueError, match="partitions must be >= 1, got 0"):
        partition_for(b"k", 0)


async def test_keys_land_on_their_partition(transport: Transport) -> None:
    producer = transport.producer()
    keys = [b"21", b"foobar", b"abc", b"user-7"]
    placed = await producer.send_batch([ProducerRecord("orders", key, b"x") for key in keys * 2])
    assert [p for p, _ in placed] == [partition_for(key, 4) for key in keys] * 2
    assert [p for p, _ in placed[:3]] == [0, 2, 3]  # (java hash & 0x7fffffff) % 4
    counts = [sum(p == partition for p, _ in placed) for partition in range(4)]
    assert counts == [4, 0, 2, 2]
    assert await producer.send(ProducerRecord("orders", None, b"x")) == (0, 4)  # keyless: partition 0
    assert await producer.send(ProducerRecord("orders", b"21", b"x", partition=3)) == (3, 2)  # explicit wins


async def test_producing_to_bad_targets(transport: Transport) -> None:
    producer = transport.producer()
    with pytest.raises(UnknownTopicError, match="unknown topic 'nope'; hint: create it first with create_topics()"):
        await producer.send(ProducerRecord("nope", None, b"x"))
    with pytest.raises(TransportError, match="partition 4 out of range for topic 'orders' with 4 partitions"):
        await producer.send(ProducerRecord("orders", None, b"x", partition=4))
    with pytest.raises(UnknownTopicError):
        await transport.consumer("app", ["orders", "nope"]).start()
    assert await producer.send_batch([]) == []


async def test_commit_and_committed(transport: Transport) -> None:
    producer = transport.producer()
    await producer.send_batch([ProducerRecord("one", None, f"v{i}".encode()) for i in range(6)])
    tp = TP("one", 0)
    consumer = transport.consumer("app", ["one"])
    await consumer.start()
    assert await consumer.committed(tp) is None
    assert [m.offset for m in (await consumer.getmany(max_records=4, timeout=0))[tp]] == [0, 1, 2, 3]
    await consumer.commit({tp: 4})
    assert await consumer.committed(tp) == 4
    assert consumer.position(tp) == 4
    await consumer.commit({})
    with pytest.raises(CommitFailedError, match=r"group 'app' cannot commit orders\[0\]: not assigned"):
        await consumer.commit({TP("orders", 0): 1})
    with pytest.raises(ValueError, match=r"commit offset for one\[0\] must be >= 0, got -1"):
        await consumer.commit({tp: -1})
    await consumer.stop()
    with pytest.raises(CommitFailedError):
        await consumer.commit({tp: 5})

    async with transport.consumer("app", ["one"]) as again:
        assert await again.committed(tp) == 4
        assert values(await drain(again)) == {tp: [b"v4", b"v5"]}
    async with transport.consumer("other-app", ["one"]) as other:
        assert await other.committed(tp) is None
        assert len((await drain(other))[tp]) == 6


async def test_latest_reset_skips_existing_records(transport: Transport) -> None:
    producer = transport.producer()
    await producer.send(ProducerRecord("one", None, b"old"))
    async with transport.consumer("tail", ["one"], auto_offset_reset="latest") as consumer:
        assert await consumer.getmany(timeout=0) == {}
        await producer.send(ProducerRecord("one", None, b"new"))
        assert values(await consumer.getmany(timeout=0)) == {TP("one", 0): [b"new"]}
    with pytest.raises(ValueError, match="auto_offset_reset must be 'earliest' or 'latest'"):
        transport.consumer("g", ["one"], auto_offset_reset="middle")  # type: ignore[arg-type]


async def test_seek(transport: Transport) -> None:
    tp = TP("one", 0)
    await transport.producer().send_batch([ProducerRecord("one", None, bytes([i])) for i in range(5)])
    async with transport.consumer("app", ["one"]) as consumer:
        await drain(consumer)
        consumer.seek(tp, 2)
        assert consumer.position(tp) == 2
        assert [m.offset for m in (await consumer.getmany(timeout=0))[tp]] == [2, 3, 4]
        consumer.seek(tp, 99)
        assert await consumer.getmany(timeout=0) == {}
        with pytest.raises(TransportError, match=r"cannot seek orders\[1\]: not assigned"):
            consumer.seek(TP("orders", 1), 0)
        with pytest.raises(ValueError, match="seek offset must be >= 0"):
            consumer.seek(tp, -1)


async def test_pause_and_resume(transport: Transport) -> None:
    producer = transport.producer()
    await producer.send_batch([ProducerRecord("orders", None, b"x", partition=p) for p in (0, 1, 1)])
    a, b = TP("orders", 0), TP("orders", 1)
    async with transport.consumer("app", ["orders"]) as consumer:
        consumer.pause(b)
        assert consumer.paused() == {b}
        assert values(await drain(consumer)) == {a: [b"x"]}
        consumer.resume(b)
        assert consumer.paused() == set()
        assert values(await drain(consumer)) == {b: [b"x", b"x"]}
        with pytest.raises(TransportError, match=r"cannot pause one\[0\]"):
            consumer.pause(TP("one", 0))


async def test_highwater_and_end_offsets(transport: Transport) -> None:
    await transport.producer().send_batch([ProducerRecord("orders", None, b"x", partition=p) for p in (0, 0, 2)])
    async with transport.consumer("app", ["orders"]) as consumer:
        assert consumer.highwater(TP("orders", 0)) == 2
        assert await consumer.end_offsets([TP("orders", p) for p in range(4)]) == {
            TP("orders", 0): 2,
            TP("orders", 1): 0,
            TP("orders", 2): 1,
            TP("orders", 3): 0,
        }


async def test_create_topics_is_idempotent(transport: Transport) -> None:
    await transport.create_topics([TopicSpec("orders", 4), TopicSpec("orders", 4), TopicSpec("new", 2, compacted=True)])
    assert await transport.list_topics() == ["new", "one", "orders"]
    assert await transport.describe_topics(["orders", "new", "missing"]) == {"orders": 4, "new": 2}


async def test_create_topics_refuses_a_partition_mismatch(transport: Transport) -> None:
    with pytest.raises(
        TopicMismatchError,
        match=r"topic 'orders' already exists with 4 partitions, not 8; hint: keep the partition count, or use a new topic name",
    ):
        await transport.create_topics([TopicSpec("fresh", 1), TopicSpec("orders", 8)])
    with pytest.raises(TopicMismatchError, match="topic 'twice' already exists with 1 partitions, not 2"):
        await transport.create_topics([TopicSpec("twice", 1), TopicSpec("twice", 2)])
    assert await transport.list_topics() == ["one", "orders"]  # nothing half-created


def test_topic_spec_validation() -> None:
    with pytest.raises(ValueError, match="invalid topic name 'a/b'"):
        TopicSpec("a/b", 1)
    with pytest.raises(ValueError, match="topic 'a' needs at least 1 partition, got 0"):
        TopicSpec("a", 0)


async def test_getmany_waits_for_new_data(transport: Transport) -> None:
    async with transport.consumer("app", ["one"]) as consumer:
        assert await consumer.getmany(timeout=0) == {}
        waiting = asyncio.create_task(consumer.getmany(timeout=30))
        await asyncio.sleep(0)
        assert not waiting.done()
        await transport.producer().send(ProducerRecord("one", None, b"hello"))
        assert values(await waiting) == {TP("one", 0): [b"hello"]}


async def test_stop_releases_a_waiting_getmany(transport: Transport) -> None:
    consumer = transport.consumer("app", ["one"])
    await consumer.start()
    waiting = asyncio.create_task(consumer.getmany(timeout=30))
    await asyncio.sleep(0)
    await consumer.stop()
    assert await waiting == {}
    assert consumer.assignment() == set()


async def test_max_records_and_fairness(transport: Transport) -> None:
    await transport.producer().send_batch(
        [ProducerRecord("orders", None, b"x", partition=p) for p in (0, 1, 2, 3) for _ in range(10)]
    )
    async with transport.consumer("app", ["orders"]) as consumer:
        sizes = []
        first_tps = []
        while batch := await consumer.getmany(max_records=7, timeout=0):
            sizes.append(sum(len(msgs) for msgs in batch.values()))
            first_tps.append(min(batch))
        assert sizes == [7, 7, 7, 7, 7, 5]
        assert len(set(first_tps)) > 1  # not always the same partition first
        with pytest.raises(ValueError, match="max_records must be >= 1"):
            await consumer.getmany(max_records=0)


async def test_assignment_callbacks_follow_group_membership(transport: Transport) -> None:
    events: list[tuple[str, str, list[int]]] = []
    producer = transport.producer()
    await producer.send_batch([ProducerRecord("orders", None, b"x", partition=p) for p in range(4)])

    def callbacks(name: str):
        async def on_assigned(tps: set[TP]) -> None:
            events.append((name, "assigned", sorted(tp.partition for tp in tps)))

        async def on_revoked(tps: set[TP]) -> None:
            events.append((name, "revoked", sorted(tp.partition for tp in tps)))
            # Still ours during the callback: commit what was read, as a runtime would.
            member = a if name == "a" else b
            await member.commit({tp: member.position(tp) for tp in tps})

        return {"on_assigned": on_assigned, "on_revoked": on_revoked}

    a = transport.consumer("app", ["orders"], **callbacks("a"))
    b = transport.consumer("app", ["orders"], **callbacks("b"))
    await a.start()
    assert a.assignment() == {TP("orders", p) for p in range(4)}
    assert sum(len(m) for m in (await drain(a)).values()) == 4

    await b.start()
    assert (a.assignment(), b.assignment()) == ({TP("orders", 0), TP("orders", 1)}, {TP("orders", 2), TP("orders", 3)})
    assert await drain(b) == {}  # a committed partitions 2 and 3 when they were revoked

    await producer.send_batch([ProducerRecord("orders", None, b"y", partition=p) for p in range(4)])
    assert values(await drain(b)) == {TP("orders", 2): [b"y"], TP("orders", 3): [b"y"]}
    await b.stop()
    assert a.assignment() == {TP("orders", p) for p in range(4)}
    assert values(await drain(a)) == {TP("orders", 0): [b"y"], TP("orders", 1): [b"y"]}
    await a.stop()
    assert events == [
        ("a", "assigned", [0, 1, 2, 3]),
        ("a", "revoked", [2, 3]),
        ("b", "assigned", [2, 3]),
        ("b", "revoked", [2, 3]),
        ("a", "assigned", [2, 3]),
        ("a", "revoked", [0, 1, 2, 3]),
    ]


async def test_transport_stop_stops_its_consumers(transport: Transport) -> None:
    revoked: list[set[TP]] = []

    async def on_revoked(tps: set[TP]) -> None:
        revoked.append(tps)

    consumer = transport.consumer("app", ["one"], on_revoked=on_revoked)
    await consumer.start()
    await transport.stop()
    assert revoked == [{TP("one", 0)}]
    assert consumer.assignment() == set()
