"""Insert internal repartition topics where records must move to the partition of their key.

Before: ``orders -> group_by(customer) -> aggregate``
After:  ``orders -> group_by(customer) -> repartition[app-…by_customer-repartition] -> aggregate``

Names come from `planner.naming`: the repartition of step X is the step ``X.repartition``
writing ``APP-X-repartition``; a join side's owner is ``JOIN.left`` / ``JOIN.right``.

Also before a stateful step (aggregate, table, window) fed by a re-key that
was not repartitioned (`select_key`), and on a join side that is re-keyed or
has a different partition count than the side it must meet.
"""
from __future__ import annotations

from ...ir import nodes as n
from ...ir.schema import StreamSchema, infer_schemas
from ...ir.topology import Edge, Topology
from ..naming import join_side, repartition_step, repartition_topic


def insert_repartitions(topology: Topology) -> Topology:
    out = topology.copy()
    app = out.name
    schemas, _ = infer_schemas(out)
    # Partition counts come from the topology as given: once a repartition is inserted, a
    # group_by right after another one has a predecessor the schemas above do not know.
    group_bys = [(node, node.partitions or schemas[out.predecessors(node.name)[0]].partitions)
                 for node in out.nodes() if isinstance(node, n.GroupBy) and node.repartition]
    for node, parts in group_bys:
        _insert_after(out, node.name, n.Repartition(
            repartition_step(node.name), topic=repartition_topic(app, node.name), partitions=parts,
            reason="group_by", loc=node.loc))
    for name in out.order():
        node = out.node(name)
        schemas, _ = infer_schemas(out)
        if isinstance(node, (n.Aggregate, n.ToTable, n.Window)):
            if isinstance(node, n.Aggregate) and any(isinstance(out.node(p), n.Window) for p in out.predecessors(name)):
                continue  # the window before it was handled
            for edge in out.inputs(name):
                upstream = schemas.get(edge.source)
                if upstream is not None and not upstream.keyed:
                    _insert_before(out, name, edge, n.Repartition(
                        repartition_step(name), topic=repartition_topic(app, name), partitions=upstream.partitions,
                        reason=f"{node.kind} after re-key", loc=node.loc))
        elif isinstance(node, n.Join):
            _copartition_join(out, node, schemas)
    return out


def _copartition_join(out: Topology, node: n.Join, schemas: dict[str, StreamSchema]) -> None:
    app = out.name
    edges = {e.side: e for e in out.inputs(node.name)}
    left, right = schemas.get(edges["left"].source), schemas.get(edges["right"].source)
    if left is None or right is None:
        return
    # The table side cannot move (its store is keyed by its topic), so the stream side follows it.
    target = right.partitions if right.is_table else left.partitions
    for side, schema in (("left", left), ("right", right)):
        if schema.is_table:
            continue
        if not schema.keyed or schema.partitions != target:
            why = "re-keyed" if not schema.keyed else f"{schema.partitions} partitions, joined side has {target}"
            owner = join_side(node.name, side)
            _insert_before(out, node.name, edges[side], n.Repartition(
                repartition_step(owner), topic=repartition_topic(app, owner),
                partitions=target, reason=f"join {side} side ({why})", loc=node.loc))


def _insert_after(topology: Topology, name: str, new: n.Node) -> None:
    outs = topology.outputs(name)
    for target, edge in outs:
        topology.disconnect(name, target)
    topology.add(new, [Edge(name)])
    for target, edge in outs:
        topology.connect(Edge(new.name, None, edge.side), target)


def _insert_before(topology: Topology, name: str, edge: Edge, new: n.Node) -> None:
    """Reroute `edge.source -> name` through `new`, keeping the edge's port and side."""
    topology.graph.remove_edge(edge.source, name, key=f"{edge.port or ''}|{edge.side or ''}")
    topology.add(new, [Edge(edge.source, edge.port)])
    topology.connect(Edge(new.name, None, edge.side), name)
