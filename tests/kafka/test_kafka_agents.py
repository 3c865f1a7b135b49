"""A pipeline that calls Python agents, on the Kafka test broker: the worker runs the agents'
app on the same kafka:// transport, asks a batch at a time and casts to the sink agent."""
from __future__ import annotations

import orjson
import pytest

from dataflow import Flow, Record, col
from tests.e2e.test_agent_stages import ORDERS, pricing_app
from tests.kafka_broker import unique_name

from .conftest import record, run_url

pytestmark = pytest.mark.kafka


class Order(Record):
    order_id: str
    item: str
    quantity: int


async def test_call_agent_and_to_agent_on_kafka(kafka_url: str) -> None:
    app, agents = pricing_app(unique_name("pricing"))
    orders, quotes = unique_name("orders"), unique_name("quotes")
    flow = Flow(unique_name("quotes"), partitions=2)
    priced = flow.source(orders, key=str, value=Order).call_agent(agents["quote"], name="priced")
    priced.to(quotes)
    priced.filter(col("total") > 10).to_agent(agents["audit"])
    run = await run_url(kafka_url, flow, {orders: [record(value, key) for key, value in ORDERS]})

    got = sorted((orjson.loads(m.key), orjson.loads(m.value)) for m in run.topics[quotes])
    assert got == [("o-1", {"order_id": "o-1", "total": 15.0}), ("o-5", {"order_id": "o-5", "total": 15.0}),
                   ("o-6", {"order_id": "o-6", "total": 1.0})]
    assert sorted(agents["audited"]) == [("o-1", {"order_id": "o-1", "total": 15.0}),
                                         ("o-5", {"order_id": "o-5", "total": 15.0})]
    [dead] = run.topics[f"{flow.name}-dead-letters"]
    assert dict(dead.headers)["dataflow.error"] == b"AgentError: agent 'quote' failed: ValueError: bad quantity 0"
    assert not app.started
