"""`Topology`: the pipeline as a networkx MultiDiGraph of IR nodes.

Graph node ids are node names; each graph node holds its IR node under `node`.
Edges may carry `port` (which branch of a Branch they leave from) and `side`
(which input of a Join they enter). Iteration is always in a deterministic
topological order with names as the tie-break.

>>> from .nodes import Source, Filter
>>> from .expr import Literal
>>> t = Topology("app")
>>> t.add(Source("clicks", topic="clicks"))
>>> t.add(Filter("clicks.filter", predicate=Literal(True)), [Edge("clicks")])
>>> [n.name for n in t.nodes()]
['clicks', 'clicks.filter']
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import networkx as nx

from .nodes import Node
from .settings import Settings


@dataclass(frozen=True, order=True)
class Edge:
    """An input of a node: the upstream node's name and the edge's labels."""

    source: str
    port: str | None = None
    side: str | None = None


class Topology:
    def __init__(self, name: str, settings: Settings | None = None, graph: nx.MultiDiGraph | None = None):
        self.name = name
        self.settings = settings or Settings()
        self.graph: nx.MultiDiGraph = graph if graph is not None else nx.MultiDiGraph()

    # ------------------------------------------------------------------ building
    def add(self, node: Node, inputs: list[Edge] | tuple[Edge, ...] = ()) -> None:
        if node.name in self.graph:
            raise KeyError(f"a node named '{node.name}' already exists")
        self.graph.add_node(node.name, node=node)
        for edge in inputs:
            self.connect(edge, node.name)

    def connect(self, edge: Edge, target: str) -> None:
        self.graph.add_edge(edge.source, target, key=_edge_key(edge), port=edge.port, side=edge.side)

    def disconnect(self, source: str, target: str) -> None:
        self.graph.remove_edges_from([(source, target, k) for k in list(self.graph[source][target])])

    def replace(self, node: Node) -> None:
        """Swap the IR node stored under an existing name."""
        self.graph.nodes[node.name]["node"] = node

    def remove(self, name: str) -> None:
        self.graph.remove_node(name)

    def rename(self, old: str, node: Node) -> None:
        """Replace node `old` with `node` (which has a new name), keeping every edge."""
        ins = self.inputs(old)
        outs = self.outputs(old)
        self.graph.remove_node(old)
        self.add(node, ins)
        for target, edge in outs:
            self.connect(Edge(node.name, edge.port, edge.side), target)

    def copy(self) -> "Topology":
        return Topology(self.name, self.settings, self.graph.copy())

    def with_settings(self, settings: Settings) -> "Topology":
        return Topology(self.name, settings, self.graph.copy())

    # ------------------------------------------------------------------ reading
    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def node(self, name: str) -> Node:
        return self.graph.nodes[name]["node"]

    def nodes(self) -> list[Node]:
        """Every node, in topological order, ties broken by name."""
        return [self.node(n) for n in self.order()]

    def order(self) -> list[str]:
        return list(nx.lexicographical_topological_sort(self.graph))

    def inputs(self, name: str) -> list[Edge]:
        """Upstream edges of `name`, left before right, then by name."""
        edges = [Edge(src, data.get("port"), data.get("side"))
                 for src, _, data in self.graph.in_edges(name, data=True)]
        return sorted(edges, key=lambda e: (e.side or "", e.source, e.port or ""))

    def outputs(self, name: str) -> list[tuple[str, Edge]]:
        """Downstream (target, edge) pairs of `name`, sorted."""
        out = [(dst, Edge(name, data.get("port"), data.get("side")))
               for _, dst, data in self.graph.out_edges(name, data=True)]
        return sorted(out, key=lambda pair: (pair[0], pair[1].port or "", pair[1].side or ""))

    def predecessors(self, name: str) -> list[str]:
        return [e.source for e in self.inputs(name)]

    def successors(self, name: str) -> list[str]:
        return sorted({dst for dst, _ in self.outputs(name)})

    def edges(self) -> Iterator[tuple[Edge, str]]:
        for name in self.order():
            for target, edge in self.outputs(name):
                yield edge, target

    def is_acyclic(self) -> bool:
        return nx.is_directed_acyclic_graph(self.graph)

    def cycle(self) -> list[str]:
        try:
            return [u for u, _v, *_ in nx.find_cycle(self.graph)]
        except nx.NetworkXNoCycle:
            return []

    def map_nodes(self, fn) -> "Topology":  # type: ignore[no-untyped-def]
        """A copy with `fn(node)` stored in place of each node (names must not change)."""
        out = self.copy()
        for name in out.graph.nodes:
            new = fn(out.node(name))
            assert new.name == name, "map_nodes must not rename"
            out.graph.nodes[name]["node"] = new
        return out


def _edge_key(edge: Edge) -> str:
    return f"{edge.port or ''}|{edge.side or ''}"


__all__ = ["Topology", "Edge", "replace"]
