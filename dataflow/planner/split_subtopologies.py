"""Split a planned topology into sub-topologies at topic boundaries.

Edges that leave a repartition or through node cross a topic: removing them
and taking weakly connected components gives the sub-topologies. A boundary
node stays with its writers; its readers start the next sub-topology. They are
numbered in topological order, ties broken by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..ir import nodes as n
from ..ir.topology import Topology

BOUNDARY = (n.Repartition, n.Through)


def crossing_readers(crossing: dict[str, list[str]]) -> dict[str, list[str]]:
    """boundary -> its readers, from reader -> boundaries."""
    out: dict[str, list[str]] = {}
    for reader, boundaries in sorted(crossing.items()):
        for boundary in boundaries:
            out.setdefault(boundary, []).append(reader)
    return out


@dataclass(frozen=True)
class SubTopology:
    index: int
    nodes: tuple[str, ...]  # topological order
    #: (reader node, topic) for each topic-reading entry point: sources, tables, boundaries read here
    entries: tuple[tuple[str, str], ...]


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
    components = sorted((sorted(c, key=position.__getitem__) for c in nx.weakly_connected_components(graph)),
                        key=lambda c: position[c[0]])
    subs = []
    for index, names in enumerate(components):
        entries: list[tuple[str, str]] = []
        for name in names:
            node = topology.node(name)
            if isinstance(node, (n.Source, n.TableSource)):
                entries.append((name, node.topic))
            for boundary in crossing.get(name, []):
                entries.append((boundary, topology.node(boundary).topic))  # type: ignore[attr-defined]
        subs.append(SubTopology(index, tuple(names), tuple(sorted(set(entries), key=lambda e: (e[1], e[0])))))
    return tuple(subs)
