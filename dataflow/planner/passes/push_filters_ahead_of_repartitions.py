"""Move a filter from just after an internal repartition to just before it.

Before: ``group_by -> repartition -> filter(amount > 10) -> aggregate``
After:  ``group_by -> filter(amount > 10) -> repartition -> aggregate``

Records dropped early never cross the topic. It keeps the meaning because a
repartition changes neither key nor value; only a filter that reads the
record's position (`_partition`, `_offset`, `_topic`) stays where it is, and
only when the repartition feeds nothing but that filter.
"""
from __future__ import annotations

from ...ir import nodes as n
from ...ir.expr import Meta, walk
from ...ir.topology import Edge, Topology

POSITION_FIELDS = {"partition", "offset", "topic"}


def push_filters_ahead_of_repartitions(topology: Topology) -> Topology:
    out = topology.copy()
    moved = True
    while moved:
        moved = False
        for name in out.order():
            node = out.node(name)
            if not isinstance(node, n.Repartition):
                continue
            succ = out.successors(name)
            if len(succ) != 1 or len(out.outputs(name)) != 1:
                continue
            candidate = out.node(succ[0])
            if not isinstance(candidate, n.Filter) or len(out.inputs(candidate.name)) != 1:
                continue
            if any(isinstance(e, Meta) and e.name in POSITION_FIELDS for e in walk(candidate.predicate)):
                continue
            _swap(out, node.name, candidate.name)
            moved = True
            break
    return out


def _swap(topology: Topology, repartition: str, filt: str) -> None:
    """pred -> R -> F -> succ  becomes  pred -> F -> R -> succ."""
    ins = topology.inputs(repartition)
    outs = topology.outputs(filt)
    for edge in ins:
        topology.disconnect(edge.source, repartition)
    topology.disconnect(repartition, filt)
    for target, _edge in outs:
        topology.disconnect(filt, target)
    for edge in ins:
        topology.connect(edge, filt)
    topology.connect(Edge(filt), repartition)
    for target, edge in outs:
        topology.connect(Edge(repartition, None, edge.side), target)
