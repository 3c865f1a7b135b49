"""agent.test_context() and the agent_context pytest fixture: an agent alone, in-process."""
from __future__ import annotations

import pytest

from dataflow.ir.records import Record
from dataflow.runtime.app import App
from dataflow.runtime.testing import AgentTestContext
from dataflow.transport.local import LocalTransport


class Order(Record):
    account: str
    amount: int


def build(tmp_path) -> tuple[App, dict]:  # type: ignore[no-untyped-def]
    app = App("shop", broker=f"local://{tmp_path / 'never-opened'}", topic_partitions=2)
    orders = app.topic("orders", value_type=Order, partitions=2)
    large = app.topic("large")
    other_ran: list[object] = []

    @app.agent(orders, concurrency=2, sink=[large])
    async def check(stream):
        async for order in stream:
            if order.amount < 0:
                raise ValueError(f"negative amount in {order.account}")
            if order.amount > 100:
                yield {"account": order.account, "amount": order.amount}

    @app.agent(app.topic("large"))
    async def other(stream):
        async for value in stream:
            other_ran.append(value)

    @app.agent(app.topic("words", partitions=2))
    async def by_letter(stream):
        async for key, word in stream.group_by(lambda w: w[0], name="letter").items():
            yield f"{key}:{word}"

    @app.timer(0.001)
    async def never() -> None:
        other_ran.append("timer")

    return app, {"check": check, "other": other, "by_letter": by_letter, "other_ran": other_ran}


async def test_put_results_sent_and_errors(tmp_path) -> None:
    app, parts = build(tmp_path)
    check = parts["check"]
    original = app.transport
    async with check.test_context() as agent:
        assert isinstance(agent, AgentTestContext)
        assert app.transport is not original and app.transport.url == "memory://"
        small = await agent.put(Order("a", 5), key="a")
        big = await agent.put({"account": "b", "amount": 500}, key="b")
        assert small.value == Order("a", 5) and big.value == Order("b", 500)  # decoded as in production
        assert (agent.results_of(small), agent.results_of(big)) == ([], [{"account": "b", "amount": 500}])
        with pytest.raises(ValueError, match="negative amount in c"):
            await agent.put(Order("c", -1), key="c")
        assert await check.ask(Order("d", 200)) == {"account": "d", "amount": 200}   # restarted after the crash
        assert agent.results == [{"account": "b", "amount": 500}, {"account": "d", "amount": 200}]
        assert await agent.sent("large") == [("b", {"account": "b", "amount": 500}), (None, {"account": "d", "amount": 200})]
        assert [str(e) for e in agent.errors] == ["negative amount in c"]
        assert await agent.sent("no-such-topic") == []
    assert parts["other_ran"] == []                    # no other agent, no timer
    assert app.transport is original and isinstance(original, LocalTransport) and not app.started
    assert not (tmp_path / "never-opened").exists()


async def test_contexts_can_follow_each_other_and_cover_derived_streams(tmp_path) -> None:
    app, parts = build(tmp_path)
    async with parts["by_letter"].test_context() as agent:
        await agent.put("apple")
        await agent.put("avocado")
        await agent.put("banana")
        assert sorted(agent.results) == ["a:apple", "a:avocado", "b:banana"]
    async with parts["check"].test_context() as agent:   # a fresh log each time
        assert await agent.sent("large") == []


async def test_a_channel_agent_and_a_running_app(tmp_path) -> None:
    app = App("chan", broker="memory://")
    numbers = app.channel("numbers")

    @app.agent(numbers, concurrency=2)
    async def inc(stream):
        async for value in stream:
            yield value + 1

    async with inc.test_context() as agent:
        events = [await agent.put(n) for n in range(4)]
        assert [agent.results_of(e) for e in events] == [[1], [2], [3], [4]]
        assert events[0].message is None       # channels have no log
        with pytest.raises(RuntimeError, match="app 'chan' is running; hint: stop it"):
            async with inc.test_context():
                pass


async def test_the_agent_context_fixture(agent_context, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app, parts = build(tmp_path)
    agent = await agent_context(parts["check"])
    event = await agent.put(Order("z", 101))
    assert agent.results_of(event) == [{"account": "z", "amount": 101}]
    assert app.started                                  # closed by the fixture at teardown
