"""The Python side of examples/quotes.flow: agents that price order lines and audit big quotes.

The pipeline asks `quote` for every order (`call agent "storefront.pricing:quote"`) and sends the
big quotes to `audit` (`to agent "storefront.pricing:audit"`). Whoever runs the pipeline runs this
app too, on the pipeline's broker: `dataflow run examples/quotes.flow ...` is all it takes.
"""
from dataflow.runtime.app import App

app = App("pricing", topic_partitions=2)

PRICES = {"apple": 0.5, "pear": 0.75, "plum": 1.25}


@app.agent()
async def quote(stream):
    """The price of an order line; nothing for an item the shop does not sell."""
    async for order in stream:
        if order["quantity"] <= 0:
            raise ValueError(f"bad quantity {order['quantity']} in order {order['order_id']}")
        price = PRICES.get(order["item"])
        if price is not None:
            yield {"order_id": order["order_id"], "item": order["item"], "total": price * order["quantity"]}


@app.agent()
async def audit(stream):
    """Big quotes, printed as they come."""
    async for order_id, big in stream.items():
        print(f"audit: order {order_id} costs {big['total']}", flush=True)
