"""compile_agent: steps, fused loops, branches, outputs and errors, without a transport."""
from __future__ import annotations

import pytest

from dataflow import Flow, Record, col, fn
from dataflow.planner import plan as build_plan
from dataflow.runtime.engine import BranchStep, Chain, OutputStep, Passthrough, compile_agent
from dataflow.transport.base import Message


class Payment(Record):
    account: str
    amount: float


def rec(v, k=None, ts=0):
    return (k, v, ts, None)


class Collect:
    def __init__(self):
        self.dead = []

    def __call__(self, record, error, node):
        self.dead.append((record[1], type(error).__name__, node))


def test_a_fused_chain_is_one_generated_loop():
    flow = Flow("e", partitions=1)
    (flow.source("p", value=Payment).filter(col("amount") > 10)
         .map({"account": fn.upper(col("account")), "inv": 100 / col("amount")}, name="inv").to("out"))
    plan = build_plan(flow.topology())
    dead = Collect()
    agent = compile_agent(plan, plan.agents[0], dead)
    kinds = {name: type(step).__name__ for name, step in agent.steps.items()}
    assert sorted(kinds.values()) == ["Chain", "OutputStep", "Passthrough"]
    assert [o.target for o in agent.outputs] == ["out"]
    [entry] = agent.entries["p"]
    assert isinstance(entry, Passthrough)
    entry.push([rec({"account": "a", "amount": 50.0}), rec({"account": "b", "amount": 5.0}),
                rec({"account": "c", "amount": 20.0})])
    assert [r[1] for r in agent.outputs[0].records] == [{"account": "A", "inv": 2.0}, {"account": "C", "inv": 5.0}]
    chain = next(s for s in agent.steps.values() if isinstance(s, Chain))
    assert chain.events == 3
    assert dead.dead == []


def test_a_raising_record_is_handed_to_dead_and_the_batch_goes_on():
    flow = Flow("e", partitions=1)
    flow.source("n", value=int).map(col("_value") * 0 + 10 / col("_value"), name="inv").to("out")
    plan = build_plan(flow.topology())
    dead = Collect()
    agent = compile_agent(plan, plan.agents[0], dead)
    agent.entries["n"][0].push([rec(2), rec(0), rec(5)])
    assert [r[1] for r in agent.outputs[0].records] == [5.0, 2.0]
    assert dead.dead == [(0, "ZeroDivisionError", "inv")]


def test_group_by_sets_the_key_and_writes_the_repartition_output():
    flow = Flow("e", partitions=2)
    flow.source("p", value=Payment).group_by(fn.upper(col("account")), name="by").to("out")
    plan = build_plan(flow.topology())
    first = compile_agent(plan, plan.agents[0], Collect())
    first.entries["p"][0].push([rec({"account": "x", "amount": 1.0}, k="old", ts=7)])
    [output] = first.outputs
    assert output.target == "e-by-repartition"
    assert [(r[0], r[2]) for r in output.records] == [("X", 7)]
    second = compile_agent(plan, plan.agents[1], Collect())
    assert isinstance(second.entries["e-by-repartition"][0], OutputStep)


def test_branch_routes_to_the_first_matching_port():
    flow = Flow("e", partitions=1)
    b = flow.source("n", value=int).branch(big=col("_value") > 100, pos=col("_value") > 0, default="rest",
                                            name="route")
    b.big.to("big")
    b.pos.to("pos")
    b.rest.to("rest")
    plan = build_plan(flow.topology())
    agent = compile_agent(plan, plan.agents[0], Collect())
    assert isinstance(agent.steps["route"], BranchStep)
    agent.entries["n"][0].push([rec(x) for x in (500, 5, -5, 101, 0)])
    got = {o.target: [r[1] for r in o.records] for o in agent.outputs}
    assert got == {"big": [500, 101], "pos": [5], "rest": [-5, 0]}


def test_echo_outputs_are_collected_inside_the_chain():
    flow = Flow("e", partitions=1)
    flow.source("n", value=int).echo("copy").filter(col("_value") > 1).to("out")
    plan = build_plan(flow.topology())
    agent = compile_agent(plan, plan.agents[0], Collect())
    agent.entries["n"][0].push([rec(x) for x in (1, 2, 3)])
    got = {o.target: [r[1] for r in o.records] for o in agent.outputs}
    assert got == {"copy": [1, 2, 3], "out": [2, 3]}


def test_sub_topologies_sharing_a_name_compile_separately():
    # Several readers of one repartition topic become agents that share the topic's name.
    flow = Flow("e", partitions=1)
    s = flow.source("n", value=int).group_by(col("_value"), name="k")
    s.to("a")
    s.to("b")
    plan = build_plan(flow.topology())
    later = [a for a in plan.agents if a.index > 0]
    targets = sorted(o.target for a in later for o in compile_agent(plan, a, Collect()).outputs)
    assert targets == ["a", "b"]


def test_stateful_steps_compile_against_the_tables_they_are_given():
    from dataflow.runtime.state import make_tables
    from dataflow.runtime.stateful import AggregateStep
    from dataflow.state.table import memory_partition

    flow = Flow("e", partitions=1)
    flow.source("n", value=int).group_by(col("_value"), name="k").count(name="counts").to("out")
    plan = build_plan(flow.topology())
    agent = next(a for a in plan.agents if "counts" in a.nodes)
    tables = make_tables(plan)
    tables["counts"].partitions[0] = memory_partition("counts", 0)
    compiled = compile_agent(plan, agent, Collect(), tables)
    assert isinstance(compiled.steps["counts"], AggregateStep)
    meta = Message("e-k-repartition", 0, 0, None, None, 0)
    compiled.steps["counts"].push([(7, 7, 0, meta), (7, 7, 0, meta), (8, 8, 0, meta)])
    assert tables["counts"].rows() == [(7, {"count": 2}), (8, {"count": 1})]
