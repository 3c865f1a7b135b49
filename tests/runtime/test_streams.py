"""Stream operations: iteration forms, take(), through(), echo(), group_by(), processors."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from dataflow.ir.records import Record
from dataflow.runtime.app import App
from dataflow.runtime.events import current_event
from dataflow.runtime.streams import Skip
from dataflow.transport.base import TP, partition_for
from dataflow.transport.memory import MemoryTransport


@pytest.fixture(params=["memory", "local"])
async def broker(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    if request.param == "memory":
        name = f"streams-{uuid.uuid4().hex}"
        keep = MemoryTransport(name)
        yield f"memory://{name}"
        del keep
    else:
        yield f"local://{tmp_path / 'log'}"


async def read_all(app: App, topic: str) -> list:
    consumer = app.transport.consumer(f"inspect-{uuid.uuid4().hex}", [topic])
    await consumer.start()
    messages = []
    while batch := await consumer.getmany(timeout=0):
        messages.extend(m for msgs in batch.values() for m in msgs)
    await consumer.stop()
    return sorted(messages, key=lambda m: (m.partition, m.offset))


async def test_items_enumerate_and_events() -> None:
    app = App("forms")
    a, b, c = (app.topic(name, partitions=1) for name in ("a", "b", "c"))
    out: dict[str, list] = {"items": [], "enumerate": [], "events": []}

    @app.agent(a)
    async def items(stream):
        async for key, value in stream.items():
            out["items"].append((key, value))

    @app.agent(b)
    async def numbered(stream):
        async for n, value in stream.enumerate(start=1):
            out["enumerate"].append((n, value))

    @app.agent(c)
    async def events(stream):
        async for event in stream.events():
            assert current_event() is event
            out["events"].append((event.key, event.value, event.message.offset, event.headers))

    await app.start()
    await a.send_many([("x", 1), ("y", 2)])
    await b.send_many([(None, "p"), (None, "q")])
    await c.send(key="k", value={"v": 1}, headers={"trace": "t1"})
    await app.run_until_idle()
    assert out == {
        "items": [("x", 1), ("y", 2)],
        "enumerate": [(1, "p"), (2, "q")],
        "events": [("k", {"v": 1}, 0, (("trace", b"t1"),))],
    }


async def test_take_batches_by_size_and_time_and_acks_after_the_batch(broker: str) -> None:
    app = App("batches", broker=broker, commit_every=1)
    source = app.topic("source", partitions=1)
    batches: list[list[int]] = []
    in_flight_during_batch: list[int] = []

    @app.agent(source)
    async def batcher(stream):
        async for batch in stream.take(10, within=0.02):
            in_flight_during_batch.append(app._tracker.in_flight)
            batches.append(batch)

    await app.start()
    await source.send_many([(None, i) for i in range(25)])
    await app.run_until_idle()
    assert batches == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    # A batch's events stay unacked while the agent works on it.
    assert in_flight_during_batch[0] >= 10
    probe = App("batches", broker=broker)
    await probe.transport.start()
    consumer = probe.transport.consumer("batches", ["source"])
    assert await consumer.committed(TP("source", 0)) == 25
    await probe.transport.stop()


async def test_processors_skip_and_current_event() -> None:
    app = App("proc")
    source = app.topic("source", partitions=1)
    out: list[tuple[int, int]] = []

    def drop_odd(value: int) -> int:
        if value % 2:
            raise Skip
        return value

    async def times_ten(value: int) -> int:
        return value * 10

    @app.agent(source)
    async def agent(stream):
        stream.add_processor(drop_odd)
        stream.add_processor(times_ten)
        async for value in stream:
            out.append((current_event().message.offset, value))

    await app.start()
    await source.send_many([(None, i) for i in range(6)])
    await app.run_until_idle()
    assert out == [(0, 0), (2, 20), (4, 40)]


async def test_through_and_echo(broker: str) -> None:
    app = App("relay", broker=broker)
    source = app.topic("source", partitions=2)
    middle = app.topic("middle", partitions=3)
    copies = app.channel()
    seen: list[tuple[str, int, str]] = []
    copied: list[int] = []

    @app.agent(copies)
    async def copy(stream):
        async for value in stream:
            copied.append(value)

    @app.agent(source, concurrency=2)
    async def relay(stream):
        async for key, value in stream.echo(copies).through(middle).items():
            seen.append((key, value, current_event().message.topic))

    await app.start()
    await source.send_many([(f"k{i}", i) for i in range(12)])
    await app.run_until_idle(stop=False)
    relayed = await read_all(app, "middle")
    await app.stop()
    assert sorted(seen) == sorted((f"k{i}", i, "middle") for i in range(12))
    assert sorted(copied) == list(range(12))
    # Keys travel with the values, so middle is partitioned by the same keys.
    assert sorted((m.key, m.partition) for m in relayed) == sorted(
        (f'"k{i}"'.encode(), partition_for(f'"k{i}"'.encode(), 3)) for i in range(12)
    )


class Order(Record):
    account: str
    amount: int


async def test_group_by_repartitions_through_a_named_topic(broker: str) -> None:
    app = App("shop", broker=broker, commit_every=10)
    orders = app.topic("orders", value_type=Order, partitions=2)
    totals: dict[str, int] = {}
    partitions: dict[str, set[int]] = {}

    @app.agent(orders, concurrency=2)
    async def by_account(stream):
        async for account, order in stream.group_by("account").items():
            assert isinstance(order, Order)
            totals[account] = totals.get(account, 0) + order.amount
            partitions.setdefault(account, set()).add(current_event().message.partition)

    await app.start()
    # Keys are order ids: an account's orders start out on different partitions.
    await orders.send_many([(f"order-{i}", Order(f"acct-{i % 3}", i)) for i in range(30)])
    await app.run_until_idle(stop=False)
    repartitioned = await read_all(app, "shop-account-repartition")
    assert (await app.transport.describe_topics(["shop-account-repartition"])) == {"shop-account-repartition": 2}
    await app.stop()

    assert totals == {f"acct-{r}": sum(i for i in range(30) if i % 3 == r) for r in range(3)}
    assert len(repartitioned) == 30
    for account, seen in partitions.items():
        assert seen == {partition_for(f'"{account}"'.encode(), 2)}


async def test_group_by_with_a_callable_needs_a_name() -> None:
    app = App("named")
    source = app.topic("source", partitions=1)
    errors: list[str] = []
    out: list[tuple[str, int]] = []

    @app.agent(source, max_restarts=0, on_error=lambda agent, exc: errors.append(str(exc)))
    async def unnamed(stream):
        async for value in stream.group_by(lambda v: "x"):
            pass

    @app.agent(source)
    async def named(stream):
        async for key, value in stream.group_by(lambda v: f"mod{v % 2}", name="parity").items():
            out.append((key, value))

    await app.start()
    await source.send_many([(None, i) for i in range(4)])
    await app.run_until_idle()
    assert errors == ["group_by() with a callable key needs name=...; hint: name the repartition"]
    assert sorted(out) == [("mod0", 0), ("mod0", 2), ("mod1", 1), ("mod1", 3)]


async def test_noack_stream_waits_for_manual_acks() -> None:
    app = App("manual", commit_every=1)
    source = app.topic("source", partitions=1)
    kept = []

    @app.agent(source)
    async def keep(stream):
        async for event in stream.noack().events():
            kept.append(event)

    await app.start()
    await source.send_many([(None, i) for i in range(3)])
    while len(kept) < 3:
        await app.commit()
        await asyncio.sleep(0.001)
    assert await app.commit() == {}
    assert kept[0].ack() and not kept[0].ack()
    assert await app.commit() == {TP("source", 0): 1}
    kept[2].ack()
    kept[1].ack()
    assert await app.commit() == {TP("source", 0): 3}
    await app.run_until_idle()


async def test_event_forward_keeps_bytes_and_send_reencodes() -> None:
    app = App("fwd")
    source = app.topic("source", partitions=1)
    raw_copy = app.topic("raw-copy", partitions=1)
    packed = app.topic("packed", value_serializer="msgpack", partitions=1)

    @app.agent(source)
    async def route(stream):
        async for event in stream.events():
            await event.forward(raw_copy)
            await event.send("packed", value={"seen": event.value})

    await app.start()
    await source.send_raw(b'"k"', b'{ "spaced" : 1 }', headers=(("h", b"1"),))
    await app.run_until_idle(stop=False)
    copied = await read_all(app, "raw-copy")
    repacked = await read_all(app, "packed")
    await app.stop()
    assert [(m.key, m.value, m.headers) for m in copied] == [(b'"k"', b'{ "spaced" : 1 }', (("h", b"1"),))]
    assert [(m.key, packed.decode_value(m.value)) for m in repacked] == [(b'"k"', {"seen": {"spaced": 1}})]
