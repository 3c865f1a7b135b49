"""Orders enriched with the customer who placed them (a stream-table join).

The customers topic is read as a table (latest value per customer id); each
order is re-keyed by its customer id, repartitioned to meet the table, and
joined with the customer's current record.

    dataflow plan examples/orders.py
"""
from dataflow import Flow, Record, col


class Order(Record):
    order_id: str
    customer_id: str
    amount: float


class Customer(Record):
    name: str
    tier: str


flow = Flow("orders")

customers = flow.table("customers", key=str, value=Customer)
orders = flow.source("orders", key=str, value=Order)
enriched = orders.join(customers, on="customer_id", how="left", name="enriched")
enriched.map(
    {"order_id": col("order_id"), "customer": col("name"), "tier": col("tier"), "amount": col("amount")},
    name="enriched_orders",
).to("enriched-orders")
