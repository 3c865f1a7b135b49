"""Join conditions end to end (`on a = b and CONDITION`), on memory:// and the local log.

The condition is applied per candidate pair inside the join, so a record that no partner
satisfies is unmatched: left and outer joins emit it with the other side's fields null.
Each pipeline is written in `.flow` and with the builder, and both give one plan.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from dataflow import Flow, Record, col
from dataflow.lang import parse_flow
from dataflow.planner import plan as build_plan
from dataflow.planner.render import to_json
from dataflow.transport.base import ProducerRecord

from .conftest import make_transport, record, run_flow, run_on

MIN = 60_000


def ordered(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Rows in a fixed order: which input a run reads first is not what these tests are about."""
    return sorted(pairs, key=orjson.dumps)


def same_plan(a: Flow, b: Flow) -> bool:
    return to_json(build_plan(a.topology()), locations=False) == to_json(build_plan(b.topology()), locations=False)


# --------------------------------------------------------------------------- stream-stream
ADS_FLOW = """\
pipeline ads {{ partitions 1 }}
record Impression {{ imp_id: str, ad_id: str, ts: timestamp }}
record Click {{ imp_id: str, ad_id: str, ts: timestamp }}
topic impressions: Impression key str event_time ts
topic clicks: Click key str event_time ts
topic out
stream attributed = clicks
  | {how} join impressions within 10m on ad_id = ad_id and imp_id == impressions_imp_id
attributed | to topic out
"""


class Impression(Record):
    imp_id: str
    ad_id: str
    ts: datetime


class Click(Record):
    imp_id: str
    ad_id: str
    ts: datetime


def ads_builder(how: str) -> Flow:
    flow = Flow("ads", partitions=1)
    flow.topic("impressions", key=str, value=Impression, timestamp="ts")
    flow.topic("clicks", key=str, value=Click, timestamp="ts")
    flow.topic("out")
    impressions, clicks = flow.source("impressions"), flow.source("clicks")
    (clicks.join(impressions, how=how, within="10m", on="ad_id", right_on="ad_id",
                 condition=col("imp_id") == col("impressions_imp_id"), name="attributed")
     .to("out"))
    return flow


IMPRESSIONS = [("i1", "a1", 0), ("i2", "a1", 1_000), ("i3", "a2", 2_000),
               ("i4", "a3", 3_000_000)]  # i4 and c4 move both inputs on, so the rest closes
CLICKS = [("c1", "i1", "a1", 5_000),  # i1 and i2 are in time; only i1 is its impression
          ("c2", "i9", "a1", 6_000),  # in time for i1 and i2, but the impression of neither
          ("c3", "i3", "a2", 2_000_000),  # its impression, too late
          ("c4", "i4", "a3", 3_000_100)]


def ads_inputs() -> dict[str, list[ProducerRecord]]:
    return {"impressions": [record({"imp_id": i, "ad_id": a, "ts": t}, i) for i, a, t in IMPRESSIONS],
            "clicks": [record({"imp_id": i, "ad_id": a, "ts": t}, c) for c, i, a, t in CLICKS]}


def click(imp: str, ad: str, ts: int) -> dict[str, Any]:
    return {"imp_id": imp, "ad_id": ad, "ts": ts}


def imp(i: str, ad: str, ts: int) -> dict[str, Any]:
    return {"impressions_imp_id": i, "impressions_ad_id": ad, "impressions_ts": ts}


NO_CLICK = click(None, None, None)  # type: ignore[arg-type]
NO_IMP = imp(None, None, None)  # type: ignore[arg-type]
MATCHED = [("a1", {**click("i1", "a1", 5_000), **imp("i1", "a1", 0)}),
           ("a3", {**click("i4", "a3", 3_000_100), **imp("i4", "a3", 3_000_000)})]
UNMATCHED_CLICKS = [("a1", {**click("i9", "a1", 6_000), **NO_IMP}), ("a2", {**click("i3", "a2", 2_000_000), **NO_IMP})]
UNMATCHED_IMPS = [("a1", {**NO_CLICK, **imp("i2", "a1", 1_000)}), ("a2", {**NO_CLICK, **imp("i3", "a2", 2_000)})]


@pytest.mark.parametrize("how,expected", [
    ("inner", MATCHED),
    ("left", MATCHED + UNMATCHED_CLICKS),
    ("outer", MATCHED + UNMATCHED_CLICKS + UNMATCHED_IMPS),
])
async def test_stream_stream_join_with_a_condition(kind, tmp_path, how, expected):
    flow = parse_flow(ADS_FLOW.format(how=how))
    assert same_plan(flow, ads_builder(how))
    run = await run_flow(kind, tmp_path, flow, ads_inputs())
    assert ordered(run.pairs("out")) == ordered(expected)
    assert run.values("ads-dead-letters") == []


def test_the_state_docs_example_is_the_left_join_run_here(repo_root):
    doc = (repo_root / "docs" / "state.md").read_text().split("### Join conditions", 1)[1]
    example = doc.split("```flow\n", 1)[1].split("```", 1)[0]
    assert example == ADS_FLOW.format(how="left")


async def test_the_builder_version_gives_the_same_rows(tmp_path):
    run = await run_flow("memory", tmp_path, ads_builder("outer"), ads_inputs())
    assert ordered(run.pairs("out")) == ordered(MATCHED + UNMATCHED_CLICKS + UNMATCHED_IMPS)


async def test_without_the_condition_every_pair_in_time_matches(tmp_path):
    """The reference point: the condition is what keeps c1-i2, c2-i1 and c2-i2 out."""
    flow = parse_flow(ADS_FLOW.format(how="left").replace(" and imp_id == impressions_imp_id", ""))
    run = await run_flow("memory", tmp_path, flow, ads_inputs())
    assert ordered(run.pairs("out")) == ordered([
        *MATCHED,
        ("a1", {**click("i1", "a1", 5_000), **imp("i2", "a1", 1_000)}),
        ("a1", {**click("i9", "a1", 6_000), **imp("i1", "a1", 0)}),
        ("a1", {**click("i9", "a1", 6_000), **imp("i2", "a1", 1_000)}),
        ("a2", {**click("i3", "a2", 2_000_000), **NO_IMP}),
    ])


async def test_an_error_in_the_condition_dead_letters_the_record_being_joined(kind, tmp_path):
    """The condition runs when the second record of a pair arrives; that record is dead-lettered."""
    flow = parse_flow(ADS_FLOW.format(how="left").replace("imp_id == impressions_imp_id",
                                                         "to_int(imp_id) > 0 and imp_id == impressions_imp_id"))
    transport = make_transport(kind, tmp_path / "data")
    await transport.start()
    try:
        await run_on(transport, flow, {"impressions": [record({"imp_id": "1", "ad_id": "a1", "ts": 0}, "1")]})
        run = await run_on(transport, flow, {"clicks": [record({"imp_id": "x", "ad_id": "a1", "ts": 1_000}, "c1"),
                                                        record({"imp_id": "1", "ad_id": "a1", "ts": 2_000}, "c2")]})
    finally:
        await transport.stop()
    # "x" is not a number: that click is dead-lettered at the join, with nothing emitted for it
    assert [(orjson.loads(m.value), dict(m.headers)["dataflow.stage"]) for m in run.topics["ads-dead-letters"]] == [
        ({"imp_id": "x", "ad_id": "a1", "ts": 1_000}, b"attributed")]
    assert dict(run.topics["ads-dead-letters"][0].headers)["dataflow.error"] == (
        b"ValueError: could not convert string to float: 'x'")
    assert run.pairs("out") == [("a1", {**click("1", "a1", 2_000), **imp("1", "a1", 0)})]


# --------------------------------------------------------------------------- stream-table
SHOP_FLOW = """\
pipeline shop {{ partitions 1 }}
record Order {{ order_id: str, customer_id: str, amount: float }}
record Customer {{ name: str, tier: str }}
topic orders: Order key str
topic customers: Customer key str
topic out
table customers = topic customers
stream rich = orders | {how} join customers on customer_id and tier == "gold" and amount > 100
rich | to topic out
"""


class Order(Record):
    order_id: str
    customer_id: str
    amount: float


class Customer(Record):
    name: str
    tier: str


def shop_builder(how: str) -> Flow:
    flow = Flow("shop", partitions=1)
    flow.topic("orders", key=str, value=Order)
    flow.topic("out")
    customers = flow.table("customers", key=str, value=Customer)
    (flow.source("orders")
     .join(customers, how=how, on="customer_id", condition=(col("tier") == "gold") & (col("amount") > 100),
           name="rich")
     .to("out"))
    return flow


CUSTOMERS = [record({"name": "Ada", "tier": "gold"}, "c1"), record({"name": "Bo", "tier": "silver"}, "c2")]
ORDERS = [record({"order_id": "o1", "customer_id": "c1", "amount": 250.0}, "o1"),  # gold, over 100
          record({"order_id": "o2", "customer_id": "c1", "amount": 20.0}, "o2"),  # gold, small
          record({"order_id": "o3", "customer_id": "c2", "amount": 500.0}, "o3"),  # silver
          record({"order_id": "o4", "customer_id": "c9", "amount": 900.0}, "o4")]  # no such customer


def order(o: str, c: str, amount: float, name: str | None = None, tier: str | None = None) -> tuple[str, Any]:
    return c, {"order_id": o, "customer_id": c, "amount": amount, "name": name, "tier": tier}


@pytest.mark.parametrize("how,expected", [
    ("inner", [order("o1", "c1", 250.0, "Ada", "gold")]),
    ("left", [order("o1", "c1", 250.0, "Ada", "gold"), order("o2", "c1", 20.0), order("o3", "c2", 500.0),
              order("o4", "c9", 900.0)]),
    ("outer", [order("o1", "c1", 250.0, "Ada", "gold"), order("o2", "c1", 20.0), order("o3", "c2", 500.0),
               order("o4", "c9", 900.0)]),
])
async def test_stream_table_join_with_a_condition(kind, tmp_path, how, expected):
    flow = parse_flow(SHOP_FLOW.format(how=how))
    assert same_plan(flow, shop_builder(how))
    transport = make_transport(kind, tmp_path / "data")
    await transport.start()
    try:
        await run_on(transport, flow, {"customers": CUSTOMERS})  # the table first, so every order sees it
        run = await run_on(transport, flow, {"orders": ORDERS})
    finally:
        await transport.stop()
    assert run.pairs("out") == expected


# --------------------------------------------------------------------------- table-table
CRM_FLOW = """\
pipeline crm {{ partitions 1 }}
record Customer {{ name: str, tier: str }}
record Vip {{ tier: str, since: int }}
topic customers: Customer key str
topic vips: Vip key str
topic out
table customers = topic customers
table vips = topic vips
table same_tier = customers | {how} join vips on _key and tier == vips_tier
same_tier | to topic out
"""


class Vip(Record):
    tier: str
    since: int


def crm_builder(how: str) -> Flow:
    flow = Flow("crm", partitions=1)
    flow.topic("out")
    customers = flow.table("customers", key=str, value=Customer)
    vips = flow.table("vips", key=str, value=Vip)
    customers.join(vips, how=how, condition=col("tier") == col("vips_tier"), name="same_tier").to("out")
    return flow


def row(name: str | None, tier: str | None, vip_tier: str | None = None, since: int | None = None) -> dict[str, Any]:
    return {"name": name, "tier": tier, "vips_tier": vip_tier, "since": since}


STEPS: list[dict[str, list[ProducerRecord]]] = [
    {"customers": [record({"name": "Ada", "tier": "gold"}, "u1"), record({"name": "Bo", "tier": "gold"}, "u2")]},
    {"vips": [record({"tier": "gold", "since": 2020}, "u1"),  # u1: the tiers agree
              record({"tier": "silver", "since": 2021}, "u2")]},  # u2: they do not
    {"customers": [record({"name": "Ada", "tier": "silver"}, "u1")]},  # u1 no longer agrees
    {"vips": [record({"tier": "gold", "since": 2022}, "u2")]},  # u2 now agrees
    {"vips": [ProducerRecord("", b'"u2"', None)]},  # u2's vip row is deleted
]

EXPECTED_TT = {
    # a rejected pair is no row: a tombstone, sent even where no row existed (the join keeps no copy of its
    # output to know), as Kafka Streams' KTable.filter does
    "inner": [[], [("u1", row("Ada", "gold", "gold", 2020)), ("u2", None)], [("u1", None)],
              [("u2", row("Bo", "gold", "gold", 2022))], [("u2", None)]],
    # a rejected pair is the left row with the right side's fields null
    "left": [[("u1", row("Ada", "gold")), ("u2", row("Bo", "gold"))],
             [("u1", row("Ada", "gold", "gold", 2020)), ("u2", row("Bo", "gold"))],
             [("u1", row("Ada", "silver"))],
             [("u2", row("Bo", "gold", "gold", 2022))],
             [("u2", row("Bo", "gold"))]],
}


@pytest.mark.parametrize("how", ["inner", "left"])
async def test_table_table_join_with_a_condition(kind, tmp_path, how):
    flow = parse_flow(CRM_FLOW.format(how=how))
    assert same_plan(flow, crm_builder(how))
    transport = make_transport(kind, tmp_path / "data")
    await transport.start()
    try:
        seen = 0
        for step, expected in zip(STEPS, EXPECTED_TT[how]):
            run = await run_on(transport, flow, step)  # one change at a time: the order is the test
            assert run.pairs("out")[seen:] == expected, step
            seen = len(run.pairs("out"))
    finally:
        await transport.stop()


def is_gold_and_large(row: dict[str, Any]) -> bool:
    return row["tier"] == "gold" and row["amount"] > 100


async def test_a_python_callable_condition_gets_the_joined_row(tmp_path):
    flow = Flow("shop", partitions=1)
    flow.topic("orders", key=str, value=Order)
    flow.topic("out")
    customers = flow.table("customers", key=str, value=Customer)
    flow.source("orders").join(customers, how="left", on="customer_id", condition=is_gold_and_large,
                               name="rich").to("out")
    transport = make_transport("memory", tmp_path / "data")
    await transport.start()
    try:
        await run_on(transport, flow, {"customers": CUSTOMERS})
        run = await run_on(transport, flow, {"orders": ORDERS})
    finally:
        await transport.stop()
    assert run.pairs("out") == [order("o1", "c1", 250.0, "Ada", "gold"), order("o2", "c1", 20.0),
                                order("o3", "c2", 500.0), order("o4", "c9", 900.0)]
