"""The duplicate-name rule: names the planner adds never meet a user's name, or each other.

The planner reserves names for what it adds (`naming.owned_names`): repartition topics and
steps, stores and their changelogs, the dead-letter topic. A user topic (a source, table,
sink, `through` or `echo` topic) or a user step with one of those names is an error at the
user's declaration; two steps whose reserved names meet are an error at the later one.

>>> from dataflow import Flow, col
>>> flow = Flow("shop")
>>> orders = flow.source("orders")
>>> orders.group_by("customer").count(name="n")
<Table n>
>>> orders.to("shop-orders.by_customer-repartition")
>>> [d.message for d in name_clashes(flow.topology())]
["topic 'shop-orders.by_customer-repartition' has the name of the repartition topic of 'orders.by_customer', which the planner adds"]
"""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.diagnostics import Diagnostic
from ..ir.schema import StreamSchema
from ..ir.topology import Topology
from .naming import Owned, dead_letter_topic, owned_names

REPORT_ORDER = ("store", "topic", "step")
TOPIC_HINT = ("rename the topic: PIPELINE-STEP-repartition, PIPELINE-STEP-changelog and PIPELINE-dead-letters "
              "are the names of the planner's topics")


def user_topics(node: n.Node) -> tuple[str, ...]:
    """The topics a user step reads or writes by name (the planner's own steps name none)."""
    if isinstance(node, (n.Source, n.TableSource, n.Through)):
        return (node.topic,)
    if isinstance(node, n.Sink) and node.sink == "topic":
        return (node.target,)
    if isinstance(node, n.Echo):
        return node.topics
    return ()


def name_clashes(topology: Topology, schemas: dict[str, StreamSchema] | None = None) -> list[Diagnostic]:
    nodes = topology.nodes()
    reserved: dict[tuple[str, str], Owned] = {}  # (kind, name) -> its first owner, in node order
    out: list[Diagnostic] = []
    clashed: set[tuple[str, str]] = set()
    for node in nodes:
        # A pair of steps is reported once, for what says most: a shared store, else a topic.
        for owned in sorted(owned_names(topology, node, schemas), key=lambda o: REPORT_ORDER.index(o.kind)):
            first = reserved.setdefault((owned.kind, owned.name), owned)
            if first.owner != owned.owner and (first.owner, owned.owner) not in clashed:
                clashed.add((first.owner, owned.owner))
                kind = "internal topic" if owned.kind == "topic" else owned.kind
                out.append(Diagnostic(f"'{owned.owner}' and '{first.owner}' would share the {kind} '{owned.name}'",
                                      node.loc, "give one of them another name=", rule="duplicate"))
    reserved[("topic", dead_letter_topic(topology.name))] = Owned(
        "topic", dead_letter_topic(topology.name), "", "the dead-letter topic of the pipeline")
    for node in nodes:
        for topic in user_topics(node):
            owned = reserved.get(("topic", topic))
            if owned is not None:
                out.append(Diagnostic(f"topic '{topic}' has the name of {owned.what}, which the planner adds",
                                      node.loc, TOPIC_HINT, rule="duplicate"))
        owned = reserved.get(("step", node.name))
        if owned is not None and not isinstance(node, n.Repartition):
            out.append(Diagnostic(f"step '{node.name}' has the name of {owned.what}, which the planner adds",
                                  node.loc, "give the step another name=", rule="duplicate"))
    return out
