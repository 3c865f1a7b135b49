"""Topology nodes: small frozen dataclasses, one per operator kind.

Only the builder creates them (and planner passes derive new ones with
`dataclasses.replace`). `name` is the node id, given by the user or derived
from a user-given name, never counted; `loc` points at the `.flow` span or the
builder call and never takes part in equality.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from .expr import Expr
from .location import UNKNOWN, SourceLocation
from .types import ANY, Type

SERIALIZERS = ("json", "msgpack", "raw")
JOIN_HOWS = ("inner", "left", "outer")
WINDOW_KINDS = ("tumbling", "hopping", "sliding", "session")
TIME_SOURCES = ("event", "message", "processing")
EMIT_MODES = ("changes", "final")


@dataclass(frozen=True)
class Node:
    name: str
    loc: SourceLocation = field(default=UNKNOWN, compare=False, kw_only=True)

    kind: ClassVar[str] = "node"
    #: how many inputs the node takes: 0, 1, 2 (join) or -1 (any number: merge)
    arity: ClassVar[int] = 1
    stateless: ClassVar[bool] = False


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source(Node):
    """A stream read from a topic."""

    topic: str
    key_type: Type = ANY
    value_type: Type = ANY
    partitions: int | None = None  # None: the pipeline's default
    serializer: str = "json"
    key_serializer: str = "json"
    timestamp_field: str | None = None  # event time; None: the message timestamp

    kind: ClassVar[str] = "source"
    arity: ClassVar[int] = 0


@dataclass(frozen=True)
class TableSource(Node):
    """A table read from a topic: the latest value per key (a KTable)."""

    topic: str
    key_type: Type = ANY
    value_type: Type = ANY
    partitions: int | None = None
    serializer: str = "json"
    key_serializer: str = "json"
    timestamp_field: str | None = None  # event time (the topic's `event_time`); None: the message timestamp
    # Read to the end it has when its task starts before any other input of the task gives a
    # record (a GlobalKTable / bootstrap stream); see "Time-aligned inputs" in docs/state.md.
    bootstrap: bool = False

    kind: ClassVar[str] = "table_source"
    arity: ClassVar[int] = 0


@dataclass(frozen=True)
class Timer(Node):
    """A stream made by the clock: every `interval_ms` one record `(null key, value, tick time)`.

    `value` is evaluated at each tick; it has no input record to read, so it is made of
    literals and functions (`now()`, `_timestamp`: the tick time).
    """

    interval_ms: int
    value: Expr

    kind: ClassVar[str] = "timer"
    arity: ClassVar[int] = 0


# --------------------------------------------------------------------------- stateless


@dataclass(frozen=True)
class Map(Node):
    """Replace each value with `expr` (a projection, a record, or a Python callable)."""

    expr: Expr
    kind: ClassVar[str] = "map"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class Filter(Node):
    predicate: Expr
    kind: ClassVar[str] = "filter"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class FlatMap(Node):
    """Replace each value with the items of the list `expr` evaluates to."""

    expr: Expr
    kind: ClassVar[str] = "flat_map"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class EventTime(Node):
    """Set each record's event time (its timestamp) to `expr`: a timestamp or an int of epoch ms.

    Every later window and join uses it, and it is the record timestamp written to topics.
    A record whose time is null, unusable or implausible is dead-lettered with the reason.
    """

    expr: Expr
    kind: ClassVar[str] = "event_time"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class Echo(Node):
    """Forward every event to extra topics as it passes (Faust's `Stream.echo`)."""

    topics: tuple[str, ...]
    serializer: str = "json"
    kind: ClassVar[str] = "echo"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class Branch(Node):
    """Route each event to the first branch whose predicate holds; out-edges carry the branch name."""

    branches: tuple[tuple[str, Expr], ...]
    default: str | None = None  # name of the branch for events no predicate takes
    kind: ClassVar[str] = "branch"


@dataclass(frozen=True)
class Merge(Node):
    kind: ClassVar[str] = "merge"
    arity: ClassVar[int] = -1


@dataclass(frozen=True)
class CallAgent(Node):
    """Ask a Python agent (`@app.agent`) for each event; its reply becomes the value.

    The key stays. An event the agent yields nothing for, or replies null for, is dropped;
    one it fails on is dead-lettered with the agent's error. `target` is the agent's import
    path (`package.module:agent`); `agent` is the agent itself when the builder was given it.
    """

    target: str
    value_type: Type = ANY  # what the agent replies, when declared
    agent: Any = field(default=None, compare=False, repr=False)
    kind: ClassVar[str] = "call_agent"


# --------------------------------------------------------------------------- keys and topics


@dataclass(frozen=True)
class GroupBy(Node):
    """Re-key by `key`. With `repartition`, records move to the partition of their new key."""

    key: Expr
    partitions: int | None = None
    repartition: bool = True
    kind: ClassVar[str] = "group_by"
    stateless: ClassVar[bool] = True  # computing a key; the repartition topic is its own node


@dataclass(frozen=True)
class Through(Node):
    """Write to `topic` and continue from it: an explicit topic boundary."""

    topic: str
    partitions: int | None = None
    serializer: str = "json"
    kind: ClassVar[str] = "through"


@dataclass(frozen=True)
class Repartition(Node):
    """An internal topic that moves records to the partition of their key (planner-inserted)."""

    topic: str
    partitions: int
    reason: str = ""
    kind: ClassVar[str] = "repartition"


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Window(Node):
    """Assign events to windows; must be followed by an aggregate."""

    window: str  # tumbling | hopping | sliding | session
    size_ms: int
    step_ms: int | None = None  # hopping only
    grace_ms: int = 0
    expires_ms: int | None = None
    time: str = "message"  # event | message | processing
    time_field: tuple[str, ...] | None = None
    kind: ClassVar[str] = "window"


@dataclass(frozen=True)
class Aggregation:
    """One output field of an aggregate: `total: sum(amount)`."""

    output: str
    function: str  # count sum min max avg collect set latest reduce
    arg: Expr | None = None
    reducer: str | None = None  # import path or module:qualname of a (acc, value) -> acc callable
    reducer_func: Callable[[Any, Any], Any] | None = field(default=None, compare=False, repr=False)
    initial: Any = None


AGGREGATE_FUNCTIONS = ("count", "sum", "min", "max", "avg", "collect", "set", "latest", "reduce")


@dataclass(frozen=True)
class Aggregate(Node):
    """Incremental aggregations per key (and window): produces a table."""

    aggregations: tuple[Aggregation, ...]
    emit: str = "changes"  # changes | final (windowed only)
    kind: ClassVar[str] = "aggregate"


@dataclass(frozen=True)
class ToTable(Node):
    """Materialize a stream as a table: the latest value per key."""

    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class Changes(Node):
    """The stream of a table's updates (Kafka Streams' `toStream`)."""

    kind: ClassVar[str] = "changes"
    stateless: ClassVar[bool] = True


@dataclass(frozen=True)
class Join(Node):
    """Join two inputs on their keys; in-edges carry `side` = left | right.

    Stream-stream joins need `within_ms`; stream-table looks up the table's
    latest value; table-table re-emits on a change of either side.
    `condition`, when given, must also hold for a pair to match; it reads the
    joined row of the pair (see `ir.schema.join_pair_value`).
    """

    how: str = "inner"
    within_ms: int | None = None
    right_prefix: str = ""  # prefix for right-hand fields whose names clash with the left's
    condition: Expr | None = None
    kind: ClassVar[str] = "join"
    arity: ClassVar[int] = 2


# --------------------------------------------------------------------------- sinks


SINK_KINDS = ("topic", "stdout", "file", "callable", "agent")


@dataclass(frozen=True)
class Sink(Node):
    """Where results leave the pipeline."""

    sink: str  # topic | stdout | file | callable | agent
    target: str  # topic name, file path, `module:qualname` (a callable or an agent), or "-" for stdout
    serializer: str = "json"
    value_type: Type | None = None  # the declared type of the topic, when known
    partitions: int | None = None
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    agent: Any = field(default=None, compare=False, repr=False)  # sink "agent": the agent, when given
    kind: ClassVar[str] = "sink"


# --------------------------------------------------------------------------- planner-made


@dataclass(frozen=True)
class Fused(Node):
    """Adjacent stateless operators run as one step over a batch (planner-made)."""

    steps: tuple[Node, ...]
    kind: ClassVar[str] = "fused"
    stateless: ClassVar[bool] = True


STATEFUL_KINDS = ("aggregate", "table", "table_source", "join")
