"""Type propagation: what key, value and shape flows out of every node.

`infer_schemas` walks the topology in order and returns a `StreamSchema` per
node plus every type error found, each pointing at its source location. Field
references are therefore checked before anything runs.

>>> from .topology import Topology, Edge
>>> from .nodes import Source, Filter
>>> from .expr import Binary, FieldRef, Literal
>>> from .types import RecordType, Field, FLOAT, STR
>>> t = Topology("app")
>>> t.add(Source("w", topic="w", key_type=STR, value_type=RecordType("W", (Field("amount", FLOAT),))))
>>> t.add(Filter("big", predicate=Binary(">", FieldRef(("amout",)), Literal(1))), [Edge("w")])
>>> schemas, errors = infer_schemas(t)
>>> errors[0].message, errors[0].hint
("unknown field 'amout' in W", "did you mean 'amount'?")
"""
from __future__ import annotations

from dataclasses import dataclass

from . import nodes as n
from .diagnostics import Diagnostic
from .expr import Expr, ExprTypeError, FieldRef, Scope, infer, render
from .join_condition import check_condition
from .location import SourceLocation
from .topology import Topology
from .types import (ANY, BOOL, FLOAT, INT, NULL, STR, TIMESTAMP, Field, ListType, OptionalType, RecordType, Type,
                    is_assignable, is_numeric, optional, strip_optional, unify)

STREAM, TABLE, WINDOWED, WINDOWED_TABLE = "stream", "table", "windowed", "windowed_table"


@dataclass(frozen=True)
class StreamSchema:
    """What flows out of a node.

    `partitions` and `partitioned_by` (a topic name) say how records are spread;
    `keyed` is False after a re-key that has not been repartitioned yet.
    """

    key: Type
    value: Type
    shape: str = STREAM  # stream | table | windowed | windowed_table
    partitions: int = 1
    partitioned_by: str = ""
    keyed: bool = True

    @property
    def is_table(self) -> bool:
        return self.shape in (TABLE, WINDOWED_TABLE)


AGG_RESULT = {
    "count": lambda t: INT,
    "sum": lambda t: INT if strip_optional(t) == INT else (FLOAT if strip_optional(t) == FLOAT else ANY),
    "min": lambda t: strip_optional(t),
    "max": lambda t: strip_optional(t),
    "avg": lambda t: FLOAT,
    "collect": lambda t: ListType(t),
    "set": lambda t: ListType(t),
    "latest": lambda t: t,
    "reduce": lambda t: ANY,
}


def infer_schemas(topology: Topology) -> tuple[dict[str, StreamSchema], list[Diagnostic]]:
    schemas: dict[str, StreamSchema] = {}
    errors: list[Diagnostic] = []
    default_partitions = topology.settings.partitions
    for node in topology.nodes():
        inputs = [schemas[e.source] for e in topology.inputs(node.name) if e.source in schemas]
        try:
            schema = _infer_node(topology, node, inputs, default_partitions, errors)
        except ExprTypeError as e:
            errors.append(Diagnostic(e.message, e.loc or node.loc, e.hint, rule="type"))
            schema = _fallback(inputs)
        if schema is not None:
            schemas[node.name] = schema
    return schemas, errors


def _fallback(inputs: list[StreamSchema]) -> StreamSchema:
    return inputs[0] if inputs else StreamSchema(ANY, ANY)


def _check(expr, scope: Scope, errors: list[Diagnostic], loc: SourceLocation) -> Type:  # type: ignore[no-untyped-def]
    try:
        return infer(expr, scope)
    except ExprTypeError as e:
        errors.append(Diagnostic(e.message, e.loc or loc, e.hint, rule="type"))
        return ANY


def _expect_bool(t: Type, what: str, node: n.Node, errors: list[Diagnostic], expr) -> None:  # type: ignore[no-untyped-def]
    if strip_optional(t) not in (BOOL, ANY):
        errors.append(Diagnostic(f"{what} must be a bool, got {t}", getattr(expr, "loc", None) or node.loc,
                                 "compare it with something, e.g. amount > 0", rule="type"))


def _infer_node(topology: Topology, node: n.Node, inputs: list[StreamSchema], default_partitions: int,
                errors: list[Diagnostic]) -> StreamSchema | None:
    if isinstance(node, (n.Source, n.TableSource)):
        parts = node.partitions or default_partitions
        shape = TABLE if isinstance(node, n.TableSource) else STREAM
        if isinstance(node, (n.Source, n.TableSource)) and node.timestamp_field:
            _time_field(node.value_type, tuple(node.timestamp_field.split(".")), node, errors)
        return StreamSchema(node.key_type, node.value_type, shape, parts, node.topic, True)
    if isinstance(node, n.Timer):
        # One record per tick per worker, on no partition in particular: not keyed, so a
        # stateful step downstream gets a repartition first (its records gain a partition).
        return StreamSchema(NULL, _timer_value(node, errors), STREAM, default_partitions, node.name, False)
    if not inputs:
        return None
    first = inputs[0]
    scope = Scope(first.key, first.value)
    if isinstance(node, n.Filter):
        _expect_bool(_check(node.predicate, scope, errors, node.loc), "a filter condition", node, errors, node.predicate)
        return first
    if isinstance(node, n.Map):
        return _replace(first, value=_check(node.expr, scope, errors, node.loc))
    if isinstance(node, n.FlatMap):
        t = _check(node.expr, scope, errors, node.loc)
        if isinstance(strip_optional(t), ListType):
            return _replace(first, value=strip_optional(t).item)  # type: ignore[union-attr]
        if t != ANY:
            errors.append(Diagnostic(f"flat_map needs an expression giving a list, got {t}",
                                     getattr(node.expr, "loc", None) or node.loc,
                                     "use map for one value per event", rule="type"))
        return _replace(first, value=ANY)
    if isinstance(node, n.Echo):
        return first
    if isinstance(node, n.EventTime):
        t = _check(node.expr, scope, errors, node.loc)
        time_type_error(t, "the event time", getattr(node.expr, "loc", None) or node.loc, errors, node.expr)
        return first
    if isinstance(node, n.CallAgent):
        return _replace(first, value=node.value_type)  # the key, and so the partitioning, stays
    if isinstance(node, n.Branch):
        for _, pred in node.branches:
            _expect_bool(_check(pred, scope, errors, node.loc), "a branch condition", node, errors, pred)
        return first
    if isinstance(node, n.Merge):
        value, key = first.value, first.key
        for other in inputs[1:]:
            u = unify(value, other.value)
            if u is None:
                errors.append(Diagnostic(f"merge inputs have different value types: {value} and {other.value}",
                                         node.loc, "map them to one type before merging", rule="type"))
                u = ANY
            value = u
            key = unify(key, other.key) or ANY
        aligned = all(i.partitions == first.partitions and i.keyed for i in inputs)
        return StreamSchema(key, value, STREAM, max(i.partitions for i in inputs),
                            first.partitioned_by if aligned else node.name, aligned and first.keyed)
    if isinstance(node, n.GroupBy):
        key = _check(node.key, scope, errors, node.loc)
        if node.repartition:
            return StreamSchema(key, first.value, STREAM, node.partitions or first.partitions, node.name, True)
        return StreamSchema(key, first.value, STREAM, first.partitions, first.partitioned_by, False)
    if isinstance(node, n.Through):
        return StreamSchema(first.key, first.value, first.shape, node.partitions or first.partitions, node.topic, True)
    if isinstance(node, n.Repartition):
        return StreamSchema(first.key, first.value, first.shape, node.partitions, node.topic, True)
    if isinstance(node, n.Window):
        if node.time_field is not None:
            _time_field(first.value, node.time_field, node, errors)
        return _replace(first, shape=WINDOWED)
    if isinstance(node, n.Aggregate):
        fields = []
        for a in node.aggregations:
            arg_t = _check(a.arg, scope, errors, node.loc) if a.arg is not None else ANY
            if a.function in ("sum", "avg") and not is_numeric(arg_t):
                errors.append(Diagnostic(f"{a.function}() needs numbers, got {arg_t}",
                                         getattr(a.arg, "loc", None) or node.loc, rule="type"))
            fields.append(Field(a.output, AGG_RESULT[a.function](arg_t)))
        windowed = first.shape == WINDOWED
        if windowed:
            fields += [Field("window_start", TIMESTAMP), Field("window_end", TIMESTAMP)]
        # The planner repartitions the input of every aggregate and table, so their state is keyed.
        return _replace(first, value=RecordType("", tuple(fields)), shape=WINDOWED_TABLE if windowed else TABLE,
                        keyed=True)
    if isinstance(node, n.ToTable):
        return _replace(first, shape=TABLE, keyed=True)
    if isinstance(node, n.Changes):
        return _replace(first, shape=STREAM)
    if isinstance(node, n.Join):
        sides = {e.side or "left": s for e, s in zip(topology.inputs(node.name), inputs)}
        if len(sides) < 2:
            return first
        return _join_schema(node, sides, errors)
    if isinstance(node, n.Sink):
        if node.value_type is not None and not is_assignable(first.value, node.value_type):
            errors.append(Diagnostic(
                f"cannot send {first.value} to topic '{node.target}', which holds {node.value_type}",
                node.loc, _mismatch_hint(first.value, node.value_type), rule="sink-type"))
        return first
    if isinstance(node, n.Fused):
        current = first
        for step in node.steps:
            current = _infer_node(topology, step, [current], default_partitions, errors) or current
        return current
    return first


def _timer_value(node: n.Timer, errors: list[Diagnostic]) -> Type:
    """The type of a timer's value; it has no input record, so it reads no fields."""
    from .expr import FieldRef, Meta, walk

    hint = "build it from constants and functions such as now(); _timestamp is the tick time"
    bad = 0
    for e in walk(node.value):
        if isinstance(e, FieldRef):
            errors.append(Diagnostic(f"a timer's value cannot read the field '{'.'.join(e.path)}': "
                                     "a timer has no input record", e.loc or node.loc, hint, rule="type"))
            bad += 1
        elif isinstance(e, Meta) and e.name in ("partition", "offset", "topic"):
            errors.append(Diagnostic(f"a timer's record has no _{e.name}: it comes from no topic",
                                     e.loc or node.loc, hint, rule="type"))
            bad += 1
    if bad:
        return ANY
    return _check(node.value, Scope(NULL, NULL), errors, node.loc)


def _time_field(value: Type, path: tuple[str, ...], node: n.Node, errors: list[Diagnostic]) -> None:
    from .expr import FieldRef

    t = _check(FieldRef(path, loc=node.loc), Scope(ANY, value), errors, node.loc)
    time_type_error(t, f"the event-time field '{'.'.join(path)}'", node.loc, errors, FieldRef(path))


def time_type_error(t: Type, what: str, loc: SourceLocation, errors: list[Diagnostic], source: Expr) -> None:
    """Event time is a timestamp or an int of epoch ms. A float is refused: it is almost
    always epoch seconds, and read as milliseconds it would put every event near 1970.
    Text is refused too, with the two ways to read ISO-8601 text from `source`."""
    bare = strip_optional(t)
    if bare == FLOAT:
        errors.append(Diagnostic(f"{what} is a float; event time must be a timestamp or an int of epoch ms",
                                 loc, "if it holds epoch seconds (e.g. 1700000000.123), declare the field "
                                 "timestamp(s)", rule="type"))
    elif bare == STR:
        errors.append(Diagnostic(f"{what} must be a timestamp, got {t}", loc, _text_time_hint(source), rule="type"))
    elif bare not in (TIMESTAMP, INT, ANY):
        errors.append(Diagnostic(f"{what} must be a timestamp, got {t}", loc,
                                 "declare it timestamp (epoch ms), timestamp(s) or an int of epoch ms", rule="type"))


def _text_time_hint(source: Expr) -> str:
    """`event_time parse_time(at)` (and the builder's spelling for a plain field), or declaring
    the field a timestamp, which reads ISO-8601 text in every unit."""
    stage = f"`event_time parse_time({render(source)})`"
    declare = ""
    if isinstance(source, FieldRef):
        path = ".".join(source.path)
        stage += f" (builder: `.event_time(fn.parse_time(col(\"{path}\")))`)"
        declare = f"declare the field '{path}' timestamp (ISO-8601 text is read in every unit), or "
    return f"if it holds ISO-8601 text, {declare}set the time in a stage: {stage}"


def _mismatch_hint(value: Type, target: Type) -> str:
    if isinstance(value, RecordType) and isinstance(target, RecordType):
        missing = [f.name for f in target.fields if value.field(f.name) is None and not isinstance(f.type, OptionalType)]
        if missing:
            return f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
        wrong = [f"{f.name} is {value.field(f.name).type} not {f.type}" for f in target.fields  # type: ignore[union-attr]
                 if value.field(f.name) is not None and not is_assignable(value.field(f.name).type, f.type)]  # type: ignore[union-attr]
        return "; ".join(wrong)
    return "map the values to the topic's type first"


def _join_schema(node: n.Join, sides: dict[str, StreamSchema], errors: list[Diagnostic]) -> StreamSchema:
    left, right = sides["left"], sides["right"]
    key = unify(left.key, right.key)
    if key is None:
        errors.append(Diagnostic(f"join keys have different types: {left.key} and {right.key}", node.loc,
                                 "re-key one side with on=/right_on= so both keys have one type", rule="join"))
        key = ANY
    value = join_value(left.value, right.value, node.how, node.right_prefix)
    if node.condition is not None:
        check_condition(node.condition, Scope(key, join_pair_value(left.value, right.value, node.right_prefix)),
                        node.right_prefix, errors, node.loc)
    shape = TABLE if left.is_table and right.is_table else STREAM
    return StreamSchema(key, value, shape, left.partitions, left.partitioned_by, left.keyed and right.keyed)


def join_value(left: Type, right: Type, how: str, prefix: str) -> Type:
    """The value type of a join: left fields, then right fields (clashing names prefixed)."""
    lopt = how in ("right", "outer")
    ropt = how in ("left", "outer")
    if isinstance(left, RecordType) and isinstance(right, RecordType):
        fields = [Field(f.name, optional(f.type) if lopt else f.type) for f in left.fields]
        names = set(left.field_names)
        for f in right.fields:
            name = f"{prefix}_{f.name}" if f.name in names else f.name
            fields.append(Field(name, optional(f.type) if ropt else f.type))
        return RecordType("", tuple(fields))
    return RecordType("", (Field("left", optional(left) if lopt else left),
                           Field("right", optional(right) if ropt else right)))


def join_pair_value(left: Type, right: Type, prefix: str) -> Type:
    """What a join condition reads: the joined row of a pair, where both sides are present."""
    return join_value(left, right, "inner", prefix)


def _replace(s: StreamSchema, **changes) -> StreamSchema:  # type: ignore[no-untyped-def]
    from dataclasses import replace
    return replace(s, **changes)

