"""Fuse chains of adjacent stateless operators into one step that runs over a batch.

Before: ``source -> filter -> map -> flat_map -> group_by``
After:  ``source -> fused[filter, map, flat_map] -> group_by``

A chain is fused only where each link is the only way out of one step and the
only way into the next, so fan-out, fan-in and branches stay visible.
"""
from __future__ import annotations

from ...ir import nodes as n
from ...ir.topology import Edge, Topology


def fuse_stateless(topology: Topology) -> Topology:
    out = topology.copy()
    for chain in _chains(out):
        steps = tuple(out.node(name) for name in chain)
        fused = n.Fused(f"{chain[0]}..{chain[-1]}", steps=steps, loc=steps[0].loc)
        ins = out.inputs(chain[0])
        outs = out.outputs(chain[-1])
        for name in chain:
            out.remove(name)
        out.add(fused, ins)
        for target, edge in outs:
            out.connect(Edge(fused.name, edge.port, edge.side), target)
    return out


def _fusible(node: n.Node) -> bool:
    return node.stateless and not isinstance(node, n.Fused)


def _chains(topology: Topology) -> list[list[str]]:
    chains: list[list[str]] = []
    seen: set[str] = set()
    for name in topology.order():
        if name in seen or not _fusible(topology.node(name)):
            continue
        preds = topology.inputs(name)
        if len(preds) == 1 and _linked(topology, preds[0].source, name):
            continue  # not the head of its chain
        chain = [name]
        while True:
            outs = topology.outputs(chain[-1])
            if len(outs) != 1:
                break
            nxt, edge = outs[0]
            if edge.port or edge.side or not _linked(topology, chain[-1], nxt):
                break
            chain.append(nxt)
        seen.update(chain)
        if len(chain) > 1:
            chains.append(chain)
    return chains


def _linked(topology: Topology, a: str, b: str) -> bool:
    """a -> b is a fusible link: both stateless, a's only exit, b's only entry."""
    if not (_fusible(topology.node(a)) and _fusible(topology.node(b))):
        return False
    outs = topology.outputs(a)
    ins = topology.inputs(b)
    return len(outs) == 1 and len(ins) == 1 and not outs[0][1].port and not ins[0].side
