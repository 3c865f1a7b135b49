"""Split a planned topology into sub-topologies at topic boundaries, numbered in dependency order.

Edges that leave a repartition or through node cross a topic: removing them
and taking weakly connected components gives the sub-topologies. A boundary
node stays with its writers; its readers start the next sub-topology.

Numbering follows the data: a sub-topology that reads a topic another one writes
(a repartition, a through topic, or a sink topic the pipeline reads back) comes after
it. Independent ones are ordered by their agent's name (their alphabetically first
entry). Sub-topologies that feed each other in a circle (a self-join whose one
side is repartitioned reads its own topic; two can also read each other's) are
placed together, at the place of the first of them, in name order.

Before (orders: the join reads the repartition the `orders` side writes)::

    customers, enriched.left.repartition -> enriched ...   orders -> enriched.left_key -> [topic]

After: ``Sub-topology 0: agent orders``, ``Sub-topology 1: agent customers``.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..ir import nodes as n
from ..ir.topology import Topology
from .naming import agent_name

BOUNDARY = (n.Repartition, n.Through)


def crossing_readers(crossing: dict[str, list[str]]) -> dict[str, list[str]]:
    """boundary -> its readers, from reader -> boundaries."""
    out: dict[str, list[str]] = {}
    for reader, boundaries in sorted(crossing.items()):
        for boundary in boundaries:
            out.setdefault(boundary, []).append(reader)
    return out


def written_topics(node: n.Node) -> list[str]:
    """The topics a (possibly fused) node writes."""
    if isinstance(node, n.Fused):
        return [t for step in node.steps for t in written_topics(step)]
    if isinstance(node, n.Sink) and node.sink == "topic":
        return [node.target]
    if isinstance(node, n.Echo):
        return list(node.topics)
    if isinstance(node, (n.Repartition, n.Through)):
        return [node.topic]
    return []


@dataclass(frozen=True)
class SubTopology:
    index: int
    name: str  # its agent's name
    nodes: tuple[str, ...]  # topological order
    #: (reader node, topic) for each topic-reading entry point: sources, tables, boundaries read here
    entries: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]  # the topics it writes, sorted


def split_subtopologies(topology: Topology) -> tuple[SubTopology, ...]:
    graph = nx.MultiDiGraph(topology.graph)
    crossing: dict[str, list[str]] = {}
    for name in topology.order():
        if isinstance(topology.node(name), BOUNDARY):
            for target in topology.successors(name):
                crossing.setdefault(target, []).append(name)
                graph.remove_edges_from([(name, target, k) for k in list(graph[name][target])])
    for readers in crossing_readers(crossing).values():
        # Readers of one topic share a consumer and a decode: keep them in one sub-topology.
        for other in readers[1:]:
            graph.add_edge(readers[0], other)
    position = {name: i for i, name in enumerate(topology.order())}
    parts = []
    for component in nx.weakly_connected_components(graph):
        names = sorted(component, key=position.__getitem__)
        entries: list[tuple[str, str]] = []
        for name in names:
            node = topology.node(name)
            if isinstance(node, (n.Source, n.TableSource)):
                entries.append((name, node.topic))
            for boundary in crossing.get(name, []):
                entries.append((boundary, topology.node(boundary).topic))  # type: ignore[attr-defined]
        outputs = sorted({t for name in names for t in written_topics(topology.node(name))})
        parts.append(SubTopology(-1, agent_name([e for e, _ in entries], names), tuple(names),
                                 tuple(sorted(set(entries), key=lambda e: (e[1], e[0]))), tuple(outputs)))
    ordered = dependency_order(parts)
    return tuple(SubTopology(i, s.name, s.nodes, s.entries, s.outputs) for i, s in enumerate(ordered))


def dependency_order(parts: list[SubTopology]) -> list[SubTopology]:
    """Writers before readers; ties, and the members of a circle, by name.

    >>> a = SubTopology(-1, "a", ("a",), (("a", "t2"),), ("t1",))
    >>> b = SubTopology(-1, "b", ("b",), (("b", "t1"),), ("t2",))
    >>> c = SubTopology(-1, "c", ("c",), (("c", "in"),), ("t2",))
    >>> [s.name for s in dependency_order([b, a, c])]
    ['c', 'a', 'b']
    """
    by_name = {s.name: s for s in parts}
    readers: dict[str, set[str]] = {}
    for s in parts:
        for _, topic in s.entries:
            readers.setdefault(topic, set()).add(s.name)
    feeds = nx.DiGraph()
    feeds.add_nodes_from(by_name)
    for s in parts:
        feeds.add_edges_from((s.name, r) for t in s.outputs for r in readers.get(t, ()) if r != s.name)
    circles = nx.condensation(feeds)  # one node per circle (or single sub-topology), members in 'members'
    first = {c: min(circles.nodes[c]["members"]) for c in circles}
    order = nx.lexicographical_topological_sort(circles, key=first.__getitem__)
    return [by_name[name] for c in order for name in sorted(circles.nodes[c]["members"])]
