"""memory:// specifics: URL selection, named shared brokers, multi-member groups."""
from __future__ import annotations

import doctest
import logging
from pathlib import Path

import pytest

import dataflow.transport.base as base_module
import dataflow.transport.memory as memory_module
from dataflow.transport.base import (
    TP,
    ProducerRecord,
    TopicSpec,
    TransportError,
    open_transport,
)
from dataflow.transport.memory import MemoryTransport


def test_open_transport_picks_by_scheme(tmp_path: Path) -> None:
    memory = open_transport("memory://", str(tmp_path))
    assert isinstance(memory, MemoryTransport) and memory.url == "memory://"
    assert open_transport("memory://", str(tmp_path)).broker is not memory.broker
    named = open_transport("memory://shared", str(tmp_path))
    assert isinstance(named, MemoryTransport) and named.url == "memory://shared"
    assert open_transport("MEMORY://", str(tmp_path)).url == "memory://"


def test_open_transport_errors(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"kafka broker 'localhost' in 'kafka://localhost' is not HOST:PORT"):
        open_transport("kafka://localhost", str(tmp_path))
    with pytest.raises(TransportError, match="unknown transport scheme 'redis' in 'redis://x'"):
        open_transport("redis://x", str(tmp_path))
    with pytest.raises(TransportError, match="invalid transport url 'memory'"):
        open_transport("memory", str(tmp_path))


async def test_named_brokers_are_shared_within_the_process() -> None:
    first, second = MemoryTransport("orders-test"), MemoryTransport("orders-test")
    assert first.broker is second.broker
    await first.create_topics([TopicSpec("orders", 2)])
    assert await second.describe_topics(["orders"]) == {"orders": 2}
    await first.producer().send(ProducerRecord("orders", None, b"x", partition=1))
    async with first.consumer("g", ["orders"]) as a, second.consumer("g", ["orders"]) as b:
        # Two transports, one group: the partitions are split between them.
        assert (a.assignment(), b.assignment()) == ({TP("orders", 0)}, {TP("orders", 1)})
        assert [m.value for m in (await b.getmany(timeout=0))[TP("orders", 1)]] == [b"x"]
    assert await MemoryTransport("other-name").list_topics() == []


async def test_named_broker_goes_away_with_its_last_transport() -> None:
    transport = MemoryTransport("short-lived")
    await transport.create_topics([TopicSpec("t", 1)])
    del transport
    assert await MemoryTransport("short-lived").list_topics() == []


async def test_range_assignment_over_three_members_and_two_subscriptions() -> None:
    transport = MemoryTransport()
    await transport.create_topics([TopicSpec("a", 4), TopicSpec("b", 2)])
    m1 = transport.consumer("g", ["a", "b"])
    m2 = transport.consumer("g", ["a"])
    m3 = transport.consumer("g", ["a", "b"])
    for member in (m1, m2, m3):
        await member.start()

    def parts(member) -> list[str]:
        return [f"{tp.topic}{tp.partition}" for tp in sorted(member.assignment())]

    assert [parts(m) for m in (m1, m2, m3)] == [["a0", "a1", "b0"], ["a2"], ["a3", "b1"]]
    await m2.stop()
    assert [parts(m) for m in (m1, m3)] == [["a0", "a1", "b0"], ["a2", "a3", "b1"]]
    await transport.stop()
    assert [parts(m) for m in (m1, m3)] == [[], []]


async def test_failing_callbacks_are_logged_and_do_not_block_the_group(caplog: pytest.LogCaptureFixture) -> None:
    transport = MemoryTransport()
    await transport.create_topics([TopicSpec("t", 2)])

    async def boom(tps: set[TP]) -> None:
        raise RuntimeError("recovery failed")

    a = transport.consumer("g", ["t"], on_revoked=boom)
    b = transport.consumer("g", ["t"], on_assigned=boom)
    with caplog.at_level(logging.ERROR, logger="dataflow.transport.memory"):
        await a.start()
        await b.start()
    assert (a.assignment(), b.assignment()) == ({TP("t", 0)}, {TP("t", 1)})
    assert [r.getMessage() for r in caplog.records] == [
        "on_revoked callback of group 'g' failed for [TP(topic='t', partition=1)]",
        "on_assigned callback of group 'g' failed for [TP(topic='t', partition=1)]",
    ]
    await transport.stop()


async def test_consumer_lifecycle_errors() -> None:
    transport = MemoryTransport()
    await transport.create_topics([TopicSpec("t", 1)])
    consumer = transport.consumer("g", ["t"])
    with pytest.raises(TransportError, match="consumer of group 'g' is not started"):
        await consumer.getmany(timeout=0)
    await consumer.start()
    with pytest.raises(TransportError, match="consumer of group 'g' was already started"):
        await consumer.start()
    await consumer.stop()
    await consumer.stop()  # idempotent
    assert await consumer.getmany(timeout=0) == {}
    with pytest.raises(ValueError, match="consumer of group 'g' subscribes to no topic"):
        transport.consumer("g", [])


def test_value_types() -> None:
    assert sorted([TP("b", 0), TP("a", 2), TP("a", 10)]) == [TP("a", 2), TP("a", 10), TP("b", 0)]
    assert {TP("a", 1): 1}[TP("a", 1)] == 1
    with pytest.raises(AttributeError):
        TP("a", 1).partition = 2  # type: ignore[misc]


@pytest.mark.parametrize("module", [base_module, memory_module], ids=["base", "memory"])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]
