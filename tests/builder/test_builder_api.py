"""The fluent builder: what each call puts into the IR."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dataflow import (Flow, Record, agg, col, fn, hopping, key, lit, record, sliding, timestamp, tumbling, udf,
                      value)
from dataflow.builder import Col, Table
from dataflow.ir import expr as ir
from dataflow.ir import nodes as n
from dataflow.ir.location import SourceLocation
from dataflow.ir.topology import Edge
from dataflow.ir.types import ANY, FLOAT, INT, STR, ListType

HERE = Path(__file__).resolve().relative_to(Path(__file__).resolve().parents[2]).as_posix()


def line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# @{marker}")]
    assert len(hits) == 1, marker
    return hits[0]


class W(Record):
    account_id: str
    amount: float
    ts: datetime


def to_upper(v):
    return v


# --------------------------------------------------------------------------- handles


def test_handles_are_immutable_each_call_adds_a_new_node():
    flow = Flow("app")
    s = flow.source("w", value=W)
    big = s.filter(col("amount") > 10)
    small = s.filter(col("amount") < 1)
    assert (s.node, big.node, small.node) == ("w", "w.filter", "w.filter_2")
    topo = flow.topology()
    assert topo.successors("w") == ["w.filter", "w.filter_2"]
    assert topo.inputs("w.filter") == [Edge("w")]


def test_topology_returns_a_copy():
    flow = Flow("app")
    s = flow.source("w")
    before = flow.topology()
    s.to("out")
    assert len(before) == 1
    assert len(flow.topology()) == 2


def test_nodes_record_where_the_builder_was_called():
    flow = Flow("app")
    flow.source("w").to("out")  # @call-site
    topo = flow.topology()
    here = SourceLocation(HERE, line_of("call-site"), 0)
    assert topo.node("w").loc == here
    assert topo.node("w.to_out").loc == here
    assert str(here) == f"{HERE}:{line_of('call-site')}"


def test_an_explicit_loc_wins():
    flow = Flow("app")
    loc = SourceLocation("p.flow", 3, 5)
    flow.source("w", loc=loc).filter(col("x"), loc=loc).to("o", loc=loc)
    assert {node.loc for node in flow.topology().nodes()} == {loc}


def test_source_reads_types_from_a_declared_topic():
    flow = Flow("app")
    decl = flow.topic("w", key=str, value=W, partitions=6, serializer="msgpack", timestamp="ts")
    flow.source(decl).to("o")
    src = flow.topology().node("w")
    assert isinstance(src, n.Source)
    assert (src.topic, src.key_type, src.value_type, src.partitions, src.serializer, src.timestamp_field) == \
        ("w", STR, W.__dataflow_schema__, 6, "msgpack", "ts")


def test_source_arguments_override_the_declaration():
    flow = Flow("app")
    flow.topic("w", key=str, value=W, partitions=6)
    flow.source("w", value=str, partitions=2).to("o")
    src = flow.topology().node("w")
    assert (src.key_type, src.value_type, src.partitions) == (STR, STR, 2)


def test_table_reads_a_topic_as_a_table():
    flow = Flow("app")
    t = flow.table("customers", key=str, value=W)
    assert isinstance(t, Table)
    node = flow.topology().node("customers")
    assert isinstance(node, n.TableSource) and node.value_type == W.__dataflow_schema__


def test_settings_and_configure():
    flow = Flow("app", partitions=8, broker="kafka://k:9092")
    assert (flow.settings.partitions, flow.settings.broker) == (8, "kafka://k:9092")
    flow.configure(partitions="3")
    assert flow.topology().settings.partitions == 3
    with pytest.raises(KeyError, match="unknown setting 'partitons'"):
        Flow("app", partitons=2)


# --------------------------------------------------------------------------- stateless steps


def test_filter_map_select_flat_map():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.filter((col("amount") > 10) & ~(col("account_id") == "x")).to("a")
    s.map({"id": col("account_id"), "double": col("amount") * 2}).to("b")
    s.select("account_id", cents=col("amount") * 100).to("c")
    s.flat_map(fn.split(col("account_id"), "-")).to("d")
    topo = flow.topology()
    assert ir.render(topo.node("w.filter").predicate) == 'amount > 10 and not (account_id == "x")'
    assert ir.render(topo.node("w.map").expr) == "{ id: account_id, double: amount * 2 }"
    assert ir.render(topo.node("w.map_2").expr) == "{ account_id: account_id, cents: amount * 100 }"
    assert ir.render(topo.node("w.flat_map").expr) == 'split(account_id, "-")'


def test_a_string_is_a_field_name_where_a_predicate_or_key_is_expected():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.filter("flagged").to("a")
    s.group_by("account_id").count()
    topo = flow.topology()
    assert topo.node("w.filter").predicate == ir.FieldRef(("flagged",))
    assert topo.node("w.by_account_id").key == ir.FieldRef(("account_id",))


def test_callables_become_pycalls_with_a_stable_reference():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.map(to_upper, output=str).to("a")
    s.filter(lambda v: v.amount > 1).to("b")  # @lambda
    s.flat_map(to_upper, output=int).to("c")
    topo = flow.topology()
    mapped = topo.node("w.map").expr
    assert isinstance(mapped, ir.PyCall)
    assert (mapped.ref, mapped.func, mapped.returns) == (f"{__name__}:to_upper", to_upper, STR)
    lam = topo.node("w.filter").predicate
    qualname = "test_callables_become_pycalls_with_a_stable_reference.<locals>.<lambda>"
    assert lam.ref == f"{__name__}:{qualname}@{line_of('lambda')}"  # the line tells two lambdas apart
    assert topo.node("w.flat_map").expr.returns == ListType(INT)
    # the callable itself never takes part in equality: the reference is the identity
    assert mapped == ir.PyCall(f"{__name__}:to_upper", print, STR)


def test_nested_functions_are_named_by_qualname():
    def helper(v):
        return v

    flow = Flow("app")
    flow.source("w").sink(helper)
    sink = flow.topology().node("w.sink_test_nested_functions_are_named_by_qualname_helper")
    assert isinstance(sink, n.Sink)
    assert (sink.sink, sink.target, sink.func) == (
        "callable", f"{__name__}:test_nested_functions_are_named_by_qualname.<locals>.helper", helper)


def test_names_made_from_callables_are_legal_topic_names():
    """Kafka topic names allow only [A-Za-z0-9._-]; `<locals>` and `<lambda>` must not leak into them."""
    from dataflow.planner import plan

    def by_country(v):
        return v["country"]

    flow = Flow("app")
    s = flow.source("w")
    s.group_by(lambda v: v["k"]).count(name="by_k").changes().to("o1")
    s.group_by(by_country).count(name="by_c").changes().to("o2")
    topics = sorted(t.name for t in plan(flow.topology()).topics if t.role == "repartition")
    assert topics == ["app-w.by_test_names_made_from_callables_are_legal_topic_names_by_country-repartition",
                      "app-w.by_test_names_made_from_callables_are_legal_topic_names_lambda-repartition"]


def test_echo_and_sinks():
    flow = Flow("app")
    s = flow.source("w").echo("audit", "copy")
    s.to("out", serializer="raw", partitions=3)
    s.print()
    s.to_file("out.jsonl")
    topo = flow.topology()
    assert topo.node("w.echo").topics == ("audit", "copy")
    out = topo.node("w.to_out")
    assert (out.sink, out.target, out.serializer, out.partitions) == ("topic", "out", "raw", 3)
    assert (topo.node("w.print").sink, topo.node("w.print").target) == ("stdout", "-")
    assert (topo.node("w.to_file").sink, topo.node("w.to_file").target) == ("file", "out.jsonl")
    with pytest.raises(ValueError, match="echo needs at least one topic"):
        s.echo()


def test_to_takes_the_value_type_of_a_declared_topic():
    flow = Flow("app")
    flow.topic("out", value=W, serializer="msgpack")
    flow.source("w").to("out")
    sink = flow.topology().node("w.to_out")
    assert (sink.value_type, sink.serializer) == (W.__dataflow_schema__, "msgpack")


def test_branch_edges_carry_the_branch_port():
    flow = Flow("app")
    b = flow.source("w", value=W).branch(large=col("amount") > 1000, small=col("amount") < 10, default="rest")
    b.large.to("large")
    b["small"].to("small")
    b.rest.to("rest")
    topo = flow.topology()
    branch = topo.node("w.branch")
    assert [name for name, _ in branch.branches] == ["large", "small"] and branch.default == "rest"
    assert topo.outputs("w.branch") == [
        ("w.branch.large.to_large", Edge("w.branch", "large")),
        ("w.branch.rest.to_rest", Edge("w.branch", "rest")),
        ("w.branch.small.to_small", Edge("w.branch", "small")),
    ]
    assert [s.port for s in b] == ["large", "small", "rest"]
    with pytest.raises(AttributeError, match="no branch 'medium'; branches are: large, small, rest"):
        b.medium
    with pytest.raises(ValueError, match="branch needs at least one predicate"):
        flow.source("v").branch()


def test_merge_edges_keep_ports():
    flow = Flow("app")
    w = flow.source("w")
    b = w.branch(big=col("amount") > 1, default="rest")
    b.big.to("big")
    merged = flow.merge(b.rest, flow.source("v"), name="all")
    merged.to("out")
    topo = flow.topology()
    assert isinstance(topo.node("all"), n.Merge)
    assert topo.inputs("all") == [Edge("v"), Edge("w.branch", "rest")]
    with pytest.raises(ValueError, match="merge needs at least two streams"):
        flow.merge(w)


def test_join_edges_carry_the_side():
    flow = Flow("app")
    a = flow.source("a", value=W)
    b = flow.source("b", value=W)
    j = a.join(b, within="5m", how="left")
    assert j.node == "a.join_b"
    topo = flow.topology()
    assert topo.inputs("a.join_b") == [Edge("a", side="left"), Edge("b", side="right")]
    node = topo.node("a.join_b")
    assert (node.how, node.within_ms, node.right_prefix) == ("left", 300_000, "b")


def test_join_on_and_right_on_rekey_first():
    flow = Flow("app")
    a = flow.source("a", value=W)
    b = flow.source("b", value=W)
    a.join(b, on="account_id", right_on=fn.lower(col("account_id")), within=timedelta(minutes=1)).to("x")
    topo = flow.topology()
    assert topo.inputs("a.key_account_id.join_b") == [
        Edge("a.key_account_id", side="left"), Edge("b.key_lower_account_id", side="right")]
    rekey = topo.node("b.key_lower_account_id")
    assert isinstance(rekey, n.GroupBy) and rekey.repartition is False
    assert topo.node("a.key_account_id.join_b").within_ms == 60_000


def test_join_prefix_comes_from_the_right_anchor():
    flow = Flow("app")
    a = flow.source("a", value=W)
    b = flow.source("b", value=W).filter(col("amount") > 1, name="big.ones")
    a.join(b, within="1m").to("x")
    assert flow.topology().node("a.join_big_ones").right_prefix == "big_ones"


def test_join_arguments_are_checked():
    flow = Flow("app")
    a = flow.source("a")
    t = flow.table("t")
    with pytest.raises(ValueError, match="how must be one of inner, left, outer, not 'right'"):
        a.join(t, how="right")
    with pytest.raises(ValueError, match="right_on re-keys a stream; a table is joined on its own key"):
        a.join(t, right_on="x")
    with pytest.raises(ValueError, match="how must be one of inner, left, outer, not 'cross'"):
        t.join(flow.table("u"), how="cross")


def test_table_table_join_is_a_table():
    flow = Flow("app")
    joined = flow.table("a").join(flow.table("b"), how="outer")
    assert isinstance(joined, Table) and joined.node == "a.join_b"
    assert flow.topology().inputs("a.join_b") == [Edge("a", side="left"), Edge("b", side="right")]


# --------------------------------------------------------------------------- keys, windows, aggregates


def test_group_by_select_key_through():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.group_by(fn.lower(col("account_id")), partitions=8).count()
    s.select_key(key()).to_table()
    s.through("mid", partitions=2, serializer="msgpack").to("o")
    topo = flow.topology()
    g = topo.node("w.by_lower_account_id")
    assert (g.partitions, g.repartition) == (8, True)
    assert topo.node("w.key_key").repartition is False
    t = topo.node("w.through_mid")
    assert (t.topic, t.partitions, t.serializer) == ("mid", 2, "msgpack")


def test_windows():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.window(tumbling("1m", grace="10s", on="ts")).count(name="t")
    s.window(hopping("10m", "1m", expires="1h")).count(name="h")
    s.window(sliding(30, time="processing")).count(name="s")
    topo = flow.topology()
    t, h, sl = (topo.node(x) for x in ("w.tumbling_1m", "w.hopping_10m_1m", "w.sliding_30s"))
    assert (t.window, t.size_ms, t.grace_ms, t.time, t.time_field) == ("tumbling", 60_000, 10_000, "event", ("ts",))
    assert (h.window, h.size_ms, h.step_ms, h.expires_ms, h.time) == ("hopping", 600_000, 60_000, 3_600_000,
                                                                      "message")
    assert (sl.window, sl.size_ms, sl.time) == ("sliding", 30_000, "processing")
    with pytest.raises(ValueError, match="event-time windows need the field that holds the time: on='ts'"):
        tumbling("1m", time="event")
    with pytest.raises(ValueError, match="time must be 'event', 'message' or 'processing', not 'wall'"):
        tumbling("1m", time="wall")
    with pytest.raises(ValueError, match="not a duration: '1 minute'"):
        tumbling("1 minute")


def test_aggregations():
    def combine(acc, v):
        return acc

    flow = Flow("app")
    s = flow.source("w", value=W).group_by("account_id")
    s.aggregate({"n": agg.count()}, total=agg.sum("amount"), lo=agg.min("amount"), hi=agg.max("amount"),
                mean=agg.avg("amount"), all=agg.collect(), ids=agg.set("account_id"), last=agg.latest("amount"),
                r1=agg.reduce(combine, "amount", initial=0), r2=agg.reduce("pkg.mod:fold"), name="stats")
    aggs = {a.output: a for a in flow.topology().node("stats").aggregations}
    assert list(aggs) == ["n", "total", "lo", "hi", "mean", "all", "ids", "last", "r1", "r2"]
    assert [a.function for a in aggs.values()] == ["count", "sum", "min", "max", "avg", "collect", "set", "latest",
                                                   "reduce", "reduce"]
    assert aggs["n"].arg is None and aggs["all"].arg == ir.Meta("value")
    assert (aggs["r1"].reducer, aggs["r1"].reducer_func, aggs["r1"].initial) == (
        f"{__name__}:test_aggregations.<locals>.combine", combine, 0)
    assert (aggs["r2"].reducer, aggs["r2"].arg) == ("pkg.mod:fold", ir.Meta("value"))
    with pytest.raises(ValueError, match="aggregate needs at least one aggregation"):
        s.aggregate()
    with pytest.raises(ValueError, match="emit must be 'changes' or 'final', not 'never'"):
        s.aggregate(n=agg.count(), emit="never")
    with pytest.raises(ValueError, match="must look like 'package.module:function'"):
        agg.reduce("fold")


def test_count_and_emit_final():
    flow = Flow("app")
    counted = flow.source("w").group_by("k").window(tumbling("1m")).count(emit="final")
    node = flow.topology().node(counted.node)
    assert (counted.node, node.emit, [a.output for a in node.aggregations]) == (
        "w.by_k.tumbling_1m.aggregate", "final", ["count"])


def test_to_table_and_changes():
    flow = Flow("app")
    t = flow.source("w").to_table("latest")
    assert isinstance(t, Table)
    t.to("out")
    topo = flow.topology()
    assert isinstance(topo.node("latest"), n.ToTable)
    assert topo.successors("latest") == ["latest.changes"]
    assert isinstance(topo.node("latest.changes"), n.Changes)
    assert topo.successors("latest.changes") == ["latest.to_out"]


# --------------------------------------------------------------------------- expressions


def test_expression_helpers_build_ir():
    assert col("address.city").expr == ir.FieldRef(("address", "city"))
    assert col("_partition").expr == ir.Meta("partition")
    assert (key().expr, value().expr, timestamp().expr) == (ir.Meta("key"), ir.Meta("value"), ir.Meta("timestamp"))
    assert lit(None).expr == ir.Literal(None)
    assert record(a=col("x"), b=1).expr == ir.MakeRecord((("a", ir.FieldRef(("x",))), ("b", ir.Literal(1))))
    assert fn.if_(col("c"), 1, 2).expr == ir.Call("if", (ir.FieldRef(("c",)), ir.Literal(1), ir.Literal(2)))
    u = udf("pkg.scoring:risk", col("amount"), returns=float).expr
    assert u == ir.Udf("pkg.scoring:risk", (ir.FieldRef(("amount",)),), FLOAT)
    assert udf("pkg:f").expr.returns == ANY


@pytest.mark.parametrize("built, text", [
    (col("a") + 1, "a + 1"), (1 + col("a"), "1 + a"), (col("a") - 1, "a - 1"), (10 - col("a"), "10 - a"),
    (col("a") * 2, "a * 2"), (2 * col("a"), "2 * a"), (col("a") / 2, "a / 2"), (2 / col("a"), "2 / a"),
    (col("a") % 2, "a % 2"), (-col("a"), "-a"), (col("a") >= 1, "a >= 1"), (col("a") <= 1, "a <= 1"),
    (col("a") < 1, "a < 1"), (col("a") != 1, "a != 1"), (col("a") == "x", 'a == "x"'),
    ((col("a") > 1) | (col("b") < 2), "a > 1 or b < 2"), (True & col("b"), "true and b"),
    (False | col("b"), "false or b"), (col("a").is_null(), "a is null"), (col("a").is_not_null(), "a is not null"),
    (col("a") * (col("b") + 1), "a * (b + 1)"), (fn.concat(col("a"), "-", 1), 'concat(a, "-", 1)'),
])
def test_col_operators(built, text):
    assert isinstance(built, Col)
    assert ir.render(built.expr) == text


def test_col_has_no_truth_value_and_no_hash():
    with pytest.raises(TypeError, match="combine conditions with &, | and ~"):
        bool(col("a") > 1)
    with pytest.raises(TypeError):
        hash(col("a"))


def test_unknown_builtin_suggests_the_closest():
    with pytest.raises(AttributeError, match="unknown function 'lowr'; did you mean 'lower'\\?"):
        fn.lowr
    with pytest.raises(ValueError, match="must look like 'package.module:function'"):
        udf("nocolon")
    with pytest.raises(TypeError, match="cannot use"):
        col("a") + object()


# ---------------------------------------------------------------------------- Python agents

def _pricing_app():  # type: ignore[no-untyped-def]
    from dataflow.runtime.app import App

    app = App("pricing")

    @app.agent()
    async def quote(stream):  # type: ignore[no-untyped-def]
        async for order in stream:
            yield order

    return app, quote


def test_call_agent_and_to_agent_by_import_path():
    flow = Flow("shop")
    orders = flow.source("orders", key=str, value=W)
    quoted = orders.call_agent("storefront.pricing:quote", output=float)  # @call
    quoted.to("quotes")
    orders.to_agent("storefront.pricing:audit", name="audited")
    call = flow.topology().node("orders.call_quote")
    assert call == n.CallAgent("orders.call_quote", target="storefront.pricing:quote", value_type=FLOAT)
    assert (call.agent, call.loc.line) == (None, line_of("call"))
    assert flow.topology().node("audited") == n.Sink("audited", sink="agent", target="storefront.pricing:audit")
    assert quoted.name == "orders.call_quote"  # not an anchor: later steps derive from `orders`
    assert flow.topology().successors("orders.call_quote") == ["orders.to_quotes"]


def test_an_agent_given_as_itself_is_named_by_its_module_and_name_and_kept():
    app, quote = _pricing_app()
    flow = Flow("shop")
    flow.source("orders").call_agent(quote).to_agent(quote)
    call, sink = flow.topology().node("orders.call_quote"), flow.topology().node("orders.to_agent_quote")
    assert call.target == sink.target == f"{__name__}:_pricing_app.<locals>.quote"
    assert call.agent is quote and sink.agent is quote
    assert call.value_type == ANY


def test_call_agent_needs_an_agent_or_an_import_path():
    flow = Flow("shop")
    orders = flow.source("orders")
    with pytest.raises(ValueError, match=r"'storefront\.pricing' is not an agent's import path; "
                                         r"write it as \"package\.module:agent\""):
        orders.call_agent("storefront.pricing")
    with pytest.raises(TypeError, match=r"call_agent takes an agent \(a function decorated with @app\.agent\) or "
                                        r"its import path \"package\.module:agent\", not <function"):
        orders.call_agent(lambda v: v)
    with pytest.raises(TypeError, match=r"to_agent takes an agent"):
        orders.to_agent(42)
