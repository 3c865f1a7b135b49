"""Time-aligned inputs on Kafka: a stream-table join in one run sees the table as of each
record's time, and a bootstrap table is whole for the first stream record."""
from __future__ import annotations

import orjson

from dataflow import Flow
from tests.kafka_broker import unique_name

from .conftest import record, run_url

DAY = 86_400_000


def rows(run, topic: str) -> list:
    return sorted(((orjson.loads(m.key), orjson.loads(m.value)) for m in run.topics[topic]), key=orjson.dumps)


async def test_a_stream_table_join_takes_both_inputs_in_event_time_order_on_kafka(kafka_url: str) -> None:
    sfx = unique_name("")
    flow = Flow(f"align{sfx}", partitions=2)
    tiers = flow.table(f"tiers{sfx}", key=str)
    flow.source(f"orders{sfx}", key=str).join(tiers, how="left", name="priced").to(f"priced{sfx}")
    # tiers change over time; each order must see the tier of its own time
    tier_changes = [record({"tier": t}, k, timestamp=ts) for k, t, ts in
                    [("a", "bronze", 1_000), ("b", "gold", 1_500), ("a", "silver", 3_000), ("a", "gold", 5_000)]]
    orders = [record({"n": n}, k, timestamp=ts) for n, (k, ts) in
              enumerate([("a", 500), ("a", 2_000), ("b", 2_500), ("a", 3_000), ("a", 4_000), ("a", 6_000)])]
    run = await run_url(kafka_url, flow, {f"orders{sfx}": orders, f"tiers{sfx}": tier_changes}, batch_size=2)
    assert rows(run, f"priced{sfx}") == [
        ("a", {"left": {"n": 0}, "right": None}),
        ("a", {"left": {"n": 1}, "right": {"tier": "bronze"}}),
        ("a", {"left": {"n": 3}, "right": {"tier": "silver"}}),  # same time as the change: the table first
        ("a", {"left": {"n": 4}, "right": {"tier": "silver"}}),
        ("a", {"left": {"n": 5}, "right": {"tier": "gold"}}),
        ("b", {"left": {"n": 2}, "right": {"tier": "gold"}}),
    ]
    assert run.committed == {tp: end or None for tp, end in run.ends.items()}


async def test_a_bootstrap_table_on_kafka(kafka_url: str) -> None:
    sfx = unique_name("")
    flow = Flow(f"boot{sfx}", partitions=2)
    rates = flow.table(f"rates{sfx}", key=str, bootstrap=True)
    flow.source(f"payments{sfx}", key=str).join(rates, how="left", name="fx").to(f"fx{sfx}")
    rate_rows = [record({"rate": r}, c, timestamp=2 * DAY + i) for i, (c, r) in enumerate([("EUR", 1.1), ("EUR", 1.2)])]
    payments = [record({"amount": a}, c, timestamp=DAY + i) for i, (c, a) in enumerate([("EUR", 10), ("GBP", 3)])]
    run = await run_url(kafka_url, flow, {f"payments{sfx}": payments, f"rates{sfx}": rate_rows}, batch_size=1)
    assert rows(run, f"fx{sfx}") == [("EUR", {"left": {"amount": 10}, "right": {"rate": 1.2}}),
                                     ("GBP", {"left": {"amount": 3}, "right": None})]


async def test_a_rekeyed_stream_joins_the_table_as_of_each_record_on_kafka(kafka_url: str) -> None:
    """`on="tier_key"` re-keys the orders through a repartition topic: the join waits for
    that topic's watermark, so each order still sees the tier of its own time."""
    sfx = unique_name("")
    flow = Flow(f"rekey{sfx}", partitions=2)
    tiers = flow.table(f"tiers{sfx}", key=str)
    flow.source(f"orders{sfx}", key=str).join(tiers, how="left", on="who", name="priced").to(f"priced{sfx}")
    tier_changes = [record({"tier": t}, k, timestamp=ts) for k, t, ts in
                    [("a", "bronze", 1_000), ("b", "gold", 1_500), ("a", "silver", 3_000), ("a", "gold", 5_000)]]
    # keyed by order id: every order is re-keyed by `who` before the join
    orders = [record({"n": n, "who": who}, f"o{n}", timestamp=ts) for n, (who, ts) in
              enumerate([("a", 500), ("a", 2_000), ("b", 2_500), ("a", 3_000), ("a", 4_000), ("a", 6_000)])]
    run = await run_url(kafka_url, flow, {f"orders{sfx}": orders, f"tiers{sfx}": tier_changes}, batch_size=2)
    assert rows(run, f"priced{sfx}") == [
        ("a", {"left": {"n": 0, "who": "a"}, "right": None}),
        ("a", {"left": {"n": 1, "who": "a"}, "right": {"tier": "bronze"}}),
        ("a", {"left": {"n": 3, "who": "a"}, "right": {"tier": "silver"}}),
        ("a", {"left": {"n": 4, "who": "a"}, "right": {"tier": "silver"}}),
        ("a", {"left": {"n": 5, "who": "a"}, "right": {"tier": "gold"}}),
        ("b", {"left": {"n": 2, "who": "b"}, "right": {"tier": "gold"}}),
    ]
