"""User agents (Faust style): concurrency and commits, acks, sinks, channels, the
supervisor and dead letters, on memory:// and the embedded local log."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from dataflow.ir.records import Record
from dataflow.runtime.app import App
from dataflow.runtime.events import current_event
from dataflow.transport.base import TP, open_transport
from dataflow.transport.memory import MemoryTransport


@pytest.fixture(params=["memory", "local"])
async def broker(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    if request.param == "memory":
        name = f"agents-{uuid.uuid4().hex}"
        keep = MemoryTransport(name)  # keeps the named broker alive after the app stops
        yield f"memory://{name}"
        del keep
    else:
        yield f"local://{tmp_path / 'log'}"


async def committed_and_end(url: str, group: str, topic: str, partitions: int) -> tuple[dict[int, int | None], dict[int, int]]:
    """What a fresh consumer of ``group`` sees once the app has stopped."""
    async with open_transport(url, data_dir=".") as transport:
        async with transport.consumer(group, [topic]) as consumer:
            tps = [TP(topic, p) for p in range(partitions)]
            committed = {tp.partition: await consumer.committed(tp) for tp in tps}
            ends = await consumer.end_offsets(tps)
    return committed, {tp.partition: end for tp, end in ends.items()}


async def test_concurrency_3_processes_every_value_once_and_commits_to_the_end(broker: str) -> None:
    app = App("counter", broker=broker, commit_every=250)
    numbers = app.topic("numbers", partitions=4)
    seen: Counter[int] = Counter()
    by_actor: dict[int, set[int]] = {}

    @app.agent(numbers, concurrency=3)
    async def count(stream):
        async for value in stream:
            seen[value] += 1
            by_actor.setdefault(stream.index, set()).add(current_event().message.partition)
            if value % 7 == 0:
                await asyncio.sleep(0)  # let the actors interleave

    await app.start()
    await numbers.send_many([(f"key-{i}", i) for i in range(3000)])
    await app.run_until_idle()

    assert seen == Counter(range(3000))
    # Partitions are spread over the actors (p % 3), so each partition keeps its order.
    assert by_actor == {0: {0, 3}, 1: {1}, 2: {2}}
    committed, ends = await committed_and_end(broker, "counter", "numbers", 4)
    assert sum(ends.values()) == 3000
    assert committed == ends
    stats = app.monitor.as_dict()
    assert stats["messages_received_by_topic"] == {"numbers": 3000}
    assert stats["messages_sent_by_topic"] == {"numbers": 3000}
    assert stats["events_by_agent"] == {"count": 3000}
    assert stats["commits"] >= 1


async def test_out_of_order_acks_never_commit_past_an_unprocessed_message(broker: str) -> None:
    app = App("gated", broker=broker, commit_every=1, commit_interval=0.01)
    source = app.topic("source", partitions=1)
    gate = asyncio.Event()
    all_taken = asyncio.Event()

    @app.agent(source)
    async def slow(stream):
        held = []
        async for event in stream.noack().events():
            held.append(event)
            if len(held) == 10:
                for event in reversed(held):  # out of order, all but offset 5
                    if event.message.offset != 5:
                        event.ack()
                all_taken.set()
                await gate.wait()
                held[5].ack()
                held = []

    await app.start()
    await source.send_many([(None, i) for i in range(10)])
    await all_taken.wait()
    await app.commit()
    probe = app.transport.consumer("gated", ["source"])  # never started: reads commits only
    assert await probe.committed(TP("source", 0)) == 5
    assert app._tracker.in_flight == 1

    gate.set()
    await app.run_until_idle()
    committed, ends = await committed_and_end(broker, "gated", "source", 1)
    assert committed == ends == {0: 10}


async def test_concurrent_actors_commit_only_what_each_finished(broker: str) -> None:
    """Actor 1 holds a message of partition 1: partition 0 commits to its end, partition 1
    stops right before the held message."""
    app = App("split", broker=broker, commit_every=1)
    source = app.topic("source", partitions=2)
    gate = asyncio.Event()
    blocked = asyncio.Event()
    done: list[int] = []

    @app.agent(source, concurrency=2)
    async def work(stream):
        async for value in stream:
            if value == "hold":
                blocked.set()
                await gate.wait()
            done.append(value)

    await app.start()
    for i in range(5):
        await source.send(value=i, partition=0)
    await source.send(value="first", partition=1)
    await source.send(value="hold", partition=1)
    await source.send(value="after", partition=1)
    await blocked.wait()
    while len(done) < 6:
        await asyncio.sleep(0.001)
    await app.commit()
    probe = app.transport.consumer("split", ["source"])
    assert await probe.committed(TP("source", 0)) == 5
    assert await probe.committed(TP("source", 1)) == 1
    gate.set()
    await app.run_until_idle()
    committed, _ = await committed_and_end(broker, "split", "source", 2)
    assert committed == {0: 5, 1: 3}
    assert sorted(map(str, done)) == sorted(map(str, [0, 1, 2, 3, 4, "first", "hold", "after"]))


async def test_sinks_chain_agent_to_agent_topic_and_callable() -> None:
    app = App("chain")
    source = app.topic("source", partitions=2)
    doubled_topic = app.topic("doubled", partitions=1)
    collected: list[tuple[str, int]] = []
    called: list[int] = []

    @app.agent(name="collect")
    async def collect(stream):
        async for key, value in stream.items():
            collected.append((key, value))

    async def remember(value: int) -> None:
        called.append(value)

    @app.agent(source, sink=[collect, doubled_topic, remember])
    async def double(stream):
        async for value in stream:
            yield value * 2

    await app.start()
    await source.send_many([(f"k{i}", i) for i in range(10)])
    await app.run_until_idle(stop=False)
    end = (await app.transport.describe_topics(["doubled"]))["doubled"]
    await app.stop()

    assert sorted(collected) == sorted((f"k{i}", 2 * i) for i in range(10))  # keys travel along
    assert sorted(called) == [2 * i for i in range(10)]
    assert end == 1
    assert app.monitor.sent_by_topic["doubled"] == 10
    assert app.monitor.sent_by_topic["chain-collect"] == 10
    assert app.monitor.events_by_agent == {"collect": 10, "double": 10}


async def test_channel_agent_round_robins_over_its_actors() -> None:
    app = App("chan")
    channel = app.channel()
    got: dict[int, list[int]] = {}

    @app.agent(channel, concurrency=2)
    async def consume(stream):
        async for value in stream:
            got.setdefault(stream.index, []).append(value)

    await channel.send(value=-1)  # buffered until the agent subscribes
    await app.start()
    for i in range(6):
        await consume.send(value=i)
    await consume.cast(6)
    await app.run_until_idle()
    assert sorted(v for values in got.values() for v in values) == list(range(-1, 7))
    assert set(got) == {0, 1}


async def test_isolated_partitions_run_one_actor_per_partition() -> None:
    app = App("iso")
    source = app.topic("source", partitions=3)
    seen: dict[int, set[int]] = {}

    @app.agent(source, isolated_partitions=True)
    async def per_partition(stream):
        async for _ in stream:
            seen.setdefault(stream.index, set()).add(current_event().message.partition)

    await app.start()
    for p in range(3):
        for i in range(4):
            await source.send(value=i, partition=p)
    await app.run_until_idle()
    assert seen == {0: {0}, 1: {1}, 2: {2}}
    assert len(per_partition.actors) == 3


async def test_supervisor_restarts_a_crashing_actor_then_stops_after_the_bound(broker: str) -> None:
    app = App("crashy", broker=broker, commit_every=1)
    source = app.topic("source", partitions=1)
    processed: list[int] = []
    errors: list[str] = []

    async def on_error(agent, exc: BaseException) -> None:
        errors.append(f"{agent.name}: {exc}")

    @app.agent(source, on_error=on_error, max_restarts=2)
    async def fragile(stream):
        async for value in stream:
            if value == "boom":
                raise RuntimeError("boom")
            processed.append(value)

    await app.start()
    await source.send_many([(None, v) for v in [1, "boom", 2, "boom", 3, "boom", 4, 5]])
    await app.run_until_idle()

    assert processed == [1, 2, 3]  # restarted twice, stopped at the third crash
    assert errors == ["fragile: boom"] * 3
    assert fragile.crashes == 3 and fragile.stopped
    # The crashing events were acked (as in Faust); 4 and 5 were never processed, so the
    # commit stops right before 4.
    committed, _ = await committed_and_end(broker, "crashy", "source", 1)
    assert committed == {0: 6}


async def test_a_crash_in_one_agent_does_not_stop_another() -> None:
    app = App("two")
    source = app.topic("source", partitions=1)
    healthy: list[int] = []

    @app.agent(source, max_restarts=0)
    async def broken(stream):
        async for _ in stream:
            raise ValueError("always")

    @app.agent(source)
    async def fine(stream):
        async for value in stream:
            healthy.append(value)

    await app.start()
    await source.send_many([(None, i) for i in range(5)])
    await app.run_until_idle()
    assert healthy == [0, 1, 2, 3, 4]
    assert broken.stopped and not fine.stopped


class Payment(Record):
    account: str
    amount: int


async def test_undecodable_and_invalid_messages_go_to_dead_letters(broker: str) -> None:
    app = App("pay", broker=broker, commit_every=1)
    payments = app.topic("payments", value_type=Payment, partitions=1)
    got: list[Payment] = []

    @app.agent(payments)
    async def handle(stream):
        async for payment in stream:
            got.append(payment)

    await app.start()
    await payments.send(key="a", value=Payment("a", 1))
    await payments.send_raw(b'"b"', b'{"account": "b", "amou')
    await payments.send(key="c", value={"account": "c"})
    await payments.send(key="d", value={"account": "d", "amount": 4})
    await app.run_until_idle(stop=False)
    dead_consumer = app.transport.consumer("inspect", ["pay-dead-letters"])
    await dead_consumer.start()
    batch = await dead_consumer.getmany(timeout=0)
    await dead_consumer.stop()
    await app.stop()

    assert got == [Payment("a", 1), Payment("d", 4)]
    dead = batch[TP("pay-dead-letters", 0)]
    assert [(m.key, m.value) for m in dead] == [
        (b'"b"', b'{"account": "b", "amou'),
        (b'"c"', b'{"account":"c"}'),
    ]
    headers = [dict(m.headers) for m in dead]
    assert [h["dataflow.stage"] for h in headers] == [b"decode", b"validate"]
    assert headers[0]["dataflow.error"].startswith(b"json: ")
    assert headers[1]["dataflow.error"] == b"missing field 'amount'"
    assert [h["dataflow.source"] for h in headers] == [b"payments[0]@1", b"payments[0]@2"]
    assert app.monitor.as_dict()["dead_letters_by_stage"] == {"decode": 1, "validate": 1}
    committed, ends = await committed_and_end(broker, "pay", "payments", 1)
    assert committed == ends == {0: 4}
