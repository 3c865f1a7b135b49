"""Every name the planner adds: internal topics, stores and planner steps, derived from node ids only.

One scheme covers them all. A planner-added *thing* is owned by a node, or by a part of a
node written ``<node>.<part>`` (the left side of join ``matched`` is ``matched.left``, the
buffered events of aggregate ``visits`` are ``visits.events``), so every owner is a dotted id:

* a store is named for its owner: ``per_account``, ``matched.left``, ``visits.events``;
* an internal topic is ``<pipeline>-<owner>-<role>``, the role last: ``repartition`` or
  ``changelog``; the pipeline's own dead-letter topic is ``<pipeline>-dead-letters``;
* the step the planner inserts for a repartition is ``<owner>.repartition``.

Dots nest (they never separate roles) and the role is always the last hyphen-separated word,
so two names of different roles never meet, and a name says who owns it. Nothing is counted:
a name changes only when its owner is renamed (or the pipeline is, for topics).

>>> repartition_topic("fraud", "large.by_account_id")
'fraud-large.by_account_id-repartition'
>>> repartition_topic("orders", join_side("enriched", "left"))
'orders-enriched.left-repartition'
>>> changelog_topic("fraud", "per_account")
'fraud-per_account-changelog'
>>> dead_letter_topic("fraud")
'fraud-dead-letters'
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.schema import StreamSchema
from ..ir.topology import Topology

JOIN_SIDES = ("left", "right")


def repartition_topic(app: str, owner: str) -> str:
    return f"{app}-{owner}-repartition"


def repartition_step(owner: str) -> str:
    """The planner's step that writes `owner`'s repartition topic."""
    return f"{owner}.repartition"


def changelog_topic(app: str, store: str) -> str:
    return f"{app}-{store}-changelog"


def dead_letter_topic(app: str) -> str:
    return f"{app}-dead-letters"


def join_side(join: str, side: str) -> str:
    """The owner id of one side of a join: its repartition and, for two streams, its store."""
    return f"{join}.{side}"


def join_store(join: str, side: str) -> str:
    """The buffered records of one side of a stream-stream join."""
    return join_side(join, side)


def window_events_store(aggregate: str) -> str:
    """The store of a sliding or session window aggregate's buffered events (its windows are rebuilt from them)."""
    return f"{aggregate}.events"


def agent_name(entries: list[str], nodes: list[str]) -> str:
    """A sub-topology's agent is named after its alphabetically first entry (a source, a table or a
    topic boundary it reads), or its first node when it reads no topic (a timer)."""
    return min(entries) if entries else nodes[0]


@dataclass(frozen=True)
class Owned:
    """A name the planner gives to something of `owner` (a node id)."""

    kind: str  # topic | store | step
    name: str
    owner: str
    what: str  # what it is, for messages: "the repartition topic", "the changelog", ...


def owned_names(topology: Topology, node: n.Node, schemas: dict[str, StreamSchema] | None = None) -> list[Owned]:
    """Every name the planner may give to a thing of `node`, whether or not this plan needs it.

    Repartitions before a stateful step or on a join side are inserted only when the input is
    re-keyed or partitioned differently; their names are reserved all the same, so that a
    change elsewhere (a re-key upstream, a partition count) cannot make two names clash.
    A join side that is a table never moves and reserves nothing (``schemas`` say which sides are).

    >>> from dataflow import Flow
    >>> flow = Flow("wc")
    >>> _ = flow.source("lines").group_by("word").count(name="counts")
    >>> t = flow.topology()
    >>> [(o.kind, o.name) for o in owned_names(t, t.node("lines.by_word"))]
    [('step', 'lines.by_word.repartition'), ('topic', 'wc-lines.by_word-repartition')]
    """
    app = topology.name
    out: list[Owned] = []

    def repartition(owner: str, of: str) -> None:
        out.append(Owned("step", repartition_step(owner), node.name, f"the repartition step {of}"))
        out.append(Owned("topic", repartition_topic(app, owner), node.name, f"the repartition topic {of}"))

    def store(name: str, of: str) -> None:
        out.append(Owned("store", name, node.name, f"the store {of}"))
        out.append(Owned("topic", changelog_topic(app, name), node.name, f"the changelog of store '{name}'"))

    if isinstance(node, n.GroupBy) and node.repartition:
        repartition(node.name, f"of '{node.name}'")
    elif isinstance(node, n.Window) or (isinstance(node, (n.Aggregate, n.ToTable)) and not _after_window(topology, node)):
        repartition(node.name, f"before '{node.name}'")
    if isinstance(node, n.Repartition):
        out.append(Owned("topic", node.topic, node.name, f"the repartition topic of '{node.name}'"))
    if isinstance(node, (n.Aggregate, n.ToTable)):
        store(node.name, f"of '{node.name}'")
        if _buffers_events(topology, node):
            store(window_events_store(node.name), f"of the events of '{node.name}'")
    if isinstance(node, n.TableSource):
        out.append(Owned("store", node.name, node.name, f"the store of '{node.name}'"))
    if isinstance(node, n.Join):
        for edge in topology.inputs(node.name):
            schema = (schemas or {}).get(edge.source)
            if edge.side not in JOIN_SIDES or (schema is not None and schema.is_table):
                continue
            side = join_side(node.name, edge.side)
            repartition(side, f"of the {edge.side} side of '{node.name}'")
            if node.within_ms is not None:
                store(side, f"of the {edge.side} side of '{node.name}'")
    return out


def internal_topic_names(topology: Topology, node: n.Node, schemas: dict[str, StreamSchema] | None = None) -> list[str]:
    """The internal topics a node may own once planned (for collision checks)."""
    return [o.name for o in owned_names(topology, node, schemas) if o.kind == "topic"]


def buffers_events(window: n.Node | None) -> bool:
    """Does this window keep its events in a second store (sliding and session windows)?"""
    return isinstance(window, n.Window) and window.window in ("sliding", "session")


def _after_window(topology: Topology, node: n.Node) -> bool:
    """A windowed aggregate is repartitioned before its window, never between the two."""
    return any(isinstance(topology.node(p), n.Window) for p in topology.predecessors(node.name))


def _buffers_events(topology: Topology, node: n.Node) -> bool:
    return any(buffers_events(topology.node(p))
               for p in topology.predecessors(node.name))
