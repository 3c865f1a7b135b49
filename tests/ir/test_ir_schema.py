"""ir.schema: the key, value, shape and partitioning that flow out of every node; ir.topology basics."""
from __future__ import annotations

from datetime import datetime

import pytest

from dataflow import Flow, Record, agg, col, fn, tumbling, value
from dataflow.ir import nodes as n
from dataflow.ir.expr import Literal
from dataflow.ir.schema import infer_schemas, join_value
from dataflow.ir.topology import Edge, Topology
from dataflow.ir.types import (ANY, BOOL, FLOAT, INT, STR, TIMESTAMP, Field, ListType, OptionalType, RecordType)


class Order(Record):
    id: str
    customer: str
    amount: float
    qty: int
    ts: datetime


class Customer(Record):
    id: str
    name: str


ORDER = Order.__dataflow_schema__
CUSTOMER = Customer.__dataflow_schema__


def schemas(flow: Flow):  # type: ignore[no-untyped-def]
    found, errors = infer_schemas(flow.topology())
    assert errors == []
    return found


def test_stateless_steps():
    flow = Flow("app", partitions=6)
    s = flow.source("orders", key=str, value=Order)
    s.filter(col("amount") > 1).map({"c": col("customer"), "cents": col("amount") * 100}, name="m").flat_map(
        fn.split(col("c")), name="words").to("w")
    got = schemas(flow)
    assert (got["orders"].key, got["orders"].value, got["orders"].shape, got["orders"].partitions,
            got["orders"].partitioned_by) == (STR, ORDER, "stream", 6, "orders")
    assert got["orders.filter"] == got["orders"]
    assert got["m"].value == RecordType("", (Field("c", STR), Field("cents", FLOAT)))
    assert got["words"].value == STR


def test_rekeying():
    flow = Flow("app")
    s = flow.source("orders", key=str, value=Order, partitions=3)
    s.group_by("qty", partitions=5).count(name="a")
    s.select_key("qty").count(name="b")
    got = schemas(flow)
    g = got["orders.by_qty"]
    assert (g.key, g.partitions, g.partitioned_by, g.keyed) == (INT, 5, "orders.by_qty", True)
    k = got["orders.key_qty"]
    assert (k.key, k.partitions, k.partitioned_by, k.keyed) == (INT, 3, "orders", False)
    # the planner repartitions before every aggregate, so an aggregate's table is keyed
    assert got["b"].keyed is True


def test_aggregate_value_types():
    flow = Flow("app")
    s = flow.source("orders", key=str, value=Order).group_by("customer")
    s.aggregate(n=agg.count(), qty=agg.sum("qty"), amount=agg.sum("amount"), lo=agg.min("amount"),
                mean=agg.avg("qty"), ids=agg.collect("id"), seen=agg.set("id"), last=agg.latest(),
                r=agg.reduce("m:f"), name="stats")
    s.window(tumbling("1m", on="ts")).aggregate(n=agg.count(), name="per_minute")
    got = schemas(flow)
    assert got["stats"].value == RecordType("", (
        Field("n", INT), Field("qty", INT), Field("amount", FLOAT), Field("lo", FLOAT), Field("mean", FLOAT),
        Field("ids", ListType(STR)), Field("seen", ListType(STR)), Field("last", ORDER), Field("r", ANY)))
    assert (got["stats"].shape, got["stats"].key) == ("table", STR)
    windowed = got["per_minute"]
    assert windowed.shape == "windowed_table"
    assert windowed.value == RecordType("", (Field("n", INT), Field("window_start", TIMESTAMP),
                                             Field("window_end", TIMESTAMP)))
    assert got["orders.by_customer.tumbling_1m"].shape == "windowed"


def test_tables_and_changes():
    flow = Flow("app")
    t = flow.table("customers", key=str, value=Customer, partitions=2)
    t.changes().to("c")
    flow.source("orders", key=str, value=Order).to_table("latest").changes().to("l")
    got = schemas(flow)
    assert (got["customers"].shape, got["customers"].partitions) == ("table", 2)
    assert got["customers.changes"].shape == "stream"
    assert got["latest"].shape == "table"


@pytest.mark.parametrize("how, left_t, right_t", [
    ("inner", lambda t: t, lambda t: t),
    ("left", lambda t: t, OptionalType),
    ("outer", OptionalType, OptionalType),
])
def test_join_value_prefixes_clashing_right_fields(how, left_t, right_t):
    joined = join_value(ORDER, CUSTOMER, how, "customers")
    assert joined == RecordType("", (
        Field("id", left_t(STR)), Field("customer", left_t(STR)), Field("amount", left_t(FLOAT)),
        Field("qty", left_t(INT)), Field("ts", left_t(TIMESTAMP)),
        Field("customers_id", right_t(STR)), Field("name", right_t(STR))))


def test_join_of_non_records_makes_left_and_right():
    assert join_value(STR, INT, "left", "r") == RecordType("", (Field("left", STR), Field("right", OptionalType(INT))))


def test_join_schema():
    flow = Flow("app")
    customers = flow.table("customers", key=str, value=Customer)
    flow.source("orders", key=str, value=Order).join(customers, how="left", name="j").to("o")
    got = schemas(flow)
    assert got["j"].value.field("customers_id").type == OptionalType(STR)
    assert got["j"].shape == "stream"


def test_merge_unifies():
    flow = Flow("app")
    a = flow.source("a", key=str, value=int, partitions=2)
    b = flow.source("b", key=str, value=float, partitions=4)
    a.merge(b, name="m").to("o")
    m = schemas(flow)["m"]
    assert (m.value, m.partitions, m.partitioned_by, m.keyed) == (FLOAT, 4, "m", False)


def test_fused_steps_propagate_like_their_parts():
    t = Topology("app")
    t.add(n.Source("s", topic="s", key_type=STR, value_type=ORDER))
    fused = n.Fused("f", steps=(n.Filter("f1", predicate=Literal(True)), n.Map("m", expr=(value() > 1).expr)))
    t.add(fused, [Edge("s")])
    found, errors = infer_schemas(t)
    assert errors[0].message == "cannot compare Order with int using '>'"
    t2 = Topology("app")
    t2.add(n.Source("s", topic="s", key_type=STR, value_type=INT))
    t2.add(n.Fused("f", steps=(n.Map("m", expr=(value() > 1).expr),)), [Edge("s")])
    assert infer_schemas(t2)[0]["f"].value == BOOL


# --------------------------------------------------------------------------- topology


def test_topology_order_inputs_outputs():
    t = Topology("app")
    t.add(n.Source("b", topic="b"))
    t.add(n.Source("a", topic="a"))
    t.add(n.Join("j"), [Edge("b", side="right"), Edge("a", side="left")])
    t.add(n.Sink("j.z", sink="stdout", target="-"), [Edge("j")])
    t.add(n.Sink("j.y", sink="stdout", target="-"), [Edge("j")])
    assert t.order() == ["a", "b", "j", "j.y", "j.z"]
    assert t.inputs("j") == [Edge("a", side="left"), Edge("b", side="right")]
    assert t.outputs("j") == [("j.y", Edge("j")), ("j.z", Edge("j"))]
    assert t.predecessors("j") == ["a", "b"] and t.successors("j") == ["j.y", "j.z"]
    assert t.is_acyclic() and t.cycle() == []
    with pytest.raises(KeyError, match="a node named 'a' already exists"):
        t.add(n.Source("a", topic="a"))


def test_topology_rename_keeps_edges_and_copies_are_independent():
    t = Topology("app")
    t.add(n.Source("s", topic="s"))
    t.add(n.Branch("b", branches=(("x", Literal(True)),)), [Edge("s")])
    t.add(n.Sink("out", sink="stdout", target="-"), [Edge("b", port="x")])
    copy = t.copy()
    t.rename("b", n.Branch("b2", branches=(("x", Literal(True)),)))
    assert t.inputs("out") == [Edge("b2", port="x")] and t.inputs("b2") == [Edge("s")]
    assert "b" in copy and "b2" not in copy
    mapped = copy.map_nodes(lambda node: node)
    assert [x.name for x in mapped.nodes()] == ["s", "b", "out"]
