"""Every validation rule: its exact message, hint and location (the builder call's file:line).

Each pipeline is built right here; `# @marker` comments name the line a diagnostic must point at.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from dataflow import Flow, Record, agg, col, hopping, lit, session, tumbling
from dataflow.builder import Col, Stream, Table
from dataflow.ir import expr as ir
from dataflow.ir import nodes as n
from dataflow.ir.diagnostics import Diagnostic, PipelineError
from dataflow.ir.location import SourceLocation
from dataflow.ir.topology import Edge, Topology
from dataflow.ir.schema import infer_schemas
from dataflow.planner import check, plan, validate

from tests.source_markers import marker_locator

at = marker_locator(__file__)


def found(flow: Flow) -> list[tuple[str, str, str]]:
    """(message, hint, location) of every diagnostic, in the order check() sorts them."""
    return [(d.message, d.hint, str(d.loc)) for d in check(flow.topology())]


def as_stream(handle: Table) -> Stream:
    """What a frontend could build but the typed builder API does not offer: a table used as a stream."""
    return Stream(handle.flow, handle.node, handle.anchor)


def as_table(handle: Stream) -> Table:
    return Table(handle.flow, handle.node, handle.anchor)


class Withdrawal(Record):
    account_id: str
    amount: float
    country: str
    ts: datetime


class Alert(Record):
    account_id: str
    total: float


class Customer(Record):
    name: str


# --------------------------------------------------------------------------- type errors (ir/schema.py)


def test_unknown_field_suggests_the_closest():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).filter(col("amout") > 1000).to("big")  # @unknown-field
    assert found(flow) == [("unknown field 'amout' in Withdrawal", "did you mean 'amount'?", at("unknown-field"))]


def test_unknown_field_without_a_close_match_lists_the_fields():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).map({"x": col("zzz")}).to("out")  # @unknown-field-list
    assert found(flow) == [("unknown field 'zzz' in Withdrawal", "fields are: account_id, amount, country, ts",
                            at("unknown-field-list"))]


def test_unknown_field_after_a_map_names_the_fields_it_has():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).map({"total": col("amount")})
    s.filter(col("totl") > 1).to("out")  # @unknown-field-map
    assert found(flow) == [("unknown field 'totl' in { total: float }", "did you mean 'total'?",
                            at("unknown-field-map"))]


def test_type_mismatch_in_a_comparison():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).filter(col("country") > 3).to("out")  # @compare
    assert found(flow) == [("cannot compare str with int using '>'", "", at("compare"))]


def test_type_mismatch_in_arithmetic():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).map({"x": col("country") + 1}).to("out")  # @arith
    assert found(flow) == [("operator '+' needs numbers, got str", "use concat() to join strings with other values",
                            at("arith"))]


def test_a_filter_condition_must_be_a_bool():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).filter(col("amount")).to("out")  # @not-bool
    assert found(flow) == [("a filter condition must be a bool, got float", "compare it with something, e.g. amount > 0",
                            at("not-bool"))]


def test_a_branch_condition_must_be_a_bool():
    flow = Flow("app")
    b = flow.source("w", value=Withdrawal).branch(big=col("country"))  # @branch-not-bool
    b.big.to("big")
    assert found(flow) == [("a branch condition must be a bool, got str", "compare it with something, e.g. amount > 0",
                            at("branch-not-bool"))]


def test_sum_needs_numbers():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).group_by("account_id")
    s.aggregate(total=agg.sum("country"), name="t")  # @sum-str
    assert found(flow) == [("sum() needs numbers, got str", "", at("sum-str"))]


def test_flat_map_needs_a_list():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).flat_map(col("country")).to("out")  # @flat-map
    assert found(flow) == [("flat_map needs an expression giving a list, got str", "use map for one value per event",
                            at("flat-map"))]


def test_merge_inputs_need_one_value_type():
    flow = Flow("app")
    a = flow.source("a", value=Withdrawal)
    b = flow.source("b", value=str)
    a.merge(b).to("out")  # @merge-types
    assert found(flow) == [("merge inputs have different value types: Withdrawal and str",
                            "map them to one type before merging", at("merge-types"))]


def test_join_keys_need_one_type():
    flow = Flow("app")
    a = flow.source("a", key=str, value=Withdrawal)
    b = flow.source("b", key=int, value=Customer)
    a.join(b, within="1m").to("out")  # @join-keys
    assert found(flow) == [("join keys have different types: str and int",
                            "re-key one side with on=/right_on= so both keys have one type", at("join-keys"))]


def test_event_time_fields_must_exist_and_hold_time():
    flow = Flow("app")
    flow.source("a", value=Withdrawal, timestamp="country").to("x")  # @ts-type
    flow.source("b", value=Withdrawal, timestamp="tz").to("y")  # @ts-missing
    s = flow.source("c", value=Withdrawal).group_by("account_id")
    s.window(tumbling("1m", on="account_id")).count(name="n")  # @window-ts
    flow.source("d", value=Withdrawal, timestamp="amount").to("z")  # @ts-float
    s.window(tumbling("1m", on="amount"), name="w2").count(name="m")  # @window-float
    def text(field: str) -> str:
        return (f"if it holds ISO-8601 text, declare the field '{field}' timestamp (ISO-8601 text is read in every "
                f"unit), or set the time in a stage: `event_time parse_time({field})` (builder: "
                f"`.event_time(fn.parse_time(col(\"{field}\")))`)")
    seconds = "if it holds epoch seconds (e.g. 1700000000.123), declare the field timestamp(s)"
    assert found(flow) == [
        ("the event-time field 'country' must be a timestamp, got str", text("country"), at("ts-type")),
        ("unknown field 'tz' in Withdrawal", "fields are: account_id, amount, country, ts", at("ts-missing")),
        ("the event-time field 'account_id' must be a timestamp, got str", text("account_id"), at("window-ts")),
        ("the event-time field 'amount' is a float; event time must be a timestamp or an int of epoch ms",
         seconds, at("ts-float")),
        ("the event-time field 'amount' is a float; event time must be a timestamp or an int of epoch ms",
         seconds, at("window-float")),
    ]


def test_unknown_function():
    flow = Flow("app")
    unknown = Col(ir.Call("lowr", (ir.FieldRef(("country",)),)))  # fn.lowr raises in Python already
    flow.source("w", value=Withdrawal).filter(unknown == "x").to("out")  # @unknown-fn
    assert found(flow) == [("unknown function 'lowr'", "did you mean 'lower'?", at("unknown-fn"))]


def test_unknown_function_without_a_close_match():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).map(Col(ir.Call("zzz", ()))).to("out")  # @unknown-fn-2
    assert found(flow) == [("unknown function 'zzz'", "see the list of built-in functions in docs/language.md",
                            at("unknown-fn-2"))]


def test_a_dsl_expression_points_at_its_own_span():
    """Expressions from `.flow` carry their span; the diagnostic points there, not at the step."""
    flow = Flow("app")
    span = SourceLocation("p.flow", 7, 18)
    flow.source("w", value=Withdrawal).filter(Col(ir.FieldRef(("amout",), loc=span)) > 1).to("out")
    assert found(flow) == [("unknown field 'amout' in Withdrawal", "did you mean 'amount'?", "p.flow:7:18")]


# --------------------------------------------------------------------------- graph rules (planner/validate.py)


def test_cycle_a_pipeline_that_writes_a_topic_it_reads():
    flow = Flow("app")
    flow.source("events", value=Withdrawal).filter(col("amount") > 1).to("events")  # @cycle
    assert found(flow) == [("cycle: 'events.to_events' writes topic 'events', which feeds back into it",
                            "write to another topic", at("cycle"))]


def test_cycle_through_other_topics_and_echo():
    flow = Flow("app")
    flow.source("a", value=Withdrawal).to("b")  # @cycle-echo
    flow.source("b", value=Withdrawal).echo("a").to("c")
    assert found(flow) == [("cycle: 'a.to_b' writes topic 'b', which feeds back into it", "write to another topic",
                            at("cycle-echo"))]


def test_cycle_through_a_through_topic():
    flow = Flow("app")
    flow.source("a", value=Withdrawal).through("a").to("b")  # @cycle-through
    assert found(flow) == [("cycle: 'a.through_a' writes topic 'a', which feeds back into it",
                            "write to another topic", at("cycle-through"))]


def test_dangling_stream():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).filter(col("amount") > 1, name="big")  # @dangling
    assert found(flow) == [("stream 'big' is never used: it has no sink and feeds no step", "", at("dangling"))]


def test_dangling_source():
    flow = Flow("app")
    flow.source("w", value=Withdrawal)  # @dangling-source
    assert found(flow) == [("source 'w' is never used: it has no sink and feeds no step", "", at("dangling-source"))]


def test_dangling_branch():
    flow = Flow("app")
    b = flow.source("w", value=Withdrawal).branch(big=col("amount") > 1, default="rest")  # @dangling-branch
    b.big.to("big")
    assert found(flow) == [("branch 'rest' of 'w.branch' is never used", "send it somewhere or drop the branch",
                            at("dangling-branch"))]


def test_tables_and_aggregates_need_no_sink():
    flow = Flow("app")
    flow.table("customers", value=Customer)
    flow.source("w", value=Withdrawal).group_by("account_id").count(name="n")
    assert found(flow) == []


def test_duplicate_name_internal_topic_clashes_with_a_user_topic():
    """The error is at the user's topic, not at the step whose internal topic it would be."""
    flow = Flow("app")
    s = flow.source("app-totals-changelog", value=Withdrawal)  # @dup-user-topic
    s.group_by("account_id").aggregate(total=agg.sum("amount"), name="totals")
    assert found(flow) == [("topic 'app-totals-changelog' has the name of the changelog of store 'totals', which "
                            "the planner adds", TOPIC_HINT, at("dup-user-topic"))]


TOPIC_HINT = ("rename the topic: PIPELINE-STEP-repartition, PIPELINE-STEP-changelog and PIPELINE-dead-letters are "
              "the names of the planner's topics")


def test_duplicate_name_two_steps_would_share_an_internal_topic():
    """The builder cannot produce this (node names are unique); a hand-made topology can."""
    here = SourceLocation("p.flow", 3, 1)
    there = SourceLocation("p.flow", 5, 1)
    t = Topology("app")
    t.add(n.Source("w", topic="w"))
    t.add(n.GroupBy("g", key=ir.Meta("value"), loc=here), [Edge("w")])
    t.add(n.Repartition("r", topic="app-g-repartition", partitions=4, loc=there), [Edge("g")])
    t.add(n.Aggregate("c", aggregations=(n.Aggregation("n", "count"),)), [Edge("r")])
    assert [(d.message, d.hint, str(d.loc)) for d in check(t)] == [
        ("'r' and 'g' would share the internal topic 'app-g-repartition'", "give one of them another name=",
         "p.flow:5:1")]


def test_duplicate_name_for_two_stateful_steps_is_a_builder_error():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal)
    s.group_by("account_id").count(name="c1")
    with pytest.raises(ValueError) as e:
        s.group_by("account_id").count(name="c2")  # @dup-builder
    assert str(e.value) == (f"{at('dup-builder')}: this step would be named 'w.by_account_id' like an earlier one; "
                            "its topic or store name derives from it, so give it a name: .group_by(..., name=\"...\")")


def test_window_without_aggregation():
    flow = Flow("app")
    w = flow.source("w", value=Withdrawal).group_by("account_id").window(tumbling("1m"))  # @window-no-agg
    w.to("out")
    assert found(flow) == [("window 'w.by_account_id.tumbling_1m' is not followed by an aggregation",
                            "add an aggregate step, e.g. aggregate(n=agg.count())", at("window-no-agg"))]


def test_hopping_step_larger_than_size():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).group_by("account_id")
    s.window(hopping("1m", "5m")).count(name="n")  # @hop
    assert found(flow) == [("the step (5m) of a hopping window is larger than its size (1m): events between windows "
                            "would be lost", "use a step no larger than the size", at("hop"))]


def test_window_parameters():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).group_by("account_id")
    s.window(tumbling(0)).count(name="a")  # @size-zero
    s.window(hopping("1m", 0)).count(name="b")  # @step-zero
    s.window(tumbling("1m", grace="30s", expires="1m")).count(name="c")  # @expires
    s.window(session(0)).count(name="d")  # @gap-zero
    s.window(session("1m", grace="30s", expires="1m")).count(name="e")  # @session-expires
    assert found(flow) == [
        ("a window needs a size above zero", "", at("size-zero")),
        ("a hopping window needs a step above zero", "", at("step-zero")),
        ("a window cannot expire before it closes (expires < size + grace)", "", at("expires")),
        ("a session window needs a gap above zero", "", at("gap-zero")),
        ("a window cannot expire before it closes (expires < gap + grace)", "", at("session-expires")),
    ]


def test_a_table_cannot_be_windowed_or_aggregated():
    flow = Flow("app")
    t = flow.table("customers", value=Customer)
    as_stream(t).window(tumbling("1m")).count(name="a")  # @window-table
    as_stream(t).aggregate(n=agg.count(), name="b")  # @aggregate-table
    as_stream(t).to_table("c")  # @table-table
    assert found(flow) == [
        ("cannot window a table; window the stream of its changes", "", at("window-table")),
        ("cannot aggregate a table directly; use its changes", "", at("aggregate-table")),
        ("cannot table a table directly; use its changes", "", at("table-table")),
    ]


def test_a_table_cannot_feed_a_stream_step():
    flow = Flow("app")
    t = flow.table("customers", value=Customer)
    as_stream(t).filter(col("name") == "x").to("out")  # @table-filter
    hint = "take the stream of its updates first: .changes()"
    assert found(flow) == [
        ("a table cannot feed filter directly", hint, at("table-filter")),
        ("a table cannot feed sink directly", hint, at("table-filter")),  # the filter's output is still a table
    ]


def test_reduce_needs_a_reducer():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).group_by("account_id")
    s.aggregate(r=n.Aggregation("", "reduce", ir.FieldRef(("amount",))), name="r")  # @reduce
    assert found(flow) == [("reduce for 'r' needs a reducer", "", at("reduce"))]


def test_join_of_two_streams_needs_within():
    flow = Flow("app")
    a = flow.source("a", value=Withdrawal)
    b = flow.source("b", value=Customer)
    a.join(b).to("out")  # @no-within
    assert found(flow) == [("a join of two streams needs a time bound", 'add within=..., e.g. within="5m"',
                            at("no-within"))]


def test_within_applies_only_to_stream_stream_joins():
    flow = Flow("app")
    a = flow.source("a", value=Withdrawal)
    t = flow.table("t", value=Customer)
    a.join(t, within="5m").to("out")  # @table-within
    assert found(flow) == [("within applies only to joins of two streams",
                            "a table join looks up the latest value; drop within", at("table-within"))]


def test_table_table_join_not_co_partitioned():
    flow = Flow("app")
    a = flow.table("a", value=Withdrawal, partitions=4)
    b = flow.table("b", value=Customer, partitions=6)
    a.join(b).to("out")  # @tt-copart
    assert found(flow) == [("tables 'a' (4 partitions) and 'b' (6 partitions) are not co-partitioned",
                            "read both tables from topics with the same number of partitions", at("tt-copart"))]


def test_table_on_the_left_of_a_stream():
    flow = Flow("app")
    t = flow.table("t", value=Customer)
    s = flow.source("s", value=Withdrawal)
    t.join(as_table(s)).to("out")  # @table-left
    diagnostics = found(flow)
    assert diagnostics[0] == ("a table cannot be joined with a stream on its right",
                              "put the stream on the left: stream.join(table)", at("table-left"))
    # the join is not a table, so the .changes() that Table.to adds is reported too
    assert diagnostics[1:] == [("changes applies to tables; this is already a stream", "", at("table-left"))]


def test_the_table_on_the_right_must_be_partitioned_by_its_key():
    """A safety net: every table node yields a keyed table today (the planner repartitions before
    aggregates and tables), so the rule is exercised with a hand-made schema."""
    loc = SourceLocation("p.flow", 9, 3)
    t = Topology("app")
    t.add(n.Source("s", topic="s"))
    t.add(n.TableSource("c", topic="c"))
    t.add(n.Join("j", loc=loc), [Edge("s", side="left"), Edge("c", side="right")])
    schemas, _ = infer_schemas(t)
    schemas["c"] = replace(schemas["c"], keyed=False)
    assert [(d.message, d.hint, str(d.loc)) for d in validate._joins(t, schemas)] == [
        ("the table on the right of a join is not partitioned by its key", "", "p.flow:9:3")]


def test_a_table_built_after_select_key_can_be_joined():
    """The planner repartitions before every aggregate, so its table is keyed: no diagnostic.

    This used to report "the table on the right of a join is not partitioned by its key",
    rejecting a pipeline the planner handles.
    """
    flow = Flow("app")
    totals = flow.source("w", value=Withdrawal).select_key("account_id").count(name="totals")
    flow.source("s", key=str, value=Customer).join(totals).to("out")
    assert found(flow) == []
    planned = plan(flow.topology())
    assert planned.topology.predecessors("totals") == ["totals.repartition"]


def test_sink_type_mismatch():
    flow = Flow("app")
    flow.topic("alerts", value=Alert)
    flow.source("w", value=Withdrawal).map({"account_id": col("account_id")}).to("alerts")  # @sink-missing
    wrong = {"account_id": col("account_id"), "total": col("country")}
    flow.source("v", value=Withdrawal).map(wrong).to("alerts")  # @sink-wrong
    flow.source("u", value=str).to("alerts")  # @sink-str
    assert found(flow) == [
        ("cannot send { account_id: str } to topic 'alerts', which holds Alert", "missing field: total",
         at("sink-missing")),
        ("cannot send { account_id: str, total: str } to topic 'alerts', which holds Alert", "total is str not float",
         at("sink-wrong")),
        ("cannot send str to topic 'alerts', which holds Alert", "map the values to the topic's type first",
         at("sink-str")),
    ]


def test_sink_type_matches():
    flow = Flow("app")
    flow.topic("alerts", value=Alert)
    flow.source("w", value=Withdrawal).map({"account_id": col("account_id"), "total": col("amount"),
                                            "extra": lit(1)}).to("alerts")
    assert found(flow) == []


def test_emit_final_without_window():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal).group_by("account_id")
    s.aggregate(n=agg.count(), emit="final", name="n")  # @emit-final
    assert found(flow) == [("emit final needs a window: an unwindowed aggregate never closes",
                            "window it, or emit changes", at("emit-final"))]


def test_changes_of_a_stream():
    flow = Flow("app")
    s = flow.source("w", value=Withdrawal)
    as_table(s).changes().to("out")  # @changes-stream
    assert found(flow) == [("changes applies to tables; this is already a stream", "", at("changes-stream"))]


# --------------------------------------------------------------------------- Python agents

AGENT_HINT = ('an agent is named by its import path, "package.module:agent", found from the working '
              "directory or the pipeline file's directory")


@pytest.mark.usefixtures("examples_importable")
def test_agents_that_cannot_be_loaded_or_cannot_reply():
    flow = Flow("app")
    orders = flow.source("orders")
    orders.call_agent("no_such_module_here:quote").to("a")  # @no-module
    orders.call_agent("storefront.pricing:PRICES").to("b")  # @not-an-agent
    orders.call_agent("storefront.pricing:audit").to("c")  # @no-reply
    orders.to_agent("storefront.pricing:qoute")  # @misspelt
    assert found(flow) == [
        ('cannot load agent "no_such_module_here:quote": cannot import module \'no_such_module_here\': '
         "No module named 'no_such_module_here'", AGENT_HINT, at("no-module")),
        ("cannot load agent \"storefront.pricing:PRICES\": 'PRICES' is not a dataflow agent in module 'storefront.pricing'",
         "agents there: audit, quote", at("not-an-agent")),
        ("agent 'audit' cannot reply: its function does not yield",
         "yield the result inside `async for`, or send to the agent without asking: to agent / to_agent()",
         at("no-reply")),
        ("cannot load agent \"storefront.pricing:qoute\": 'qoute' is not a dataflow agent in module 'storefront.pricing'",
         "agents there: audit, quote", at("misspelt")),
    ]


def test_an_agent_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_agents_mod.py").write_text("raise RuntimeError('no pricing database')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    flow = Flow("app")
    flow.source("orders").to_agent("broken_agents_mod:quote")  # @broken
    assert found(flow) == [('cannot load agent "broken_agents_mod:quote": importing it failed: '
                            "RuntimeError: no pricing database", AGENT_HINT, at("broken"))]


@pytest.mark.usefixtures("examples_importable")
def test_an_agent_app_named_like_the_pipeline_and_a_table_asking_an_agent():
    flow = Flow("pricing")  # the app of storefront.pricing is called `pricing` too
    t = flow.table("customers", value=Customer)
    as_stream(t).call_agent("storefront.pricing:quote", name="asked").to("out")  # @clash
    hint = "take the stream of its updates first: .changes()"
    assert found(flow) == [
        ("a table cannot feed call_agent directly", hint, at("clash")),
        ("a table cannot feed sink directly", hint, at("clash")),  # what the agent gives is still a table
        ("agent 'quote' belongs to an app named like the pipeline, 'pricing': both would consume as the group "
         "'pricing'", "rename the app or the pipeline", at("clash")),
    ]


# --------------------------------------------------------------------------- how diagnostics reach users


def test_plan_raises_every_diagnostic_sorted_by_location():
    flow = Flow("app")
    flow.source("w", value=Withdrawal).filter(col("amout") > 1).to("a")  # @first
    flow.source("v", value=Withdrawal)  # @second
    with pytest.raises(PipelineError) as e:
        plan(flow.topology())
    assert str(e.value) == (
        f"{at('first')}: error: unknown field 'amout' in Withdrawal; did you mean 'amount'?\n"
        f"{at('second')}: error: source 'v' is never used: it has no sink and feeds no step")
    assert [d.rule for d in e.value.diagnostics] == ["type", "dangling"]


def test_diagnostic_text():
    d = Diagnostic("unknown field 'amout'", SourceLocation("f.flow", 3, 9), "did you mean 'amount'?")
    assert str(d) == "f.flow:3:9: error: unknown field 'amout'; did you mean 'amount'?"
    assert str(Diagnostic("no hint", SourceLocation("f.py", 2, 0))) == "f.py:2: error: no hint"
