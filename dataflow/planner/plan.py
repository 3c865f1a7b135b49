"""`ExecutionPlan`: what the runtime starts — agents, topics and state stores.

>>> from dataflow import Flow, col, agg
>>> flow = Flow("wc")
>>> _ = flow.source("lines").group_by("word").count(name="counts")
>>> p = build_plan(flow.topology())
>>> [a.name for a in p.agents], [t.name for t in p.topics if t.internal]
(['lines', 'lines.by_word.repartition'], ['wc-counts-changelog', 'wc-dead-letters', 'wc-lines.by_word-repartition'])

Agents are numbered writers first (see `split_subtopologies`); every internal topic and
store is named by `planner.naming`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.callables import TRUSTED, ImportPolicy
from ..ir.diagnostics import PipelineError
from ..ir.schema import StreamSchema, infer_schemas
from ..ir.settings import Settings
from ..ir.topology import Topology
from ..ir.types import ANY, Type
from .naming import buffers_events, changelog_topic, dead_letter_topic, join_store, window_events_store
from .passes import PASSES
from .split_subtopologies import SubTopology, split_subtopologies
from .validate import check


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    role: str  # source | table-source | sink | echo | through | repartition | changelog | dead-letter
    internal: bool
    compacted: bool = False
    key_type: Type = ANY
    value_type: Type = ANY
    serializer: str = "json"


@dataclass(frozen=True)
class StorePlan:
    name: str
    node: str
    kind: str  # aggregate | table | join-window
    changelog: str
    partitions: int
    key_type: Type
    value_type: Type
    window: n.Window | None = None


@dataclass(frozen=True)
class AgentPlan:
    """One sub-topology, run as one agent."""

    name: str
    index: int
    source_topics: tuple[str, ...]
    entries: tuple[tuple[str, str], ...]  # (node that reads, topic)
    nodes: tuple[str, ...]
    output_topics: tuple[str, ...]
    stores: tuple[str, ...]
    partitions: int
    concurrency: int


@dataclass(frozen=True)
class ExecutionPlan:
    name: str
    settings: Settings
    topology: Topology  # after the passes
    schemas: dict[str, StreamSchema]
    agents: tuple[AgentPlan, ...]
    topics: tuple[TopicPlan, ...]
    stores: tuple[StorePlan, ...]

    def topic(self, name: str) -> TopicPlan:
        return next(t for t in self.topics if t.name == name)

    def store(self, name: str) -> StorePlan:
        return next(s for s in self.stores if s.name == name)

    def agent_of(self, node: str) -> AgentPlan:
        return next(a for a in self.agents if node in a.nodes)


def run_passes(topology: Topology) -> Topology:
    for p in PASSES:
        topology = p(topology)
    return topology


def build_plan(topology: Topology, imports: ImportPolicy = TRUSTED) -> ExecutionPlan:
    """Validate, run the passes, split into agents and name every topic and store.

    ``imports`` says what validating may import of the Python code the pipeline names."""
    diagnostics = check(topology, imports)
    if diagnostics:
        raise PipelineError(diagnostics)
    planned = run_passes(topology)
    schemas, errors = infer_schemas(planned)
    if errors:
        raise PipelineError(errors)
    subs = split_subtopologies(planned)
    stores = _stores(planned, schemas)
    topics = _topics(planned, schemas, stores)
    agents = tuple(_agent(planned, schemas, sub, stores) for sub in subs)
    return ExecutionPlan(planned.name, planned.settings, planned, schemas, agents, topics, stores)


def _agent(topology: Topology, schemas: dict[str, StreamSchema], sub: SubTopology,
           stores: tuple[StorePlan, ...]) -> AgentPlan:
    names = set(sub.nodes)
    entry_nodes = [name for name, _ in sub.entries]
    partitions = max((schemas[e].partitions for e in entry_nodes if e in schemas), default=topology.settings.partitions)
    return AgentPlan(
        name=sub.name, index=sub.index,
        source_topics=tuple(sorted({t for _, t in sub.entries})),
        entries=sub.entries,
        nodes=sub.nodes,
        output_topics=sub.outputs,
        stores=tuple(sorted(s.name for s in stores if s.node in names)),
        partitions=partitions,
        concurrency=topology.settings.concurrency,
    )


def _stores(topology: Topology, schemas: dict[str, StreamSchema]) -> tuple[StorePlan, ...]:
    app = topology.name
    out: list[StorePlan] = []
    for node in topology.nodes():
        schema = schemas[node.name]
        if isinstance(node, (n.Aggregate, n.ToTable)):
            window = next((topology.node(p) for p in topology.predecessors(node.name)
                           if isinstance(topology.node(p), n.Window)), None)
            out.append(StorePlan(node.name, node.name, "aggregate" if isinstance(node, n.Aggregate) else "table",
                                 changelog_topic(app, node.name), schema.partitions, schema.key, schema.value,
                                 window))  # type: ignore[arg-type]
            if buffers_events(window):
                events = window_events_store(node.name)
                out.append(StorePlan(events, node.name, "window-events", changelog_topic(app, events),
                                     schema.partitions, schema.key, ANY))
        elif isinstance(node, n.TableSource):
            # The source topic already holds the latest value per key: it is the changelog.
            out.append(StorePlan(node.name, node.name, "table", node.topic, schema.partitions, schema.key,
                                 schema.value))
        elif isinstance(node, n.Join) and node.within_ms is not None:
            for side in ("left", "right"):
                src = next(e.source for e in topology.inputs(node.name) if e.side == side)
                store = join_store(node.name, side)
                out.append(StorePlan(store, node.name, "join-window", changelog_topic(app, store),
                                     schemas[src].partitions, schemas[src].key, schemas[src].value))
    return tuple(sorted(out, key=lambda s: s.name))


def _topics(topology: Topology, schemas: dict[str, StreamSchema], stores: tuple[StorePlan, ...]) -> tuple[TopicPlan, ...]:
    default = topology.settings.partitions
    found: dict[str, TopicPlan] = {}

    def add(t: TopicPlan) -> None:
        found.setdefault(t.name, t)

    def walk(node: n.Node, schema: StreamSchema) -> None:
        if isinstance(node, n.Fused):
            for step in node.steps:
                walk(step, schema)
        elif isinstance(node, n.Source):
            add(TopicPlan(node.topic, node.partitions or default, "source", False, False, node.key_type,
                          node.value_type, node.serializer))
        elif isinstance(node, n.TableSource):
            add(TopicPlan(node.topic, node.partitions or default, "table-source", False, True, node.key_type,
                          node.value_type, node.serializer))
        elif isinstance(node, n.Repartition):
            add(TopicPlan(node.topic, node.partitions, "repartition", True, False, schema.key, schema.value))
        elif isinstance(node, n.Through):
            add(TopicPlan(node.topic, schema.partitions, "through", False, False, schema.key, schema.value,
                          node.serializer))
        elif isinstance(node, n.Sink) and node.sink == "topic":
            add(TopicPlan(node.target, node.partitions or default, "sink", False, False, schema.key,
                          node.value_type or schema.value, node.serializer))
        elif isinstance(node, n.Echo):
            for t in node.topics:
                add(TopicPlan(t, default, "echo", False, False, schema.key, schema.value, node.serializer))

    for node in topology.nodes():
        walk(node, schemas[node.name])
    for store in stores:
        if store.changelog not in found:
            add(TopicPlan(store.changelog, store.partitions, "changelog", True, True, store.key_type,
                          store.value_type))
    dlq = dead_letter_topic(topology.name)
    add(TopicPlan(dlq, 1, "dead-letter", True, False))
    return tuple(sorted(found.values(), key=lambda t: t.name))
