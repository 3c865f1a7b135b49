"""Internal topic and store names, derived only from node ids (never from counters).

>>> repartition_topic("fraud", "large.by_account_id")
'fraud-large.by_account_id-repartition'
>>> changelog_topic("fraud", "per_account")
'fraud-per_account-changelog'
"""
from __future__ import annotations

from ..ir import nodes as n
from ..ir.topology import Topology


def repartition_topic(app: str, owner: str) -> str:
    return f"{app}-{owner}-repartition"


def changelog_topic(app: str, store: str) -> str:
    return f"{app}-{store}-changelog"


def dead_letter_topic(app: str) -> str:
    return f"{app}-dead-letters"


def join_store(join: str, side: str) -> str:
    return f"{join}.{side}"


def window_events_store(aggregate: str) -> str:
    """The store of a sliding or session window aggregate's buffered events (its windows are rebuilt from them)."""
    return f"{aggregate}.events"


def internal_topic_names(topology: Topology, node: n.Node) -> list[str]:
    """The internal topics a node will own once planned (for collision checks)."""
    app = topology.name
    if isinstance(node, n.GroupBy) and node.repartition:
        return [repartition_topic(app, node.name)]
    if isinstance(node, n.Repartition):
        return [node.topic]
    if isinstance(node, (n.Aggregate, n.ToTable)):
        names = [changelog_topic(app, node.name)]
        if _buffers_events(topology, node):
            names.append(changelog_topic(app, window_events_store(node.name)))
        return names
    return []


def buffers_events(window: n.Node | None) -> bool:
    """Does this window keep its events in a second store (sliding and session windows)?"""
    return isinstance(window, n.Window) and window.window in ("sliding", "session")


def _buffers_events(topology: Topology, node: n.Node) -> bool:
    return any(buffers_events(topology.node(p))
               for p in topology.predecessors(node.name))
