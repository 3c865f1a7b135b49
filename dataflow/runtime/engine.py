"""Compile a plan's sub-topology into batch steps, and push batches through them.

A record in flight is a tuple `(key, value, timestamp, meta)`; `meta` is the
source message (topic, partition, offset) or None. `timestamp` is the record's event
time in epoch ms: every window and join reads it, and it is written as the timestamp of
every record produced; an `event_time` step sets it. Each stateless node, and
each fused chain, becomes one generated Python function that loops over a
batch: per-record work is plain Python with no calls between operators.
A record whose processing raises is handed to `dead(record, error, node)` and
the batch goes on.
"""
from __future__ import annotations

import ast
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from ..ir import nodes as n
from ..ir.expr import Scope, infer
from ..ir.schema import StreamSchema
from ..ir.types import ANY, ListType, strip_optional
from ..planner.plan import AgentPlan, ExecutionPlan
from .compile_expr import ExprCompiler, build_function, import_callable

Rec = tuple  # (key, value, timestamp, meta)
Dead = Callable[[Rec, BaseException, str], None]


class UnsupportedNode(Exception):
    """A node kind this engine cannot run."""


@dataclass
class Output:
    """Records bound for a topic or an external sink, collected per batch."""

    kind: str  # topic | stdout | file | callable
    target: str
    serializer: str = "json"
    func: Callable[..., Any] | None = None
    records: list[Rec] = field(default_factory=list)
    node: str = ""  # the step that writes here: the dead-letter stage of its failures
    internal: bool = False  # a repartition or through topic: the flow goes on from it


class Step(ABC):
    """A node of the compiled graph: takes a batch, pushes results to its successors."""

    def __init__(self, name: str):
        self.name = name
        self.successors: list[Step] = []
        self.events = 0

    @abstractmethod
    def push(self, batch: list[Rec]) -> None:
        """Process one batch."""

    def emit(self, batch: list[Rec]) -> None:
        if batch:
            for s in self.successors:
                s.push(batch)


class Passthrough(Step):
    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        self.emit(batch)


class Chain(Step):
    """One generated loop for a fused run of filter/map/flat_map/group_by/echo/changes."""

    def __init__(self, name: str, fn: Callable[..., None], dead: Dead):
        super().__init__(name)
        self.fn = fn
        self.dead = dead

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        out: list[Rec] = []
        self.fn(batch, out.append, self.dead)
        self.emit(out)


class BranchStep(Step):
    def __init__(self, name: str, fn: Callable[..., None], ports: list[str], dead: Dead):
        super().__init__(name)
        self.fn = fn
        self.ports = ports
        self.dead = dead
        self.port_successors: dict[str, list[Step]] = {p: [] for p in ports}

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        outs: list[list[Rec]] = [[] for _ in self.ports]
        self.fn(batch, [o.append for o in outs], self.dead)
        for port, out in zip(self.ports, outs):
            if out:
                for s in self.port_successors[port]:
                    s.push(out)


class OutputStep(Step):
    """Collects records for an output; the worker drains it after each batch."""

    def __init__(self, name: str, output: Output, encode: Callable[[Any], Any] | None = None):
        super().__init__(name)
        self.output = output
        self.encode = encode  # timestamps in the units the topic declares (runtime.units_out)

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        if self.encode is None:
            self.output.records.extend(batch)
        else:
            encode = self.encode
            self.output.records.extend((k, encode(v), ts, meta) for k, v, ts, meta in batch)
        self.emit(batch)


@dataclass
class CompiledAgent:
    name: str
    entries: dict[str, list[Step]]  # topic -> steps that read it
    outputs: list[Output]
    steps: dict[str, Step]
    timestamp_fields: dict[str, tuple[str, ...] | None]  # topic -> event-time field
    source_types: dict[str, StreamSchema]  # topic -> schema of what is read


def compile_agent(plan: ExecutionPlan, agent: AgentPlan | str, dead: Dead,
                  tables: dict[str, Any] | None = None) -> CompiledAgent:
    """Build the steps of one agent (sub-topology).

    Pass the `AgentPlan` itself: agent names are not unique (several sub-topologies
    that read one repartition topic are all named after it). `tables` maps store names
    to the `runtime.tables.Table` objects stateful steps use (see `runtime.state`).
    """
    if isinstance(agent, str):
        agent = next(a for a in plan.agents if a.name == agent)
    topo = plan.topology
    members = set(agent.nodes)
    steps: dict[str, Step] = {}
    outputs: list[Output] = []
    for name in agent.nodes:
        node = topo.node(name)
        in_schema = _input_schema(plan, name)
        if node.kind in n.STATEFUL_KINDS:
            from .stateful import compile_stateful  # stateful steps build on this module's Step

            steps[name] = compile_stateful(node, plan, dead, tables if tables is not None else {})
        else:
            steps[name] = _compile_node(node, in_schema, plan, dead, outputs)
    for name in agent.nodes:
        for target, edge in topo.outputs(name):
            if target not in members:
                continue
            _connect(steps[name], edge, _entry(steps[target], edge))
    entries: dict[str, list[Step]] = {}
    timestamp_fields: dict[str, tuple[str, ...] | None] = {}
    source_types: dict[str, StreamSchema] = {}
    for reader, topic in agent.entries:
        node = topo.node(reader)
        if reader in members:
            targets = [steps[reader]]
        else:  # a topic boundary written upstream: its successors here read it
            targets = [_entry(steps[t], edge) for t, edge in topo.outputs(reader) if t in members]
        entries.setdefault(topic, []).extend(targets)
        ts_field = node.timestamp_field if isinstance(node, (n.Source, n.TableSource)) else None
        timestamp_fields[topic] = tuple(ts_field.split(".")) if ts_field else None
        source_types[topic] = plan.schemas[reader]
    return CompiledAgent(agent.name, entries, outputs, steps, timestamp_fields, source_types)


def _entry(step: Step, edge: Any) -> Step:
    """Where an edge enters `step`: a join takes each side through its own entry."""
    sides = getattr(step, "sides", None)
    return sides[edge.side or "left"] if sides else step


def _connect(src: Step, edge: Any, target: Step) -> None:
    if isinstance(src, BranchStep):
        src.port_successors[edge.port or src.ports[0]].append(target)
    else:
        src.successors.append(target)


def _input_schema(plan: ExecutionPlan, name: str) -> StreamSchema:
    preds = plan.topology.predecessors(name)
    if preds:
        return plan.schemas[preds[0]]
    return plan.schemas[name]


def _compile_node(node: n.Node, schema: StreamSchema, plan: ExecutionPlan, dead: Dead,
                  outputs: list[Output]) -> Step:
    if isinstance(node, (n.Source, n.Merge, n.Window)):
        return Passthrough(node.name)
    if isinstance(node, n.Timer):
        from .flow_timers import TimerStep  # timer steps build on this module's Step

        return TimerStep(node, dead)
    if isinstance(node, n.CallAgent) or (isinstance(node, n.Sink) and node.sink == "agent"):
        from .flow_agents import agent_step  # agent steps build on this module's Step

        return agent_step(node, dead)
    if node.stateless:
        steps = node.steps if isinstance(node, n.Fused) else (node,)
        return Chain(node.name, _chain_function(node.name, steps, schema, outputs, plan.settings), dead)
    if isinstance(node, n.Branch):
        return _branch(node, schema, dead)
    if isinstance(node, (n.Repartition, n.Through)):
        output = Output("topic", node.topic, getattr(node, "serializer", "json"), internal=True)
        outputs.append(output)
        return OutputStep(node.name, output)
    if isinstance(node, n.Sink):
        func = node.func
        if node.sink == "callable" and func is None:
            func = import_callable(node.target, node.loc.file)
        output = Output(node.sink, node.target, node.serializer, func, node=node.name)
        outputs.append(output)
        from .units_out import unit_encoder

        return OutputStep(node.name, output, unit_encoder(node.value_type) if node.sink == "topic" else None)
    raise UnsupportedNode(f"{node.loc}: no runtime step for '{node.name}' ({node.kind})")


def _chain_function(name: str, steps: tuple[n.Node, ...], schema: StreamSchema, outputs: list[Output],
                    settings: Any = None) -> Callable[..., None]:
    """Generate `def chain(batch, out, dead)` running `steps` over each record of the batch."""
    compiler = ExprCompiler()
    if any(isinstance(s, n.EventTime) for s in steps):
        from .event_time import EventTimeGuard

        compiler.env["_event_time_guard"] = EventTimeGuard.of(settings)
    scope = Scope(schema.key, schema.value)
    body = _gen(list(steps), 0, scope, compiler, outputs)
    loop = _record_loop(body, name)
    return build_function("chain", loop, ("batch", "out", "dead"), compiler.env)


def _record_loop(body: list[ast.stmt], node_name: str) -> list[ast.stmt]:
    """`for rec in batch: k, v, ts, meta = rec; try: body except Exception as e: dead(rec, e, name)`."""
    unpack = ast.Assign([ast.Tuple([ast.Name(x, ast.Store()) for x in ("k", "v", "ts", "meta")], ast.Store())],
                        ast.Name("rec", ast.Load()))
    handler = ast.ExceptHandler(ast.Name("Exception", ast.Load()), "err", [ast.Expr(ast.Call(
        ast.Name("dead", ast.Load()),
        [ast.Name("rec", ast.Load()), ast.Name("err", ast.Load()), ast.Constant(node_name)], []))])
    return [ast.For(ast.Name("rec", ast.Store()), ast.Name("batch", ast.Load()),
                    [unpack, ast.Try(body, [handler], [], [])], [])]


def _emit(target: str = "out") -> ast.stmt:
    record = ast.Tuple([ast.Name(x, ast.Load()) for x in ("k", "v", "ts", "meta")], ast.Load())
    return ast.Expr(ast.Call(ast.Name(target, ast.Load()), [record], []))


def _gen(steps: list[n.Node], i: int, scope: Scope, c: ExprCompiler, outputs: list[Output]) -> list[ast.stmt]:
    if i == len(steps):
        return [_emit()]
    step = steps[i]
    if isinstance(step, n.Filter):
        cond = c._truthy(c.expr(step.predicate, scope), step.predicate, scope)
        return [ast.If(cond, _gen(steps, i + 1, scope, c, outputs), [])]
    if isinstance(step, n.Map):
        new = Scope(scope.key, _safe_infer(step.expr, scope))
        return [ast.Assign([ast.Name("v", ast.Store())], c.expr(step.expr, scope)),
                *_gen(steps, i + 1, new, c, outputs)]
    if isinstance(step, n.FlatMap):
        t = strip_optional(_safe_infer(step.expr, scope))
        item = t.item if isinstance(t, ListType) else ANY
        items = ast.BoolOp(ast.Or(), [c.expr(step.expr, scope), ast.Tuple([], ast.Load())])
        return [ast.For(ast.Name("v", ast.Store()), items, _gen(steps, i + 1, Scope(scope.key, item), c, outputs), [])]
    if isinstance(step, n.GroupBy):
        new = Scope(_safe_infer(step.key, scope), scope.value)
        return [ast.Assign([ast.Name("k", ast.Store())], c.expr(step.key, scope)),
                *_gen(steps, i + 1, new, c, outputs)]
    if isinstance(step, n.Echo):
        appends = []
        for topic in step.topics:
            output = Output("topic", topic, step.serializer)
            outputs.append(output)
            appends.append(ast.Expr(ast.Call(c.bind(output.records.append, "echo"), [ast.Tuple(
                [ast.Name(x, ast.Load()) for x in ("k", "v", "ts", "meta")], ast.Load())], [])))
        return [*appends, *_gen(steps, i + 1, scope, c, outputs)]
    if isinstance(step, n.Changes):
        return _gen(steps, i + 1, scope, c, outputs)
    if isinstance(step, n.EventTime):
        # The guard (runtime.event_time) turns the value into epoch ms or raises with the reason,
        # which dead-letters the record like any failing step. A null value is a deletion (a
        # table's tombstone): it has no fields to take a time from and keeps the time it has.
        guard = ast.Call(ast.Name("_event_time_guard", ast.Load()), [c.expr(step.expr, scope)], [])
        is_value = ast.Compare(ast.Name("v", ast.Load()), [ast.IsNot()], [ast.Constant(None)])
        return [ast.If(is_value, [ast.Assign([ast.Name("ts", ast.Store())], guard)], []),
                *_gen(steps, i + 1, scope, c, outputs)]
    raise UnsupportedNode(f"{step.loc}: cannot fuse a {step.kind} step")


def _branch(node: n.Branch, schema: StreamSchema, dead: Dead) -> BranchStep:
    c = ExprCompiler()
    scope = Scope(schema.key, schema.value)
    ports = [b for b, _ in node.branches] + ([node.default] if node.default else [])
    record = ast.Tuple([ast.Name(x, ast.Load()) for x in ("k", "v", "ts", "meta")], ast.Load())

    def send(index: int) -> list[ast.stmt]:
        target = ast.Subscript(ast.Name("outs", ast.Load()), ast.Constant(index), ast.Load())
        return [ast.Expr(ast.Call(target, [record], []))]

    orelse: list[ast.stmt] = send(len(node.branches)) if node.default else []
    for index in range(len(node.branches) - 1, -1, -1):
        pred = node.branches[index][1]
        orelse = [ast.If(c._truthy(c.expr(pred, scope), pred, scope), send(index), orelse)]
    fn = build_function("branch", _record_loop(orelse, node.name), ("batch", "outs", "dead"), c.env)
    return BranchStep(node.name, fn, ports, dead)


def _safe_infer(expr: Any, scope: Scope) -> Any:
    try:
        return infer(expr, scope)
    except Exception:  # noqa: BLE001 - the planner already reported type errors
        return ANY


def is_coroutine_function(func: Callable[..., Any] | None) -> bool:
    return func is not None and inspect.iscoroutinefunction(func)
