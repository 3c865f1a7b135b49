"""Quotes: price each order line with a Python agent, and audit the big quotes.

    dataflow plan examples/quotes.py
    dataflow run examples/quotes.py --keyed --input orders=examples/data/keyed-orders.jsonl --output quotes=- --until-idle

The agents are in examples/storefront/pricing.py; `call_agent` and `to_agent` also take the agent
itself: `from storefront.pricing import quote`, then `orders.call_agent(quote, ...)`.
"""
from dataflow import Flow, Record, col


class Order(Record):
    order_id: str
    item: str
    quantity: int


class Quote(Record):
    order_id: str
    item: str
    total: float


flow = Flow("quotes", partitions=2)

orders = flow.source("orders", key=str, value=Order)
priced = orders.call_agent("storefront.pricing:quote", output=Quote, name="priced")
priced.to("quotes")
priced.filter(col("total") >= 10).to_agent("storefront.pricing:audit")
