"""Validation: one clear message per rule, each at the node's source location.

Rules: unknown field and type mismatch (from type propagation), cycle,
dangling stream, duplicate name, window without aggregation, join shape and
co-partitioning, sink type mismatch, bad window/aggregate parameters, timers
that never tick, numbers past their bounds (partitions, durations), and agents or Python
functions a pipeline cannot load or may not import.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass

from ..ir import nodes as n
from ..ir.bounds import duration_problem, partitions_problem
from ..ir.callables import TRUSTED, ImportPolicy, module_of
from ..ir.diagnostics import Diagnostic
from ..ir.durations import format_duration
from ..ir.location import SourceLocation
from ..ir.schema import StreamSchema, infer_schemas
from ..ir.topology import Topology
from .name_clashes import name_clashes

TERMINAL_KINDS = {"sink", "aggregate", "table", "table_source", "join"}


def check(topology: Topology, imports: ImportPolicy = TRUSTED) -> list[Diagnostic]:
    """Every problem in the pipeline, sorted by location; empty when it can be planned.

    Checking imports the Python code the pipeline names (to report what cannot be loaded);
    ``imports`` limits that (see :class:`~dataflow.ir.callables.ImportPolicy`), and
    :func:`not_imported` says what a check without imports leaves unverified.

    >>> from dataflow import Flow, col
    >>> flow = Flow("app")
    >>> _ = flow.source("clicks").filter(col("n") > 1, name="busy")
    >>> [d.message for d in check(flow.topology())]
    ["stream 'busy' is never used: it has no sink and feeds no step"]
    """
    topology = _ordered_once(topology)
    schemas, diagnostics = infer_schemas(topology)
    for rule in (_cycles, _dangling, _windows, _aggregates, _joins, _changes_and_sinks, _duplicate_names, _timers,
                 _bounds):
        diagnostics.extend(rule(topology, schemas))
    # Refused code first, so that nothing outside the allow-list is imported by the rules after.
    for importing in (_refused, _agents, _imports):
        diagnostics.extend(importing(topology, imports))
    unique = {(str(d.loc), d.message): d for d in diagnostics}
    return sorted(unique.values(), key=lambda d: (d.loc.file, d.loc.line, d.loc.column, d.message))


def _ordered_once(topology: Topology) -> Topology:
    """A shallow copy of `topology` (the same graph) that sorts its nodes once, not once per rule:
    every rule walks the nodes in order, and the sort was two thirds of the time of `check`."""
    view = copy.copy(topology)
    order = topology.order()
    view.order = lambda: list(order)  # type: ignore[method-assign]
    return view


def _cycles(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    """A pipeline that reads a topic it writes (directly or through others) loops forever."""
    import networkx as nx

    graph = nx.DiGraph(topology.graph)
    readers: dict[str, list[str]] = {}
    for node in topology.nodes():
        if isinstance(node, (n.Source, n.TableSource)):
            readers.setdefault(node.topic, []).append(node.name)
    for node in topology.nodes():
        written = _written_topics(node)
        for topic in written:
            for reader in readers.get(topic, []):
                graph.add_edge(node.name, reader, topic=topic)
    cycles = [_rotated(c) for c in nx.simple_cycles(graph)]
    if not cycles:
        return []
    # One message is enough (fixing it usually fixes the rest); pick it deterministically.
    cycle = min(cycles, key=lambda c: (len(c), c))
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        topic = graph.edges[a, b].get("topic")
        if topic:
            return [Diagnostic(f"cycle: '{a}' writes topic '{topic}', which feeds back into it",
                               topology.node(a).loc, "write to another topic", rule="cycle")]
    return []


def _rotated(cycle: list[str]) -> list[str]:
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]


def _written_topics(node: n.Node) -> tuple[str, ...]:
    if isinstance(node, n.Sink) and node.sink == "topic":
        return (node.target,)
    if isinstance(node, n.Echo):
        return node.topics
    if isinstance(node, n.Through):
        return (node.topic,)
    return ()


def _dangling(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    out = []
    for node in topology.nodes():
        if topology.successors(node.name) or node.kind in TERMINAL_KINDS:
            continue
        if isinstance(node, n.Branch):
            continue
        what = "source" if isinstance(node, n.Source) else "timer" if isinstance(node, n.Timer) else "stream"
        out.append(Diagnostic(f"{what} '{node.name}' is never used: it has no sink and feeds no step", node.loc,
                              "", rule="dangling"))
    for node in topology.nodes():
        if isinstance(node, n.Branch):
            used = {e.port for _, e in topology.outputs(node.name)}
            names = [b for b, _ in node.branches] + ([node.default] if node.default else [])
            for b in names:
                if b not in used:
                    out.append(Diagnostic(f"branch '{b}' of '{node.name}' is never used", node.loc,
                                          "send it somewhere or drop the branch", rule="dangling"))
    return out


def _windows(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    out = []
    for node in topology.nodes():
        if not isinstance(node, n.Window):
            continue
        nexts = [topology.node(s) for s in topology.successors(node.name)]
        if not nexts or any(not isinstance(s, n.Aggregate) for s in nexts):
            out.append(Diagnostic(f"window '{node.name}' is not followed by an aggregation", node.loc,
                                  "add an aggregate step, e.g. aggregate(n=agg.count())", rule="window"))
        if node.size_ms <= 0:
            # A session window's SIZE is its gap (events closer than it form one session).
            what = "a session window needs a gap" if node.window == "session" else "a window needs a size"
            out.append(Diagnostic(f"{what} above zero", node.loc, rule="window"))
        if node.window == "hopping":
            if not node.step_ms or node.step_ms <= 0:
                out.append(Diagnostic("a hopping window needs a step above zero", node.loc, rule="window"))
            elif node.step_ms > node.size_ms:
                out.append(Diagnostic(
                    f"the step ({format_duration(node.step_ms)}) of a hopping window is larger than its size "
                    f"({format_duration(node.size_ms)}): events between windows would be lost", node.loc,
                    "use a step no larger than the size", rule="window"))
        elif node.step_ms is not None:
            out.append(Diagnostic(f"only hopping windows take a step; a {node.window} window does not", node.loc,
                                  "drop the step" + (": sessions are split by their gap"
                                                     if node.window == "session" else ""), rule="window"))
        if node.expires_ms is not None and node.expires_ms < node.size_ms + node.grace_ms:
            size = "gap" if node.window == "session" else "size"
            out.append(Diagnostic(f"a window cannot expire before it closes (expires < {size} + grace)", node.loc,
                                  rule="window"))
        inputs = [schemas.get(p) for p in topology.predecessors(node.name)]
        if any(s is not None and s.is_table for s in inputs):
            out.append(Diagnostic("cannot window a table; window the stream of its changes", node.loc,
                                  rule="window"))
    return out


def _aggregates(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    out = []
    for node in topology.nodes():
        if isinstance(node, (n.Aggregate, n.ToTable)):
            inputs = [schemas.get(p) for p in topology.predecessors(node.name)]
            if any(s is not None and s.is_table for s in inputs):
                out.append(Diagnostic(f"cannot {node.kind} a table directly; use its changes", node.loc,
                                      rule="aggregate"))
        if isinstance(node, n.Aggregate):
            windowed = any(isinstance(topology.node(p), n.Window) for p in topology.predecessors(node.name))
            if node.emit == "final" and not windowed:
                out.append(Diagnostic("emit final needs a window: an unwindowed aggregate never closes", node.loc,
                                      "window it, or emit changes", rule="aggregate"))
            for a in node.aggregations:
                if a.function == "reduce" and not a.reducer:
                    out.append(Diagnostic(f"reduce for '{a.output}' needs a reducer", node.loc, rule="aggregate"))
    return out


def _joins(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    out = []
    for node in topology.nodes():
        if not isinstance(node, n.Join):
            continue
        sides = {e.side: schemas.get(e.source) for e in topology.inputs(node.name)}
        left, right = sides.get("left"), sides.get("right")
        if left is None or right is None:
            continue
        if left.is_table and not right.is_table:
            out.append(Diagnostic("a table cannot be joined with a stream on its right", node.loc,
                                  "put the stream on the left: stream.join(table)", rule="join"))
            continue
        stream_stream = not left.is_table and not right.is_table
        if stream_stream and node.within_ms is None:
            out.append(Diagnostic("a join of two streams needs a time bound", node.loc,
                                  "add within=..., e.g. within=\"5m\"", rule="join"))
        if not stream_stream and node.within_ms is not None:
            out.append(Diagnostic("within applies only to joins of two streams", node.loc,
                                  "a table join looks up the latest value; drop within", rule="join"))
        if left.is_table and right.is_table and node.how == "outer" and node.condition is not None:
            out.append(Diagnostic(
                "an outer join of two tables cannot take a condition: where it is false, both sides' rows "
                "would need the one key", node.loc,
                "use a left join (the right side's fields are null where the condition is false)", rule="join"))
        if left.is_table and right.is_table and left.partitions != right.partitions:
            out.append(Diagnostic(
                f"tables '{_input(topology, node, 'left')}' ({left.partitions} partitions) and "
                f"'{_input(topology, node, 'right')}' ({right.partitions} partitions) are not co-partitioned",
                node.loc, "read both tables from topics with the same number of partitions", rule="join"))
        if right.is_table and not right.keyed:
            out.append(Diagnostic("the table on the right of a join is not partitioned by its key", node.loc,
                                  rule="join"))
    return out


def _input(topology: Topology, node: n.Node, side: str) -> str:
    return next(e.source for e in topology.inputs(node.name) if e.side == side)


def _changes_and_sinks(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    out = []
    for node in topology.nodes():
        inputs = [schemas.get(p) for p in topology.predecessors(node.name)]
        if isinstance(node, n.Changes) and any(s is not None and not s.is_table for s in inputs):
            out.append(Diagnostic("changes applies to tables; this is already a stream", node.loc, rule="changes"))
        if isinstance(node, (n.Sink, n.Filter, n.Map, n.FlatMap, n.GroupBy, n.Through, n.Echo, n.Branch, n.Merge,
                             n.CallAgent, n.EventTime)) \
                and any(s is not None and s.is_table for s in inputs):
            out.append(Diagnostic(f"a table cannot feed {node.kind} directly", node.loc,
                                  "take the stream of its updates first: .changes()", rule="changes"))
    return out


def _duplicate_names(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    """Names the planner adds must not collide with each other or with a user's topic or step."""
    return name_clashes(topology, schemas)


def _timers(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    """A timer ticks every interval: zero would tick without end."""
    return [Diagnostic(f"timer '{node.name}' needs an interval above zero", node.loc,
                       "write a duration such as 10s or 500ms", rule="timer")
            for node in topology.nodes() if isinstance(node, n.Timer) and node.interval_ms <= 0]


def _bounds(topology: Topology, schemas: dict[str, StreamSchema]) -> list[Diagnostic]:
    """Partition counts and durations past `dataflow.ir.bounds` (a typo such as 99999999999
    partitions would pass every other rule and then exhaust memory when the topic is made)."""
    out = []
    for node in topology.nodes():
        count = getattr(node, "partitions", None)
        if count is not None:
            problem = partitions_problem(count)
            if problem:
                out.append(Diagnostic(f"'{node.name}': {problem}", node.loc,
                                      "Kafka's guidance is a few thousand partitions per broker", rule="bounds"))
        for field in ("size_ms", "step_ms", "grace_ms", "expires_ms", "within_ms", "interval_ms"):
            ms = getattr(node, field, None)
            problem = duration_problem(ms) if isinstance(ms, int) else None
            if problem:
                out.append(Diagnostic(f"'{node.name}': {problem}", node.loc, rule="bounds"))
    return out


AGENT_HINT = ('an agent is named by its import path, "package.module:agent", found from the working '
              "directory or the pipeline file's directory")
ALLOWED_HINT = ("the allowed modules come from --allow-module or DATAFLOW_ALLOWED_MODULES (dotted prefixes or "
                "globs); add this one there only if you trust its code")


@dataclass(frozen=True)
class Named:
    """Python code a pipeline names by import path, which checking or running it imports."""

    kind: str  # udf | reducer | sink | agent
    path: str
    loc: SourceLocation
    node: n.Node
    untyped: bool = False  # its result (a udf's, an asked agent's reply) is `any` unless it is imported


def named_code(topology: Topology) -> list[Named]:
    """Everything the pipeline imports by path, once per step, in node order. Functions and
    agents a Python pipeline hands over as objects are left out: that file imported them."""
    from ..ir.expr import Expr, Udf, walk
    from ..ir.types import ANY

    def functions(value: object, node: n.Node) -> list[Named]:
        """The udfs and reducers `value` names, looking through nested fields."""
        if isinstance(value, Expr):
            return [Named("udf", e.path, e.loc or node.loc, node, e.returns == ANY)
                    for e in walk(value) if isinstance(e, Udf)]
        if isinstance(value, n.Aggregation):
            reducer = [Named("reducer", value.reducer, node.loc, node)] if value.reducer and value.reducer_func is None \
                else []
            return functions(value.arg, node) + reducer
        if isinstance(value, (tuple, list)):
            return [found for item in value for found in functions(item, node)]
        if isinstance(value, n.Node):
            return [found for f in dataclasses.fields(value) if f.compare
                    for found in functions(getattr(value, f.name), node)]
        return []

    out: list[Named] = []
    for node in topology.nodes():
        out.extend(functions(node, node))
        if isinstance(node, n.Sink) and node.sink == "callable" and node.func is None:
            out.append(Named("sink", node.target, node.loc, node))
        if isinstance(node, n.CallAgent) and node.agent is None:
            out.append(Named("agent", node.target, node.loc, node, node.value_type == ANY))
        if isinstance(node, n.Sink) and node.sink == "agent" and node.agent is None:
            out.append(Named("agent", node.target, node.loc, node))
    unique = {(c.path, c.node.name, c.kind): c for c in out}
    return list(unique.values())


def _refused(topology: Topology, imports: ImportPolicy) -> list[Diagnostic]:
    """Code outside the allow-list is refused before anything imports it."""
    return [Diagnostic(f'{c.kind} "{c.path}" may not be imported: module \'{module_of(c.path)}\' is not among '
                       f"the allowed modules ({imports.describe_allowed()})", c.loc, ALLOWED_HINT, rule="allowed")
            for c in named_code(topology) if not imports.permits(c.path)]


def not_imported(topology: Topology, imports: ImportPolicy) -> list[Diagnostic]:
    """Notes on what a check that imports nothing (``imports.imports`` false) could not verify:
    one per function or agent the pipeline names by path and the allow-list permits. Types
    need no import: a udf's declared signature or an agent's ``-> TYPE`` is taken as written.

    >>> from dataflow import Flow
    >>> flow = Flow("shop")
    >>> flow.source("orders").call_agent("storefront.pricing:quote").to("quotes")
    >>> [d.message for d in not_imported(flow.topology(), ImportPolicy(imports=False))]
    ['agent "storefront.pricing:quote" was not imported: whether it loads and can reply is not checked, and its reply is typed any']
    """
    if imports.imports:
        return []
    out = []
    for c in named_code(topology):
        if not imports.permits(c.path):
            continue  # an error already
        replies = c.kind == "agent" and isinstance(c.node, n.CallAgent)
        what = "whether it loads and can reply" if replies else "whether it loads"
        typed = f", and its {'reply' if replies else 'result'} is typed any" if c.untyped else ""
        out.append(Diagnostic(f'{c.kind} "{c.path}" was not imported: {what} is not checked{typed}', c.loc,
                              severity="note", rule="not-imported"))
    return out


def _agents(topology: Topology, imports: ImportPolicy) -> list[Diagnostic]:
    """Every agent the pipeline asks (`call agent`) or sends to (`to agent`) can be loaded,
    can reply if it is asked, and has an app of its own name.

    Loading an agent imports its module: with `_imports`, the rules that run user code, as
    planning a Python pipeline does; ``imports`` says which modules they may import.
    """
    from ..ir.objects import PipelineNotFound, agents_in, load_agent

    out = []
    for node in topology.nodes():
        asked = isinstance(node, n.CallAgent)
        if not asked and not (isinstance(node, n.Sink) and node.sink == "agent"):
            continue
        agent = node.agent  # type: ignore[attr-defined]
        if agent is None:
            if not (imports.imports and imports.permits(node.target)):  # type: ignore[attr-defined]
                continue  # a note or a refusal says so
            try:
                agent = load_agent(node.target, near=node.loc.file)  # type: ignore[attr-defined]
            except PipelineNotFound as e:
                known = agents_in(e.ref)
                hint = f"agents there: {', '.join(known)}" if known else AGENT_HINT
                out.append(Diagnostic(f'cannot load agent "{e.ref}": {e.reason}', node.loc, hint, rule="agent"))
                continue
        if asked and inspect.iscoroutinefunction(agent.fun):
            out.append(Diagnostic(f"agent '{agent.name}' cannot reply: its function does not yield", node.loc,
                                  "yield the result inside `async for`, or send to the agent without asking: "
                                  "to agent / to_agent()", rule="agent"))
        if getattr(agent.app, "name", None) == topology.name:
            out.append(Diagnostic(f"agent '{agent.name}' belongs to an app named like the pipeline, "
                                  f"'{topology.name}': both would consume as the group '{topology.name}'",
                                  node.loc, "rename the app or the pipeline", rule="agent"))
    return out


def _imports(topology: Topology, imports: ImportPolicy) -> list[Diagnostic]:
    """Every Python function named by import path (a `udf`, a `reduce` reducer, a callable
    sink) can be imported, so a typo fails `check` instead of the run.

    Like `_agents`, this imports the user's modules, those ``imports`` permits.
    """
    from ..ir.callables import load_callable

    if not imports.imports:
        return []
    out = []
    for c in named_code(topology):
        if c.kind == "agent" or not imports.permits(c.path):
            continue
        try:
            load_callable(c.path, near=c.loc.file)
        except ImportError as e:
            out.append(Diagnostic(str(e), c.loc, 'a function is named by its import path, "package.module:function", '
                                  "found from the working directory or the pipeline file's directory",
                                  rule="import"))
    return out
