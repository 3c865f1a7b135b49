"""`| call agent "pkg.mod:agent" [-> TYPE]` and `| to agent "pkg.mod:agent"`: Python agents in `.flow`,
the same nodes as the builder's, their layout and their mistakes."""
from __future__ import annotations

import pytest

from dataflow import Flow, Record
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import check, plan
from dataflow.planner.render import to_json

pytestmark = pytest.mark.usefixtures("examples_importable")  # the agents are examples/storefront/pricing.py

HEADER = """\
pipeline quotes
record Order { order_id: str, item: str, quantity: int }
record Quote { order_id: str, item: str, total: float }
topic orders: Order key str
topic quotes
"""


def flow_of(body: str) -> Flow:
    return parse_flow(HEADER + body, "q.flow")


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        flow_of(body)
    return str(info.value)


class Order(Record):
    order_id: str
    item: str
    quantity: int


class Quote(Record):
    order_id: str
    item: str
    total: float


def test_the_stage_and_the_sink_are_the_builders_nodes_at_their_source_positions() -> None:
    flow = flow_of('stream priced = orders | call agent "storefront.pricing:quote" -> Quote\n'
                   'priced | to topic quotes\n'
                   'priced | to agent "storefront.pricing:audit"\n')
    call, sink = flow.topology().node("priced"), flow.topology().node("priced.to_agent_audit")
    assert (call.kind, call.target, call.value_type.render(), str(call.loc)) == \
        ("call_agent", "storefront.pricing:quote", "Quote", "q.flow:6:26")
    assert (sink.sink, sink.target, str(sink.loc)) == ("agent", "storefront.pricing:audit", "q.flow:8:10")

    builder = Flow("quotes")
    priced = builder.source("orders", key=str, value=Order).call_agent("storefront.pricing:quote", output=Quote,
                                                                       name="priced")
    priced.to("quotes")
    priced.to_agent("storefront.pricing:audit")
    assert to_json(plan(flow.topology()), locations=False) == to_json(plan(builder.topology()), locations=False)


def test_without_a_type_the_reply_is_any_and_a_table_sends_its_changes() -> None:
    flow = flow_of('table latest = orders | to_table\n'
                   'latest.changes | call agent "storefront.pricing:quote" | filter total > 1 | to topic quotes\n'
                   'latest | to agent "storefront.pricing:audit"\n')
    topology = flow.topology()
    assert topology.node("latest.call_quote").value_type.render() == "any"
    assert topology.predecessors("latest.to_agent_audit") == ["latest.changes_2"]
    assert check(topology) == []


def test_fmt_prints_agents_canonically_and_round_trips() -> None:
    text = HEADER + 'orders|call   agent  "storefront.pricing:quote"->Quote|filter total>=10|to agent "storefront.pricing:audit"\n'
    once = format_source(text)
    assert once.splitlines()[-4:] == [
        "orders",
        '  | call agent "storefront.pricing:quote" -> Quote',
        "  | filter total >= 10",
        '  | to agent "storefront.pricing:audit"',
    ]
    assert format_source(once) == once
    assert to_json(plan(parse_flow(once).topology()), locations=False) == \
        to_json(plan(parse_flow(text).topology()), locations=False)
    short = 'orders | call agent "storefront.pricing:quote" | to topic quotes\n'
    assert format_source(HEADER + short).endswith("\n" + short)


def test_an_agent_path_that_is_not_an_import_path() -> None:
    assert report('orders | call agent "storefront/pricing.py" | to topic quotes\n') == (
        "q.flow:6:21: error: 'storefront/pricing.py' is not an agent's import path; "
        'write it as "package.module:agent"\n'
        'orders | call agent "storefront/pricing.py" | to topic quotes\n'
        "                    ^" + "~" * 22)


def test_an_agent_that_cannot_be_loaded_is_reported_at_its_stage() -> None:
    lines = report('orders | call agent "storefront.pricing:qoute" | to topic quotes\n'
                   'orders | to agent "storefront.prices:audit"\n').splitlines()
    assert lines == [
        "q.flow:6:10: error: cannot load agent \"storefront.pricing:qoute\": 'qoute' is not a dataflow agent in module "
        "'storefront.pricing'; agents there: audit, quote",
        'orders | call agent "storefront.pricing:qoute" | to topic quotes',
        "         ^" + "~" * (len('call agent "storefront.pricing:qoute"') - 1),
        "q.flow:7:10: error: cannot load agent \"storefront.prices:audit\": cannot import module 'storefront.prices': No module "
        "named 'storefront.prices'; an agent is named by its import path, \"package.module:agent\", found from the "
        "working directory or the pipeline file's directory",
        'orders | to agent "storefront.prices:audit"',
        "         ^" + "~" * (len('to agent "storefront.prices:audit"') - 1),
    ]


def test_nothing_follows_an_agent_sink_and_call_needs_agent() -> None:
    assert report('orders | to agent "storefront.pricing:audit" | to topic quotes\n').splitlines()[0] == \
        "q.flow:6:48: error: nothing can follow a sink; 'to topic' comes after it; " \
        "start another pipe from a named stream instead"
    assert report('orders | call "storefront.pricing:quote" | to topic quotes\n').splitlines()[0].startswith(
        "q.flow:6:15: error: unexpected string \"storefront.pricing:quote\"; expected 'agent'")
