"""Agents as services: ask, ask_nowait, map, kvmap, join, kvjoin, reply routing, errors and
timeouts, on memory:// and the embedded local log (Kafka variants: test_rpc_kafka.py)."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from dataflow.ir.records import Record
from dataflow.runtime.app import App
from dataflow.runtime.replies import (
    CORRELATION_ID,
    REPLY_ERROR,
    AgentError,
    AskTimeout,
    BarrierState,
    ReplyError,
    ReplyPromise,
    read_reply,
)
from dataflow.transport.base import TP, Message, ProducerRecord, open_transport
from tests.runtime.test_agents import broker  # noqa: F401 - the memory:// / local log fixture


# -- the acceptance cases, shared with the Kafka variants (test_rpc_kafka.py) ---------------

def build_rpc_app(broker: str, name: str = "rpc", **settings: object) -> tuple[App, dict[str, object]]:
    """An app with a 4-actor agent that squares, one that fails on 0, and one that
    never answers odd numbers."""
    app = App(name, broker=broker, topic_partitions=4, data_dir=".", **settings)  # type: ignore[arg-type]

    handled: Counter[int] = Counter()

    @app.agent(concurrency=4)
    async def square(stream):
        async for value in stream:
            handled[stream.index] += 1
            if value % 10 == 0:
                await asyncio.sleep(0)  # let the actors interleave
            yield value * value

    @app.agent()
    async def invert(stream):
        async for value in stream:
            yield 1 / value

    @app.agent()
    async def evens(stream):
        async for value in stream:
            if value % 2 == 0:
                yield value

    return app, {"square": square, "invert": invert, "evens": evens, "handled": handled}


async def check_concurrent_asks(broker: str, **settings: object) -> None:
    app, agents = build_rpc_app(broker, **settings)
    square = agents["square"]
    await app.start()
    try:
        results = await asyncio.gather(*(square.ask(n, key=f"key-{n}") for n in range(1000)))
        assert results == [n * n for n in range(1000)]
        handled = agents["handled"]
        assert sum(handled.values()) == 1000 and set(handled) == {0, 1, 2, 3}  # every actor took a share
        assert (await app.replies()).waiting == 0
    finally:
        await app.stop()


async def check_join_and_map(broker: str, **settings: object) -> None:
    app, agents = build_rpc_app(broker, **settings)
    square = agents["square"]
    await app.start()
    try:
        values = [7, 3, 9, 1, 12, 5, 0, 8]
        assert await square.join(values) == [49, 9, 81, 1, 144, 25, 0, 64]
        mapped = [result async for result in square.map(range(50))]
        assert sorted(mapped) == [n * n for n in range(50)]
        assert await square.join([]) == []
    finally:
        await app.stop()


async def check_error_reply(broker: str, **settings: object) -> None:
    app, agents = build_rpc_app(broker, **settings)
    invert = agents["invert"]
    await app.start()
    try:
        with pytest.raises(AgentError) as caught:
            await invert.ask(0)
        assert str(caught.value) == "agent 'invert' failed: ZeroDivisionError: division by zero"
        assert await invert.ask(4) == 0.25  # the actor was restarted
        with pytest.raises(AgentError, match="^agent 'invert' failed: ZeroDivisionError"):
            await invert.join([1, 0, 2])
    finally:
        await app.stop()


async def check_timeout(broker: str, **settings: object) -> None:
    app, agents = build_rpc_app(broker, reply_expires=0.2, **settings)
    evens = agents["evens"]
    await app.start()
    try:
        assert await evens.ask(2, timeout=30.0) == 2
        with pytest.raises(AskTimeout) as caught:
            await evens.ask(3)
        assert str(caught.value).startswith("no reply from agent 'evens' within 0.2 s (correlation id ")
        assert str(caught.value).endswith("hint: is a worker running the agent? raise reply_expires or the timeout")
        with pytest.raises(AskTimeout, match="within 0.5 s"):
            await evens.join([2, 5], timeout=0.5)
        assert (await app.replies()).waiting == 0
    finally:
        await app.stop()


async def test_1000_concurrent_asks_on_4_actors_each_get_their_own_result() -> None:
    await check_concurrent_asks("memory://")


async def test_join_keeps_input_order_and_map_yields_every_result(broker: str) -> None:
    await check_join_and_map(broker)


async def test_an_agent_that_raises_answers_with_an_error_naming_agent_and_exception(broker: str) -> None:
    await check_error_reply(broker)


async def test_an_ask_without_a_reply_times_out_with_a_clear_error(broker: str) -> None:
    await check_timeout(broker)


# -- the rest of the API ---------------------------------------------------------------------

async def only_record(app: App, topic: str) -> Message:
    """The one record of a one-partition topic of a running app."""
    async with app.transport.consumer(f"reader-{uuid.uuid4().hex}", [topic]) as consumer:
        [record] = (await consumer.getmany(timeout=0))[TP(topic, 0)]
    return record


async def test_ask_nowait_returns_a_promise_to_await_later() -> None:
    app, agents = build_rpc_app("memory://")
    await app.start()
    try:
        promises = [await agents["square"].ask_nowait(n, key=f"k{n}") for n in range(5)]
        assert all(isinstance(p, ReplyPromise) and p.reply_to == "dataflow-reply-rpc" for p in promises)
        assert len({p.correlation_id for p in promises}) == 5
        assert [await p for p in promises] == [0, 1, 4, 9, 16]
    finally:
        await app.stop()


async def test_kvjoin_and_kvmap_send_each_key_with_its_value() -> None:
    app = App("kv", broker="memory://", topic_partitions=4)

    @app.agent(concurrency=4)
    async def tag(stream):
        async for key, value in stream.items():
            yield f"{key}={value}"

    await app.start()
    try:
        items = [(f"k{i}", i) for i in range(20)]
        assert await tag.kvjoin(items) == [f"k{i}={i}" for i in range(20)]
        assert sorted([r async for r in tag.kvmap(items)]) == sorted(f"k{i}={i}" for i in range(20))

        async def values():  # async iterables work as well as lists
            for i in range(3):
                yield i

        assert await tag.join(values(), key="same") == ["same=0", "same=1", "same=2"]
    finally:
        await app.stop()


async def test_custom_reply_to_and_correlation_id_go_in_the_headers() -> None:
    app = App("custom", broker="memory://")
    seen = []

    @app.agent()
    async def echo(stream):
        async for event in stream.events():
            seen.append(dict(event.headers))
            yield event.value

    await app.start()
    try:
        assert await echo.ask("hi", reply_to="custom-replies", correlation_id="corr-1") == "hi"
        assert seen == [{"dataflow.reply-to": b"custom-replies", "dataflow.correlation-id": b"corr-1"}]
        reply = await only_record(app, "custom-replies")
        assert reply.headers == ((CORRELATION_ID, b"corr-1"),)
        assert read_reply(reply.headers, reply.value) == ("corr-1", "hi")
    finally:
        await app.stop()


async def test_reply_to_another_agent_feeds_it_the_result() -> None:
    app = App("chain", broker="memory://")
    got = []

    @app.agent()
    async def collector(stream):
        async for value in stream:
            got.append(value)
            yield value

    @app.agent()
    async def double(stream):
        async for value in stream:
            yield value * 2

    await app.start()
    try:
        assert await double.ask(4, reply_to=collector) == 8
        await app.run_until_idle(stop=False)
        assert got == [8]
    finally:
        await app.stop()


async def test_send_with_reply_to_answers_without_anyone_waiting() -> None:
    app = App("fire", broker="memory://")

    @app.agent()
    async def double(stream):
        async for value in stream:
            yield value * 2

    await app.start()
    try:
        await double.send(value=5, reply_to="fire-results", correlation_id="c-5")
        await app.run_until_idle(stop=False)
        reply = await only_record(app, "fire-results")
        assert (reply.value, reply.headers) == (b"10", ((CORRELATION_ID, b"c-5"),))
        with pytest.raises(ValueError, match="needs a correlation_id"):
            await double.send(value=1, reply_to="fire-results")
    finally:
        await app.stop()


async def test_cast_sends_without_a_reply() -> None:
    app = App("cast", broker="memory://")
    got = []

    @app.agent()
    async def record(stream):
        async for event in stream.events():
            got.append((event.key, event.value, event.headers))
            yield event.value

    await app.start()
    try:
        await record.cast({"n": 1}, key="k")
        await app.run_until_idle(stop=False)
        assert got == [("k", {"n": 1}, ())]
    finally:
        await app.stop()


async def test_an_agent_that_never_yields_cannot_be_asked() -> None:
    app = App("silent", broker="memory://")

    @app.agent()
    async def sink_only(stream):
        async for _ in stream:
            pass

    await app.start()
    try:
        with pytest.raises(TypeError, match=r"agent 'sink_only' cannot reply: its function does not yield"):
            await sink_only.ask(1)
    finally:
        await app.stop()


async def test_a_value_the_topic_rejects_is_answered_with_the_reason() -> None:
    class Order(Record):
        account: str
        amount: int

    app = App("typed", broker="memory://")
    orders = app.topic("orders", value_type=Order)

    @app.agent(orders)
    async def total(stream):
        async for order in stream:
            yield order.amount

    await app.start()
    try:
        assert await total.ask(Order("a", 5)) == 5
        assert await total.ask({"account": "b", "amount": 7}) == 7
        with pytest.raises(AgentError, match=r"^orders: value rejected \(validate\): missing field 'amount'$"):
            await total.ask({"account": "c"})
    finally:
        await app.stop()


async def test_records_come_back_as_dicts_and_unencodable_results_as_errors() -> None:
    class Total(Record):
        account: str
        amount: int

    app = App("shapes", broker="memory://")

    @app.agent()
    async def shape(stream):
        async for value in stream:
            yield Total(value, 1) if value != "set" else {1, 2}

    await app.start()
    try:
        assert await shape.ask("a") == {"account": "a", "amount": 1}
        with pytest.raises(AgentError, match=r"^agent 'shape' returned a value that cannot be sent as a reply: "):
            await shape.ask("set")
    finally:
        await app.stop()


async def test_asks_through_a_channel_and_through_a_repartition() -> None:
    app = App("routes", broker="memory://", topic_partitions=2)
    numbers = app.channel("numbers")

    @app.agent(numbers, concurrency=2)
    async def inc(stream):
        async for value in stream:
            yield value + 1

    @app.agent(app.topic("words", partitions=2))
    async def by_first_letter(stream):
        async for key, word in stream.group_by(lambda w: w[0], name="letter").items():
            yield f"{key}:{word}"

    await app.start()
    try:
        assert await inc.join(range(6)) == [1, 2, 3, 4, 5, 6]
        assert await by_first_letter.join(["apple", "banana"]) == ["a:apple", "b:banana"]
    finally:
        await app.stop()


async def test_a_client_only_app_asks_a_worker_app_on_the_same_broker(broker: str) -> None:
    # The embedded log serves one process at a time: there, both apps share one transport.
    shared = open_transport(broker, ".") if broker.startswith("local://") else broker
    if not isinstance(shared, str):
        await shared.start()

    def build(client_only: bool) -> tuple[App, object]:
        app = App("svc", broker=shared, client_only=client_only, data_dir=".")

        @app.agent(concurrency=2)
        async def square(stream):
            async for value in stream:
                yield value * value

        return app, square

    worker, _ = build(False)
    client, square = build(True)
    await worker.start()
    await client.start()
    try:
        assert client._consumer is None and not square.actors  # nothing runs in the client
        assert await square.join([2, 3]) == [4, 9]
    finally:
        await client.stop()
        await worker.stop()
        if not isinstance(shared, str):
            await shared.stop()


async def test_pending_asks_fail_when_the_app_stops() -> None:
    app = App("stopping", broker="memory://", shutdown_timeout=0.1)
    release = asyncio.Event()

    @app.agent()
    async def slow(stream):
        async for value in stream:
            await release.wait()
            yield value

    await app.start()
    promise = await slow.ask_nowait(1)
    await app.replies()
    stop = asyncio.ensure_future(app.stop())
    await asyncio.sleep(0)
    with pytest.raises(ReplyError, match="app 'stopping' stopped before agent 'slow' replied"):
        await promise
    release.set()
    await stop


async def test_barrier_state_as_the_reference_describes() -> None:
    barrier = BarrierState("replies")
    first, second, third = (ReplyPromise("replies", cid) for cid in ("a", "b", "c"))
    for p in (first, second, third):
        barrier.add(p)
    assert (barrier.size, barrier.total, barrier.fulfilled, barrier.pending) == (3, 0, 0, {first, second, third})
    barrier.fulfill("b", 20)
    assert barrier.get_nowait() == ("b", 20)
    with pytest.raises(asyncio.QueueEmpty):
        barrier.get_nowait()
    barrier.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        barrier.add(ReplyPromise("replies", "d"))
    barrier.fulfill("a", 10)
    barrier.fail("c", AgentError("agent 'x' failed: KeyError: 'k'"))
    assert barrier.done() and (barrier.total, barrier.fulfilled, barrier.pending) == (3, 3, set())
    assert await first == 10 and await second == 20
    results = barrier.iterate()
    assert await results.__anext__() == ("a", 10)
    with pytest.raises(AgentError, match="KeyError"):
        await results.__anext__()


def test_reply_records_carry_the_correlation_id_and_the_error_in_headers() -> None:
    from dataflow.runtime.replies import reply_to_record, request_headers

    record = reply_to_record(request_headers("r", "c9"), error="agent 'a' failed: ValueError: bad", key=b"k")
    assert (record.topic, record.key, record.value, record.partition) == ("r", b"k", b"agent 'a' failed: ValueError: bad", 0)
    assert record.headers == ((CORRELATION_ID, b"c9"), (REPLY_ERROR, b"agent 'a' failed: ValueError: bad"))
    assert isinstance(read_reply(record.headers, None)[1], AgentError)
    assert read_reply((), b"1") is None
    assert issubclass(AskTimeout, TimeoutError)


async def test_asks_fail_at_once_when_reading_replies_breaks() -> None:
    app = App("broken", broker="memory://")

    @app.agent()
    async def never(stream):
        async for value in stream:
            if value is None:
                yield value

    await app.start()
    try:
        replies = await app.replies()
        promise = await never.ask_nowait(1)

        async def broken_getmany(**_: object) -> dict:
            raise RuntimeError("connection lost")

        replies._consumer.getmany = broken_getmany  # type: ignore[union-attr,method-assign]
        await app._produce([ProducerRecord(app.reply_to, None, b"1")])  # wakes the pending read
        with pytest.raises(ReplyError, match="^reading replies failed: RuntimeError: connection lost$"):
            await promise
    finally:
        await app.stop()


# -- what compiled flows use: per-value errors, empty answers, bulk casts ---------------------

async def test_kvjoin_can_return_errors_in_place_and_none_for_values_that_yield_nothing(broker: str) -> None:
    app, agents = build_rpc_app(broker, name="gather")
    invert, evens = agents["invert"], agents["evens"]
    await app.start()
    try:
        # A generous timeout: a value answered only by the timeout would show up as an AskTimeout.
        results = await invert.kvjoin([("a", 1), ("b", 0), ("c", 4)], return_exceptions=True, timeout=30)
        assert results[0] == 1.0 and results[2] == 0.25
        assert isinstance(results[1], AgentError)
        assert str(results[1]) == "agent 'invert' failed: ZeroDivisionError: division by zero"
        assert await evens.join(range(6), allow_empty=True, timeout=30) == [0, None, 2, None, 4, None]
        with pytest.raises(AgentError, match="division by zero"):  # without return_exceptions: raises
            await invert.join([2, 0])
    finally:
        await app.stop()


async def test_allow_empty_waits_for_requests_sent_on_through_a_repartition_or_a_channel() -> None:
    app = App("empty-routes", broker="memory://", topic_partitions=2)
    numbers = app.channel("numbers")

    @app.agent(numbers)
    async def big(stream):
        async for value in stream:
            if value > 1:
                yield value

    @app.agent(app.topic("words", partitions=2))
    async def long_words(stream):
        async for word in stream.group_by(lambda w: w[0], name="letter"):
            if len(word) > 3:
                yield word.upper()

    @app.agent()
    async def relay(stream):
        async for value in stream.through(app.topic("relayed", partitions=2)):
            if value:
                yield value

    await app.start()
    try:
        # The first reader sends each request on; only the last one may answer null.
        assert await long_words.join(["fig", "apple", "kiwi", "ox"], allow_empty=True, timeout=30) == \
            [None, "APPLE", "KIWI", None]
        assert await big.join([0, 1, 2, 3], allow_empty=True, timeout=30) == [None, None, 2, 3]
        assert await relay.join([5, 0], allow_empty=True, timeout=30) == [5, None]
    finally:
        await app.stop()


async def test_cast_many_sends_every_pair_and_encodes_all_before_sending() -> None:
    app = App("casts", broker="memory://", topic_partitions=2)
    got = []

    @app.agent()
    async def collect(stream):
        async for key, value in stream.items():
            got.append((key, value))

    await app.start()
    try:
        await collect.cast_many([("a", 1), ("b", 2), (None, 3)])
        await app.run_until_idle(stop=False)
        assert sorted(got, key=str) == [("a", 1), ("b", 2), (None, 3)]
        with pytest.raises(Exception):  # a set is not JSON: nothing of the batch goes out
            await collect.cast_many([("c", 4), ("d", {5})])
        await app.run_until_idle(stop=False)
        assert len(got) == 3
    finally:
        await app.stop()
