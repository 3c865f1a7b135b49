"""Stateful pipelines end to end, on memory:// and on the local log, with exact tables and outputs."""
from __future__ import annotations

from typing import Any

from dataflow import Flow, Record, agg, col, hopping, sliding, tumbling, value
from dataflow.loader import load_pipeline
from dataflow.transport.base import ProducerRecord

from .conftest import make_transport, record, run_flow, run_on

MIN = 60_000


def at(ts: int, value: Any, key: Any = None) -> ProducerRecord:
    r = record(value, key)
    return ProducerRecord("", r.key, r.value, None, ts)


def example(name: str, **overrides: Any) -> Flow:
    return load_pipeline(f"examples/{name}", overrides)


async def test_wordcount_example_counts_every_word(kind, tmp_path, repo_root):
    lines = ["the cat sat", "The dog", "a cat and THE end"]
    run = await run_flow(kind, tmp_path, example("wordcount.flow"), {"lines": [record(x) for x in lines]})
    assert run.tables["counts"] == sorted(
        [("the", {"count": 3}), ("cat", {"count": 2}), ("sat", {"count": 1}), ("dog", {"count": 1}),
         ("a", {"count": 1}), ("and", {"count": 1}), ("end", {"count": 1})],
        key=lambda row: f'"{row[0]}"')
    counts_of_the = [v["count"] for k, v in run.pairs("word-counts") if k == "the"]
    assert counts_of_the == [1, 2, 3]  # every update, in order
    # one changelog record per changed key per commit (one commit here), not one per update
    assert run.monitor.changelog_records == 7


async def test_fraud_example_sums_per_account_per_minute(kind, tmp_path, repo_root):
    base = 1_700_000_040_000 - 1_700_000_040_000 % MIN
    rows = [("acc-1", 1500.0, 0), ("acc-2", 40.0, 5), ("acc-1", 2500.0, 12), ("acc-1", 3000.0, 31),
            ("acc-3", 1200.0, 40), ("acc-1", 1001.0, 70), ("acc-2", 5000.0, 71)]
    inputs = [record({"account_id": a, "amount": amt, "country": "NO", "ts": base + s * 1000}, a)
              for a, amt, s in rows]
    run = await run_flow(kind, tmp_path, example("fraud.flow"), {"withdrawals": inputs})
    window = {"window_start": base, "window_end": base + MIN}
    nxt = {"window_start": base + MIN, "window_end": base + 2 * MIN}
    assert sorted(run.tables["per_account"], key=lambda r: (r[0], r[1]["window_start"])) == [
        (("acc-1", base), {"total": 7000.0, "n": 3, **window}),
        (("acc-1", base + MIN), {"total": 1001.0, "n": 1, **nxt}),
        (("acc-2", base + MIN), {"total": 5000.0, "n": 1, **nxt}),
        (("acc-3", base), {"total": 1200.0, "n": 1, **window}),
    ]
    assert run.pairs("alerts") == [("acc-1", {"total": 7000.0, "n": 3, **window})]


async def test_hopping_counts_land_in_every_overlapping_window(kind, tmp_path):
    flow = Flow("hop", partitions=2)
    (flow.source("clicks", value=str)  # keyless: no key type declared
     .group_by(value(), name="by_page")
     .window(hopping("10s", "5s"))
     .count(name="per_page"))
    inputs = {"clicks": [at(ts, page) for page, ts in [("home", 1_000), ("home", 6_000), ("cart", 7_000),
                                                       ("home", 12_000)]]}
    run = await run_flow(kind, tmp_path, flow, inputs)
    table = {k: v["count"] for k, v in run.tables["per_page"]}
    assert table == {("home", -5_000): 1, ("home", 0): 2, ("home", 5_000): 2, ("home", 10_000): 1,
                     ("cart", 0): 1, ("cart", 5_000): 1}


async def test_tumbling_emit_final_sends_each_window_once_when_it_closes(kind, tmp_path):
    flow = Flow("fin", partitions=1)
    (flow.source("temps")
     .group_by(col("sensor"), name="by_sensor")
     .window(tumbling("10s", grace="2s", on="ts"))
     .aggregate(lo=agg.min("c"), hi=agg.max("c"), avg=agg.avg("c"), name="stats", emit="final")
     .to("closed"))
    readings = [("a", 1, 0), ("a", 5, 3_000), ("b", 7, 4_000), ("a", 3, 11_000),  # stream time 11s: 0-10s open
                ("a", 9, 9_500),  # late but within grace: counted in 0-10s
                ("b", 2, 12_500),  # stream time 12.5s: 0-10s closes
                ("a", 100, 8_000),  # beyond grace: dropped
                ("a", 4, 25_000)]  # closes 10-20s
    inputs = {"temps": [record({"sensor": s, "c": c, "ts": ts}) for s, c, ts in readings]}
    run = await run_flow(kind, tmp_path, flow, inputs, batch_size=1)
    assert run.pairs("closed") == [
        ("a", {"lo": 1, "hi": 9, "avg": 5.0, "window_start": 0, "window_end": 10_000}),
        ("b", {"lo": 7, "hi": 7, "avg": 7.0, "window_start": 0, "window_end": 10_000}),
        ("a", {"lo": 3, "hi": 3, "avg": 3.0, "window_start": 10_000, "window_end": 20_000}),
        ("b", {"lo": 2, "hi": 2, "avg": 2.0, "window_start": 10_000, "window_end": 20_000}),
        # the end of the (bounded) input closes the last window
        ("a", {"lo": 4, "hi": 4, "avg": 4.0, "window_start": 20_000, "window_end": 30_000}),
    ]
    assert run.monitor.as_dict()["late_events_by_step"] == {"stats": 1}


async def test_sliding_window_holds_the_size_before_each_event(kind, tmp_path):
    flow = Flow("slide", partitions=1)
    (flow.source("pay")
     .group_by(col("user"), name="by_user")
     .window(sliding("10s", grace="10s", on="ts"))
     .aggregate(total=agg.sum("amount"), name="recent"))
    pays = [("u", 1, 0), ("u", 2, 4_000), ("u", 4, 10_000), ("u", 8, 10_001), ("u", 16, 3_000)]
    run = await run_flow(kind, tmp_path, flow, {"pay": [record({"user": u, "amount": a, "ts": t}) for u, a, t in pays]})
    totals = {k[1] + 10_000: v["total"] for k, v in run.tables["recent"]}  # by window end (the event's time)
    # [-10s, 0]: 1; [-6s, 4s]: 1+2+16; [0, 10s]: 1+2+4+16; [1ms, 10.001s]: 2+4+8+16; [-7s, 3s]: 1+16
    assert totals == {0: 1, 4_000: 19, 10_000: 23, 10_001: 30, 3_000: 17}


async def test_every_aggregation_function(kind, tmp_path):
    flow = Flow("aggs", partitions=2)
    (flow.source("vals")
     .group_by(col("k"), name="by_k")
     .aggregate(n=agg.count(), total=agg.sum("x"), lo=agg.min("x"), hi=agg.max("x"), mean=agg.avg("x"),
                all=agg.collect("x"), distinct=agg.set("x"), last=agg.latest("x"),
                product=agg.reduce(lambda acc, y: acc * y, "y", initial=1),
                longest=agg.reduce(lambda acc, w: w if len(w) > len(acc) else acc, "word"),
                name="stats"))
    vals = [{"k": "a", "x": 3, "y": 2, "word": "hi"}, {"k": "a", "x": None, "y": 5, "word": "hello"},
            {"k": "b", "x": 5, "y": 7, "word": "x"}, {"k": "a", "x": 1, "y": 1, "word": "hey"},
            {"k": "a", "x": 3, "y": 3, "word": "yo"}]
    run = await run_flow(kind, tmp_path, flow, {"vals": [record(v) for v in vals]})
    # nulls are skipped by sum, min, max, avg and set; collect keeps them
    assert dict(run.tables["stats"]) == {
        "a": {"n": 4, "total": 7, "lo": 1, "hi": 3, "mean": 7 / 3, "all": [3, None, 1, 3], "distinct": [1, 3],
              "last": 3, "product": 30, "longest": "hello"},
        "b": {"n": 1, "total": 5, "lo": 5, "hi": 5, "mean": 5.0, "all": [5], "distinct": [5], "last": 5,
              "product": 7, "longest": "x"},
    }


async def test_orders_example_enriches_from_the_customer_table(kind, tmp_path, repo_root):
    customers = [record({"name": "Ada", "tier": "gold"}, "c1"), record({"name": "Brian", "tier": "silver"}, "c2")]
    orders = [record({"order_id": "o1", "customer_id": "c1", "amount": 30.0}, "o1"),
              record({"order_id": "o2", "customer_id": "c2", "amount": 12.5}, "o2"),
              record({"order_id": "o3", "customer_id": "c9", "amount": 99.0}, "o3")]
    run = await run_flow(kind, tmp_path, example("orders.flow"), {"customers": customers, "orders": orders})
    assert sorted(run.pairs("enriched-orders")) == [
        ("c1", {"order_id": "o1", "customer": "Ada", "tier": "gold", "amount": 30.0}),
        ("c2", {"order_id": "o2", "customer": "Brian", "tier": "silver", "amount": 12.5}),
        ("c9", {"order_id": "o3", "customer": None, "tier": None, "amount": 99.0}),
    ]
    assert run.tables["customers"] == [("c1", {"name": "Ada", "tier": "gold"}),
                                       ("c2", {"name": "Brian", "tier": "silver"})]


async def test_a_null_value_deletes_a_key_of_a_table_read_from_a_topic(kind, tmp_path):
    flow = Flow("tomb", partitions=1)
    users = flow.table("users", key=str)
    flow.source("visits", key=str).join(users, how="inner", name="known").to("seen")
    inputs = {"users": [record({"name": "Ada"}, "u1"), record({"name": "Bo"}, "u2"), ProducerRecord("", b'"u2"', None)]}
    transport = make_transport(kind, tmp_path / "data")
    await transport.start()
    try:
        first = await run_on(transport, flow, inputs)
        assert first.tables["users"] == [("u1", {"name": "Ada"})]
        second = await run_on(transport, flow, {"visits": [record({"page": "/"}, "u1"), record({"page": "/x"}, "u2")]})
    finally:
        await transport.stop()
    assert second.pairs("seen") == [("u1", {"left": {"page": "/"}, "right": {"name": "Ada"}})]


async def test_clicks_example_joins_within_ten_minutes(kind, tmp_path, repo_root):
    imps = [("i1", "a1", 1_000), ("i2", "a1", 2_000), ("i3", "a2", 3_000), ("i4", "a2", 2_000_000)]
    clicks = [("i1", 5_000), ("i3", 900_000), ("i4", 2_000_100)]
    inputs = {"impressions": [record({"impression_id": i, "ad_id": a, "ts": ts}, i) for i, a, ts in imps],
              "clicks": [record({"impression_id": i, "ts": ts}, i) for i, ts in clicks]}
    run = await run_flow(kind, tmp_path, example("clicks.flow", partitions=1), inputs)
    # i1 and i4 are clicked in time; i2 and i3 close unclicked once both sides pass ts + 10m
    assert sorted(run.values("attributed-impressions"), key=lambda v: v["impression_id"]) == [
        {"impression_id": "i1", "ad_id": "a1", "clicked": True},
        {"impression_id": "i2", "ad_id": "a1", "clicked": False},
        {"impression_id": "i3", "ad_id": "a2", "clicked": False},
        {"impression_id": "i4", "ad_id": "a2", "clicked": True},
    ]
    assert run.tables["per_ad"] == [("a1", {"impressions": 2, "clicks": 1}), ("a2", {"impressions": 2, "clicks": 1})]


async def test_table_table_join_re_emits_on_either_side(kind, tmp_path):
    flow = Flow("tt", partitions=1)
    names = flow.table("names", key=str)
    emails = flow.table("emails", key=str)
    names.join(emails, how="left", name="people").to("people-out")
    inputs = {"names": [at(2_000, {"name": "Ada"}, "u1")], "emails": [at(1_000, {"email": "a@x"}, "u1"),
                                                                       at(1_000, {"email": "b@x"}, "u2")]}
    run = await run_flow(kind, tmp_path, flow, inputs)
    # emails come first (earlier in event time): no left row yet, so nothing to emit
    assert run.pairs("people-out") == [("u1", {"left": {"name": "Ada"}, "right": {"email": "a@x"}})]
    transport = make_transport(kind, tmp_path / "again")
    await transport.start()
    try:
        await run_on(transport, flow, inputs)
        again = await run_on(transport, flow, {"emails": [at(3_000, {"email": "new@x"}, "u1")],
                                               "names": [at(4_000, None, "u1")]})
    finally:
        await transport.stop()
    assert again.pairs("people-out")[1:] == [
        ("u1", {"left": {"name": "Ada"}, "right": {"email": "new@x"}}),  # the right side changed
        ("u1", None),  # the left row was deleted: a tombstone
    ]
