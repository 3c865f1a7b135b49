"""Pipelines that call Python agents (`call_agent` / `call agent`, `to_agent` / `to agent`), end to
end on memory:// and on the local log, with exact outputs, dead letters and what the agents saw."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow import Flow, Record, agg, col, tumbling
from dataflow.lang import parse_flow
from dataflow.planner import plan
from dataflow.runtime.app import App
from dataflow.runtime.flow_ask import ask_flow
from dataflow.transport.base import ProducerRecord, partition_for
from dataflow.transport.memory import MemoryTransport

from .conftest import record, run_flow, run_on


class Order(Record):
    order_id: str
    item: str
    quantity: int


PRICES = {"apple": 0.5, "pear": 0.75, "free-sample": 0.0}


def pricing_app(name: str = "pricing") -> tuple[App, dict[str, Any]]:
    """`quote` prices an order (nothing for unknown items, null for free ones, an error for a bad
    quantity); `audit` records what it is sent; `double` and `evens` chain."""
    app = App(name, topic_partitions=2)
    audited: list[tuple[Any, Any]] = []

    @app.agent()
    async def quote(stream):
        async for order in stream:
            if order["quantity"] <= 0:
                raise ValueError(f"bad quantity {order['quantity']}")
            if order["item"] in PRICES:
                price = PRICES[order["item"]] * order["quantity"]
                yield {"order_id": order["order_id"], "total": price} if price else None

    @app.agent()
    async def audit(stream):
        async for key, value in stream.items():
            audited.append((key, value))

    @app.agent()
    async def double(stream):
        async for n in stream:
            yield n * 2

    @app.agent()
    async def evens(stream):
        async for n in stream:
            if n % 4 == 0:
                yield {"n": n}

    return app, {"quote": quote, "audit": audit, "double": double, "evens": evens, "audited": audited}


ORDERS = [
    ("o-1", {"order_id": "o-1", "item": "apple", "quantity": 30}),
    ("o-2", {"order_id": "o-2", "item": "kiwi", "quantity": 3}),         # the agent yields nothing: dropped
    ("o-3", {"order_id": "o-3", "item": "pear", "quantity": 0}),         # the agent fails: dead letter
    ("o-4", {"order_id": "o-4", "item": "free-sample", "quantity": 1}),  # the agent replies null: dropped
    ("o-5", {"order_id": "o-5", "item": "pear", "quantity": 20}),
    ("o-6", {"order_id": "o-6", "item": "apple", "quantity": 2}),
]


def order_records() -> list[ProducerRecord]:
    return [record(value, key) for key, value in ORDERS]


def part(key: str) -> int:
    return partition_for(orjson.dumps(key), 2)


def by_partition(pairs: list[tuple[str, Any]]) -> dict[int, list[tuple[str, Any]]]:
    out: dict[int, list[tuple[str, Any]]] = {}
    for key, value in pairs:
        out.setdefault(part(key), []).append((key, value))
    return out


QUOTES = by_partition([("o-1", {"order_id": "o-1", "total": 15.0}), ("o-5", {"order_id": "o-5", "total": 15.0}),
                       ("o-6", {"order_id": "o-6", "total": 1.0})])


async def test_a_call_agent_stage_replaces_values_drops_empty_replies_and_dead_letters_errors(kind, tmp_path):
    app, agents = pricing_app()
    own_transport = app.transport
    flow = Flow("quotes", partitions=2)
    priced = flow.source("orders", key=str, value=Order).call_agent(agents["quote"], name="priced")
    priced.to("quotes")
    priced.filter(col("total") > 10).to_agent(agents["audit"])
    run = await run_flow(kind, tmp_path, flow, {"orders": order_records()})

    assert run.by_partition("quotes") == QUOTES
    assert sorted(agents["audited"]) == [("o-1", {"order_id": "o-1", "total": 15.0}),
                                         ("o-5", {"order_id": "o-5", "total": 15.0})]
    [dead] = run.topics["quotes-dead-letters"]
    headers = dict(dead.headers)
    assert (dead.key, orjson.loads(dead.value)) == (b'"o-3"', ORDERS[2][1])  # the input, byte for byte
    assert headers["dataflow.stage"] == b"priced"
    assert headers["dataflow.error"] == b"AgentError: agent 'quote' failed: ValueError: bad quantity 0"
    offset = [k for k, _ in ORDERS if part(k) == part("o-3")].index("o-3")  # its place in its partition
    assert headers["dataflow.source"] == f"orders[{part('o-3')}]@{offset}".encode()
    assert run.monitor.as_dict()["dead_letters_by_stage"] == {"priced": 1}
    # the app ran on the pipeline's transport, and was stopped and given its own broker back
    assert run.topics["pricing-quote"] and not app.started
    assert app.transport is own_transport


async def test_the_flow_form_finds_its_agents_by_import_path(kind, tmp_path, agents_module):
    text = f"""\
pipeline quotes {{ partitions 2 }}
record Order {{ order_id: str, item: str, quantity: int }}
topic orders: Order key str
topic quotes
stream priced = orders | call agent "{agents_module}:quote"
priced | to topic quotes
priced | filter total > 10 | to agent "{agents_module}:audit"
"""
    run = await run_flow(kind, tmp_path, parse_flow(text, "quotes.flow"), {"orders": order_records()})
    assert run.by_partition("quotes") == QUOTES
    audited = sys.modules[agents_module].agents["audited"]
    assert sorted(audited) == [("o-1", {"order_id": "o-1", "total": 15.0}), ("o-5", {"order_id": "o-5", "total": 15.0})]
    assert [dict(m.headers)["dataflow.stage"] for m in run.topics["quotes-dead-letters"]] == [b"priced"]


async def test_asks_go_out_a_batch_at_a_time_in_order(tmp_path):
    app, agents = pricing_app()
    double = agents["double"]
    calls: list[list[Any]] = []
    kvjoin = double.kvjoin

    async def counted(items, **options):  # type: ignore[no-untyped-def]
        calls.append([value for _, value in items])
        return await kvjoin(items, **options)

    double.kvjoin = counted
    flow = Flow("batches", partitions=1)
    flow.source("n", value=int).call_agent(double).to("out")
    run = await run_flow("memory", tmp_path, flow, {"n": [record(i) for i in range(10)]}, batch_size=4)
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert run.values("out") == [i * 2 for i in range(10)]


async def test_agent_stages_chain_and_what_they_give_closes_windows_in_the_same_batch(kind, tmp_path):
    app, agents = pricing_app()
    flow = Flow("chain", partitions=1)
    chained = flow.source("n", key=str, value=int).call_agent(agents["double"]).call_agent(agents["evens"], name="fours")
    chained.to("fours")
    chained.window(tumbling("10s")).aggregate(n=agg.count(), emit="final", name="per_10s").changes().to("counts")
    at = [(1_000, 1), (2_000, 2), (3_000, 4), (12_000, 6)]
    inputs = [ProducerRecord("", b'"k"', str(n).encode(), None, ts) for ts, n in at]
    run = await run_flow(kind, tmp_path, flow, {"n": inputs}, bounded=False)  # no close at the end
    assert run.values("fours") == [{"n": 4}, {"n": 8}, {"n": 12}]
    # the reply at 12s closes [0s, 10s): emitted with that batch, not left for one that never comes
    assert run.pairs("counts") == [("k", {"n": 2, "window_start": 0, "window_end": 10_000})]


async def test_an_agent_app_already_running_is_used_as_it_is(tmp_path):
    app, agents = pricing_app("running-pricing")
    transport = MemoryTransport()
    await transport.start()
    app.set_broker(transport)
    await app.start()
    try:
        flow = Flow("reuse", partitions=1)
        flow.source("n", value=int).call_agent(agents["double"]).to("out")
        run = await run_on(transport, flow, {"n": [record(1), record(2)]})
        assert run.values("out") == [2, 4]
        assert app.started  # not the worker's to stop
    finally:
        await app.stop()
        await transport.stop()


async def test_asking_a_pipeline_through_an_agent_stage_returns_the_agents_reply():
    app, agents = pricing_app("asked-pricing")
    flow = Flow("asked", partitions=1)
    flow.source("orders", value=Order).call_agent(agents["quote"], name="priced").to("quotes")
    p = plan(flow.topology())
    assert await ask_flow(p, "orders", ORDERS[0][1], transport=MemoryTransport()) == {"order_id": "o-1", "total": 15.0}
    assert await ask_flow(p, "orders", ORDERS[1][1], transport=MemoryTransport()) is None  # nothing came out


# ------------------------------------------------------------------------------------- helpers

AGENTS_SOURCE = '''
from tests.e2e.test_agent_stages import pricing_app

app, agents = pricing_app()
quote, audit = agents["quote"], agents["audit"]
'''


@pytest.fixture
def agents_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of agents in a directory of its own, importable by name for this test only."""
    name = f"agents_{tmp_path.name.replace('-', '_')}"
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / f"{name}.py").write_text(AGENTS_SOURCE)
    monkeypatch.syspath_prepend(str(directory))
    yield name
    sys.modules.pop(name, None)
