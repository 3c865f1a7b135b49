"""`Flow` and its immutable stream and table handles.

>>> from dataflow import Flow, col, agg
>>> flow = Flow("fraud")
>>> large = flow.source("withdrawals").filter(col("amount") > 1000, name="large")
>>> totals = large.group_by("account_id").aggregate(total=agg.sum("amount"), name="totals")
>>> totals.changes().to("alerts")
>>> sorted(n.name for n in flow.topology().nodes())
['large', 'large.by_account_id', 'totals', 'totals.changes', 'totals.to_alerts', 'withdrawals']

Naming: every node id is given (`name=`) or derived from the nearest *anchor*
(a user-named node, a source, or a node that owns a topic or state) plus what
the step does: `large.by_account_id`. Adding a step elsewhere never renames a
topic or a store. Two stateful steps or anchors (branch, merge, select_key) that
would get the same derived name are an error asking for `name=`; other stateless
siblings get a `_2` suffix (no topic or store derives from them).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..ir import nodes as n
from ..ir.durations import format_duration, parse_duration
from ..ir.location import SourceLocation, caller_location
from ..ir.settings import RefusedSetting, Settings
from ..ir.topology import Edge, Topology
from ..ir.types import ANY, Type, from_python
from .expressions import Col, callable_ref, expr_or_callable, key_expr, label, to_expr
from .windows import Duration, WindowSpec

#: an agent's import path: `package.module:agent`
AGENT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

ANCHOR_KINDS = {"source", "table_source", "timer", "group_by", "through", "window", "aggregate", "table", "join",
                "merge", "branch"}
#: The builder method that makes a step of a kind, where the two differ (named in hints).
_METHOD_OF_KIND = {"table": "to_table"}
#: kinds whose derived name must be unique rather than suffixed: topics and stores derive from them,
#: or from the names of the steps they anchor (so a counted suffix would leak into a topic or store name)
NAMED_STATE_KINDS = {"group_by", "select_key", "through", "window", "aggregate", "table", "join", "merge", "branch"}


@dataclass(frozen=True)
class TopicDecl:
    """A declared topic: its types, partitions and serializer."""

    name: str
    key_type: Type = ANY
    value_type: Type = ANY
    partitions: int | None = None
    serializer: str = "json"
    key_serializer: str = "json"
    timestamp_field: str | None = None


class Flow:
    """A pipeline under construction.

    `Flow("app", partitions=8, broker="kafka://localhost:9092")`; then `source(...)`
    and chain steps. `topology()` returns the IR graph the planner takes.
    """

    def __init__(self, name: str, **settings: Any):
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise ValueError(f"pipeline name {name!r} may use letters, digits, '-', '_' and '.' only")
        self.name = name
        try:  # every value is parsed, and bounded, by `ir.settings.parse_setting`
            self.settings = Settings().with_overrides(settings) if settings else Settings()
        except RefusedSetting as e:  # a value past its bound (`partitions=99999999999`): say where
            raise ValueError(f"{caller_location()}: {e}") from None
        self._topology = Topology(name, self.settings)
        self._topics: dict[str, TopicDecl] = {}
        self._given: set[str] = set()
        # the highest `_N` suffix handed out per derived name: names are never removed, so the
        # next free suffix is above it, and naming the n-th sibling does not re-try all n-1 before it
        self._suffixes: dict[str, int] = {}

    # ------------------------------------------------------------------ declarations
    def configure(self, **settings: Any) -> "Flow":
        """Change pipeline settings (`partitions`, `broker`, ...)."""
        self.settings = self.settings.with_overrides(settings)
        self._topology = self._topology.with_settings(self.settings)
        return self

    def topic(self, name: str, *, key: Any = None, value: Any = None, partitions: int | None = None,
              serializer: str = "json", key_serializer: str = "json", timestamp: str | None = None) -> TopicDecl:
        """Declare a topic's types so sources read and sinks write it with them."""
        decl = TopicDecl(name, from_python(key), from_python(value), partitions, serializer, key_serializer, timestamp)
        self._topics[name] = decl
        return decl

    def declared_topic(self, name: str) -> TopicDecl | None:
        return self._topics.get(name)

    def source(self, topic: str | TopicDecl, *, key: Any = None, value: Any = None, partitions: int | None = None,
               serializer: str | None = None, key_serializer: str | None = None, timestamp: str | None = None,
               name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """A stream read from `topic`. `timestamp="ts"` takes event time from a field."""
        decl = self._declare(topic, key, value, partitions, serializer, key_serializer, timestamp)
        node = n.Source(name or decl.name, topic=decl.name, key_type=decl.key_type, value_type=decl.value_type,
                        partitions=decl.partitions, serializer=decl.serializer,
                        key_serializer=decl.key_serializer, timestamp_field=decl.timestamp_field,
                        loc=loc or caller_location())
        return self._add_root(node)

    def table(self, topic: str | TopicDecl, *, key: Any = None, value: Any = None, partitions: int | None = None,
              serializer: str | None = None, key_serializer: str | None = None, timestamp: str | None = None,
              bootstrap: bool = False, name: str | None = None, loc: SourceLocation | None = None) -> "Table":
        """A table read from `topic`: the latest value per key (Kafka Streams' KTable).

        `timestamp="ts"` takes its updates' event time from a field. `bootstrap=True` reads
        the table to its end before any stream joined with it gives a record (a GlobalKTable).

        >>> from dataflow import Flow
        >>> flow = Flow("shop")
        >>> customers = flow.table("customers", key=str, bootstrap=True)
        >>> flow.source("orders", key=str).join(customers, name="enriched").to("enriched-orders")
        >>> flow.topology().node("customers").bootstrap
        True
        """
        if not isinstance(bootstrap, bool):
            raise TypeError(f"bootstrap takes True or False, not {bootstrap!r}")
        decl = self._declare(topic, key, value, partitions, serializer, key_serializer, timestamp)
        node = n.TableSource(name or decl.name, topic=decl.name, key_type=decl.key_type, value_type=decl.value_type,
                             partitions=decl.partitions, serializer=decl.serializer,
                             key_serializer=decl.key_serializer, timestamp_field=decl.timestamp_field,
                             bootstrap=bootstrap, loc=loc or caller_location())
        handle = self._add_root(node)
        return Table(self, handle.node, handle.anchor)

    def every(self, interval: Duration, *, value: Any, name: str | None = None,
              loc: SourceLocation | None = None) -> "Stream":
        """A stream made by the clock: every `interval` one record with a null key, the tick
        time as its timestamp, and `value` evaluated at the tick (an expression, a constant or a
        dict of them: `{"service": "fraud", "at": fn.now()}`).

        The first tick comes one interval after the worker starts; ticks keep to that grid and
        skip the ones a busy worker missed. Named `every_<interval>` unless `name=` is given.

        >>> from dataflow import Flow, fn
        >>> flow = Flow("app")
        >>> flow.every("10s", value={"service": "fraud", "at": fn.now()}, name="heartbeat").to("heartbeats")
        >>> timer = flow.topology().node("heartbeat")
        >>> timer.kind, timer.interval_ms, sorted(flow.topology().successors("heartbeat"))
        ('timer', 10000, ['heartbeat.to_heartbeats'])
        """
        loc = loc or caller_location()
        interval_ms = parse_duration(interval)
        if callable(value) and not isinstance(value, (Col, type)):
            raise TypeError(f"{loc}: a timer's value is an expression or a constant, not a Python callable; "
                            f"call Python code with udf(\"package.module:function\")")
        node = n.Timer(name or f"every_{format_duration(interval_ms)}", interval_ms=interval_ms,
                       value=to_expr(value), loc=loc)
        return self._add_root(node)

    def _declare(self, topic: str | TopicDecl, key: Any, value: Any, partitions: int | None,
                 serializer: str | None, key_serializer: str | None, timestamp: str | None) -> TopicDecl:
        if isinstance(topic, TopicDecl):
            self._topics.setdefault(topic.name, topic)
            base = topic
        else:
            base = self._topics.get(topic) or TopicDecl(topic)
        decl = TopicDecl(
            base.name,
            from_python(key) if key is not None else base.key_type,
            from_python(value) if value is not None else base.value_type,
            partitions if partitions is not None else base.partitions,
            serializer or base.serializer,
            key_serializer or base.key_serializer,
            timestamp if timestamp is not None else base.timestamp_field,
        )
        self._topics[decl.name] = decl
        return decl

    def _add_root(self, node: n.Node) -> "Stream":
        if node.name in self._topology:
            raise ValueError(f"{node.loc}: a step named '{node.name}' already exists; give this one another name=")
        self._given.add(node.name)
        self._topology.add(node)
        return Stream(self, node.name, node.name)

    # ------------------------------------------------------------------ output
    def topology(self) -> Topology:
        """A copy of the IR graph built so far."""
        return self._topology.copy()

    def merge(self, *streams: "Stream", name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Fan-in: one stream of the events of all `streams`."""
        if len(streams) < 2:
            raise ValueError("merge needs at least two streams")
        return streams[0].merge(*streams[1:], name=name, loc=loc or caller_location())

    # ------------------------------------------------------------------ naming and adding (used by handles)
    def _name(self, anchor: str, step: str, kind: str, given: str | None, loc: SourceLocation) -> str:
        if given:
            if given in self._topology:
                raise ValueError(f"{loc}: a step named '{given}' already exists; names must be unique")
            self._given.add(given)
            return given
        base = f"{anchor}.{step}"
        if base not in self._topology:
            return base
        if kind in NAMED_STATE_KINDS:
            method = _METHOD_OF_KIND.get(kind, kind)
            raise ValueError(f"{loc}: this step would be named '{base}' like an earlier one; its topic or store "
                             f"name derives from it, so give it a name: .{method}(..., name=\"...\")")
        i = self._suffixes.get(base, 1) + 1
        while f"{base}_{i}" in self._topology:
            i += 1
        self._suffixes[base] = i
        return f"{base}_{i}"

    def _add(self, node: n.Node, inputs: list[Edge]) -> str:
        self._topology.add(node, inputs)
        return node.name

    def _anchor_for(self, node: n.Node) -> str | None:
        return node.name if node.kind in ANCHOR_KINDS or node.name in self._given else None


class _Handle:
    """Shared by streams and tables: a node of a flow plus the anchor its successors name from."""

    def __init__(self, flow: Flow, node: str, anchor: str, port: str | None = None):
        self.flow = flow
        self.node = node
        self.anchor = anchor
        self.port = port

    @property
    def name(self) -> str:
        return self.node

    def _edge(self, side: str | None = None) -> Edge:
        return Edge(self.node, self.port, side)

    def _then(self, make: Callable[[str], n.Node], step: str, kind: str, name: str | None,
              loc: SourceLocation | None, cls: type["_Handle"] | None = None,
              extra_inputs: list[Edge] | None = None, side: str | None = None) -> Any:
        loc = loc or caller_location()
        node_name = self.flow._name(self.anchor, step, kind, name, loc)
        node = make(node_name)
        node = dataclasses.replace(node, loc=loc)
        self.flow._add(node, [self._edge(side), *(extra_inputs or [])])
        anchor = self.flow._anchor_for(node) or self.anchor
        return (cls or type(self))(self.flow, node_name, anchor)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node}>"


class Stream(_Handle):
    """An unbounded sequence of keyed records. Every method returns a new handle."""

    # ---------------------------------------------------------------- stateless
    def filter(self, predicate: Any, *, name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Keep the events for which `predicate` (an expression or a callable of the value) holds."""
        pred = expr_or_callable(predicate)
        return self._then(lambda nm: n.Filter(nm, predicate=pred), "filter", "filter", name, loc)

    def map(self, fn: Any, *, name: str | None = None, output: Any = None, loc: SourceLocation | None = None) -> "Stream":
        """Replace each value: an expression, a dict of expressions (a record), or a callable."""
        expr = expr_or_callable(fn, output)
        return self._then(lambda nm: n.Map(nm, expr=expr), "map", "map", name, loc)

    def select(self, *fields: str, name: str | None = None, loc: SourceLocation | None = None,
               **computed: Any) -> "Stream":
        """Project to some fields, optionally adding computed ones: `select("user", total=col("a") + col("b"))`."""
        from .expressions import col
        record = {f.split(".")[-1]: col(f) for f in fields}
        record.update(computed)
        return self.map(record, name=name, loc=loc or caller_location())

    def flat_map(self, fn: Any, *, name: str | None = None, output: Any = None,
                 loc: SourceLocation | None = None) -> "Stream":
        """Replace each value with zero or more values: an expression giving a list, or a callable."""
        expr = expr_or_callable(fn, list[output] if output is not None else None)
        return self._then(lambda nm: n.FlatMap(nm, expr=expr), "flat_map", "flat_map", name, loc)

    def echo(self, *topics: str, name: str | None = None, serializer: str = "json",
             loc: SourceLocation | None = None) -> "Stream":
        """Also send every event to `topics`, and go on (Faust's `Stream.echo`)."""
        if not topics:
            raise ValueError("echo needs at least one topic")
        return self._then(lambda nm: n.Echo(nm, topics=tuple(topics), serializer=serializer), "echo", "echo", name, loc)

    def branch(self, *, name: str | None = None, default: str | None = None, loc: SourceLocation | None = None,
               **predicates: Any) -> "Branches":
        """Route each event to the first branch whose predicate holds.

        `b = s.branch(large=col("amount") > 1000, default="rest")`; then `b.large`, `b["rest"]`.
        """
        if not predicates:
            raise ValueError("branch needs at least one predicate: branch(large=col('amount') > 1000)")
        pairs = tuple((k, expr_or_callable(v)) for k, v in predicates.items())
        handle = self._then(lambda nm: n.Branch(nm, branches=pairs, default=default), "branch", "branch", name, loc)
        ports = [k for k, _ in pairs] + ([default] if default else [])
        return Branches(self.flow, handle.node, handle.anchor, ports)

    def merge(self, *others: "Stream", name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Fan-in: this stream's events and the others', as one stream."""
        extra = [o._edge() for o in others]
        return self._then(lambda nm: n.Merge(nm), "merge", "merge", name, loc, extra_inputs=extra)

    def call_agent(self, agent: Any, *, name: str | None = None, output: Any = None,
                   loc: SourceLocation | None = None) -> "Stream":
        """Ask a Python agent (an `@app.agent` function, or its import path
        `"package.module:agent"`) for each event, and go on with its reply as the value.

        The key stays. Events the agent yields nothing for (or replies null for) are dropped;
        an event it fails on goes to the dead-letter topic with the agent's error. `output=`
        declares what the agent replies, so later steps are type-checked. Asks go out a batch
        at a time. The worker running the pipeline runs the agent's app on its own broker.

        >>> from dataflow import Flow
        >>> flow = Flow("shop")
        >>> flow.source("orders").call_agent("storefront.pricing:quote").to("quotes")
        >>> node = flow.topology().node("orders.call_quote")
        >>> node.kind, node.target
        ('call_agent', 'storefront.pricing:quote')
        """
        loc = loc or caller_location()
        ref, obj = _agent_ref(agent, "call_agent", loc)
        value_type = from_python(output) if output is not None else ANY
        return self._then(lambda nm: n.CallAgent(nm, target=ref, value_type=value_type, agent=obj),
                          f"call_{_agent_label(ref)}", "call_agent", name, loc)

    def event_time(self, time: Any, *, name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Set each record's event time from a field name, an expression or a callable of the value:
        a timestamp (any declared unit, ISO-8601 text, a datetime) or an int of epoch ms.

        Every later window and join uses it, and records written to topics carry it as their
        timestamp. A record whose time is null, unusable or outside the plausible range
        (`min_event_time`, `max_future_skew`) goes to the dead-letter topic with the reason;
        a record whose value is null (a table's deletion) keeps its time.

        >>> from dataflow import Flow, col, fn
        >>> flow = Flow("ads")
        >>> flow.source("clicks").event_time(fn.parse_time(col("at"))).to("timed")
        >>> [n.kind for n in flow.topology().nodes()]
        ['source', 'event_time', 'sink']
        """
        expr = key_expr(time)
        return self._then(lambda nm: n.EventTime(nm, expr=expr), f"event_time_{label(expr)}", "event_time",
                          name, loc)

    def _with_topic_time(self, topic: str, loc: SourceLocation | None) -> "Stream":
        """This stream, with its event time taken from the field a declared topic names as its
        `event_time`: what is written there carries the time a reader of the topic would use."""
        decl = self.flow.declared_topic(topic)
        if decl is None or not decl.timestamp_field:
            return self
        from .expressions import col
        return self.event_time(col(decl.timestamp_field), loc=loc or caller_location())

    # ---------------------------------------------------------------- keys and topics
    def group_by(self, key: Any, *, name: str | None = None, partitions: int | None = None,
                 loc: SourceLocation | None = None) -> "Stream":
        """Re-key by a field, an expression or a callable, and repartition by the new key."""
        expr = key_expr(key)
        return self._then(lambda nm: n.GroupBy(nm, key=expr, partitions=partitions), f"by_{label(expr)}",
                          "group_by", name, loc)

    def select_key(self, key: Any, *, name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Re-key without moving records; the planner repartitions later if a stateful step needs it."""
        expr = key_expr(key)
        return self._then(lambda nm: n.GroupBy(nm, key=expr, repartition=False), f"key_{label(expr)}",
                          "select_key", name, loc)

    def through(self, topic: str, *, name: str | None = None, partitions: int | None = None,
                serializer: str = "json", loc: SourceLocation | None = None) -> "Stream":
        """Write to `topic` and continue reading from it. When `topic` is declared with an
        event-time field (`flow.topic(..., timestamp="ts")`), records go through with that time."""
        loc = loc or caller_location()
        return self._with_topic_time(topic, loc)._then(lambda nm: n.Through(nm, topic=topic, partitions=partitions, serializer=serializer),
                          f"through_{topic}", "through", name, loc)

    # ---------------------------------------------------------------- state
    def window(self, spec: WindowSpec, *, name: str | None = None, loc: SourceLocation | None = None) -> "Stream":
        """Assign events to windows (`tumbling`, `hopping`, `sliding`); follow with `aggregate`."""
        step = f"{spec.window}_{format_duration(spec.size_ms)}"
        if spec.step_ms is not None:
            step += f"_{format_duration(spec.step_ms)}"
        return self._then(lambda nm: n.Window(nm, window=spec.window, size_ms=spec.size_ms, step_ms=spec.step_ms,
                                              grace_ms=spec.grace_ms, expires_ms=spec.expires_ms, time=spec.time,
                                              time_field=spec.time_field), step, "window", name, loc)

    def aggregate(self, aggregations: dict[str, n.Aggregation] | None = None, *, name: str | None = None,
                  emit: str = "changes", loc: SourceLocation | None = None, **named: n.Aggregation) -> "Table":
        """Incremental aggregations per key (and window): `aggregate(total=agg.sum("amount"), n=agg.count())`.

        `emit="final"` (windowed only) emits each window once, when it closes.
        """
        items = {**(aggregations or {}), **named}
        if not items:
            raise ValueError("aggregate needs at least one aggregation: aggregate(n=agg.count())")
        if emit not in n.EMIT_MODES:
            raise ValueError(f"emit must be 'changes' or 'final', not {emit!r}")
        aggs = tuple(dataclasses.replace(a, output=k) for k, a in items.items())
        return self._then(lambda nm: n.Aggregate(nm, aggregations=aggs, emit=emit), "aggregate", "aggregate",
                          name, loc, cls=Table)

    def count(self, *, name: str | None = None, emit: str = "changes", loc: SourceLocation | None = None) -> "Table":
        """Shorthand for `aggregate(count=agg.count())`."""
        from .windows import agg
        return self.aggregate({"count": agg.count()}, name=name, emit=emit, loc=loc or caller_location())

    def to_table(self, name: str | None = None, *, loc: SourceLocation | None = None) -> "Table":
        """Materialize as a table holding the latest value per key."""
        return self._then(lambda nm: n.ToTable(nm), "table", "table", name, loc, cls=Table)

    def join(self, other: "Stream | Table", *, how: str = "inner", within: Duration | None = None,
             on: Any = None, right_on: Any = None, condition: Any = None, name: str | None = None,
             loc: SourceLocation | None = None) -> "Stream":
        """Join on keys with a stream (`within` a duration) or a table (its latest value).

        `on`/`right_on` re-key this stream / the other stream first. Right-hand fields
        whose names clash with the left's are prefixed with the right input's name.
        `condition` must also hold for two records to match; it reads their joined row,
        as the join would emit it. A left record that matches nothing is still emitted by
        a left or outer join, with the right fields null:

        >>> from dataflow import Flow, Record, col
        >>> from dataflow.planner import check
        >>> class Ad(Record):
        ...     imp_id: str
        ...     ad_id: str
        >>> flow = Flow("ads")
        >>> imps, clicks = flow.source("impressions", value=Ad), flow.source("clicks", value=Ad)
        >>> clicks.join(imps, how="left", within="10m", on="ad_id", right_on="ad_id",
        ...             condition=col("imp_id") == col("impressions_imp_id"), name="attributed").print()
        >>> check(flow.topology())
        []
        """
        loc = loc or caller_location()
        if how not in n.JOIN_HOWS:
            raise ValueError(f"how must be one of {', '.join(n.JOIN_HOWS)}, not {how!r}")
        cond = expr_or_callable(condition) if condition is not None else None
        # A named join names its re-keys too, so name= is always enough to resolve a clash.
        left: Stream = self.select_key(on, name=name and f"{name}.left_key", loc=loc) if on is not None else self
        right: _Handle = other
        if right_on is not None:
            if isinstance(other, Table):
                raise ValueError(f"{loc}: right_on re-keys a stream; a table is joined on its own key")
            right = other.select_key(right_on, name=name and f"{name}.right_key", loc=loc)
        within_ms = parse_duration(within) if within is not None else None
        prefix = other.anchor.replace(".", "_")
        return left._then(lambda nm: n.Join(nm, how=how, within_ms=within_ms, right_prefix=prefix, condition=cond),
                          f"join_{prefix}", "join", name, loc, cls=Stream,
                          extra_inputs=[right._edge("right")], side="left")

    # ---------------------------------------------------------------- sinks
    def to(self, topic: str, *, name: str | None = None, serializer: str | None = None, value: Any = None,
           partitions: int | None = None, loc: SourceLocation | None = None) -> None:
        """Send every event to `topic`. When `topic` is declared with an event-time field
        (`flow.topic(..., timestamp="ts")`), each record is written with that time."""
        loc = loc or caller_location()
        decl = self.flow.declared_topic(topic)
        vtype = from_python(value) if value is not None else (decl.value_type if decl and decl.value_type != ANY else None)
        ser = serializer or (decl.serializer if decl else "json")
        parts = partitions if partitions is not None else (decl.partitions if decl else None)
        self._with_topic_time(topic, loc)._then(
            lambda nm: n.Sink(nm, sink="topic", target=topic, serializer=ser, value_type=vtype, partitions=parts),
            f"to_{topic}", "sink", name, loc)

    def print(self, *, name: str | None = None, loc: SourceLocation | None = None) -> None:
        """Write every event to standard output as a JSON line."""
        self._then(lambda nm: n.Sink(nm, sink="stdout", target="-"), "print", "sink", name, loc)

    def to_file(self, path: str, *, name: str | None = None, loc: SourceLocation | None = None) -> None:
        """Append every event to `path` as a JSON line."""
        self._then(lambda nm: n.Sink(nm, sink="file", target=path), "to_file", "sink", name, loc)

    def to_agent(self, agent: Any, *, name: str | None = None, loc: SourceLocation | None = None) -> None:
        """Send every event (key and value) to a Python agent, without waiting for a reply
        (Faust's `cast`): an `@app.agent` function, or its import path `"package.module:agent"`."""
        loc = loc or caller_location()
        ref, obj = _agent_ref(agent, "to_agent", loc)
        self._then(lambda nm: n.Sink(nm, sink="agent", target=ref, agent=obj), f"to_agent_{_agent_label(ref)}",
                   "sink", name, loc)

    def sink(self, func: Callable[..., Any], *, name: str | None = None, loc: SourceLocation | None = None) -> None:
        """Call `func(value)` (or `await func(value)`) for every event."""
        ref = callable_ref(func)
        self._then(lambda nm: n.Sink(nm, sink="callable", target=ref, func=func),
                   f"sink_{label(expr_or_callable(func))}", "sink", name, loc)


def _agent_ref(agent: Any, method: str, loc: SourceLocation) -> tuple[str, Any]:
    """(import path, the agent or None) for an agent given as itself or by import path."""
    if isinstance(agent, str):
        if not AGENT_PATH.match(agent):
            raise ValueError(f"{loc}: '{agent}' is not an agent's import path; "
                             f"write it as \"package.module:agent\"")
        return agent, None
    # Duck-typed: the builder does not import the runtime. An agent can be asked and cast to.
    fun = getattr(agent, "fun", None)
    if fun is None or not all(hasattr(agent, a) for a in ("app", "kvjoin", "cast_many")):
        raise TypeError(f"{loc}: {method} takes an agent (a function decorated with @app.agent) or its import "
                        f"path \"package.module:agent\", not {agent!r}")
    return callable_ref(fun), agent


def _agent_label(ref: str) -> str:
    """`call_quote` for `storefront.pricing:quote`: the name part of the import path."""
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in ref.split(":")[-1].split(".")[-1])


class Table(_Handle):
    """Keyed state: the result of `aggregate`/`to_table`, or a table read from a topic."""

    def changes(self, *, name: str | None = None, loc: SourceLocation | None = None) -> Stream:
        """The stream of this table's updates."""
        return self._then(lambda nm: n.Changes(nm), "changes", "changes", name, loc, cls=Stream)

    def join(self, other: "Table", *, how: str = "inner", condition: Any = None, name: str | None = None,
             loc: SourceLocation | None = None) -> "Table":
        """Table-table join on keys; re-emits whenever either side changes.

        `condition` must also hold for the two rows of a key to match; it reads their joined
        row. Where it is false, an inner join has no row for the key (a tombstone is sent)
        and a left join has the left row with the right fields null:

        >>> from dataflow import Flow, Record, col
        >>> from dataflow.planner import check
        >>> class Member(Record):
        ...     name: str
        ...     tier: str
        >>> flow = Flow("crm")
        >>> customers = flow.table("customers", key=str, value=Member)
        >>> vips = flow.table("vips", key=str, value=Member)
        >>> customers.join(vips, how="left", condition=col("tier") == col("vips_tier"), name="same_tier").to("out")
        >>> check(flow.topology())
        []
        """
        loc = loc or caller_location()
        if how not in n.JOIN_HOWS:
            raise ValueError(f"how must be one of {', '.join(n.JOIN_HOWS)}, not {how!r}")
        cond = expr_or_callable(condition) if condition is not None else None
        prefix = other.anchor.replace(".", "_")
        return self._then(lambda nm: n.Join(nm, how=how, right_prefix=prefix, condition=cond), f"join_{prefix}",
                          "join", name, loc, cls=Table, extra_inputs=[other._edge("right")], side="left")

    def to(self, topic: str, **kwargs: Any) -> None:
        """Send every change of the table to `topic`."""
        loc = kwargs.pop("loc", None) or caller_location()
        self.changes(loc=loc).to(topic, loc=loc, **kwargs)


class Branches:
    """The outputs of `Stream.branch`: `branches.large` or `branches["large"]`."""

    def __init__(self, flow: Flow, node: str, anchor: str, ports: list[str]):
        self._flow, self._node, self._anchor, self._ports = flow, node, anchor, ports

    def __getitem__(self, port: str) -> Stream:
        if port not in self._ports:
            raise KeyError(f"no branch '{port}'; branches are: {', '.join(self._ports)}")
        return Stream(self._flow, self._node, f"{self._anchor}.{port}", port=port)

    def __getattr__(self, port: str) -> Stream:
        if port.startswith("_"):
            raise AttributeError(port)
        try:
            return self[port]
        except KeyError as e:
            raise AttributeError(str(e)) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (self[p] for p in self._ports)


__all__ = ["Flow", "Stream", "Table", "Branches", "TopicDecl", "Col"]
