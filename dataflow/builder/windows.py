"""Window specs and aggregation helpers for the builder.

>>> w = tumbling("1m", grace="10s", on="ts")
>>> (w.window, w.size_ms, w.grace_ms, w.time_field)
('tumbling', 60000, 10000, ('ts',))
>>> agg.sum("amount").function
'sum'
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from ..ir.durations import parse_duration
from ..ir.nodes import Aggregation
from .expressions import callable_ref, col, expr_or_callable

Duration = str | int | float | timedelta


@dataclass(frozen=True)
class WindowSpec:
    window: str
    size_ms: int
    step_ms: int | None = None
    grace_ms: int = 0
    expires_ms: int | None = None
    time: str = "message"
    time_field: tuple[str, ...] | None = None


def _spec(window: str, size: Duration, step: Duration | None, grace: Duration, expires: Duration | None,
          on: str | None, time: str | None) -> WindowSpec:
    if time is None:
        time = "event" if on else "message"
    if time not in ("event", "message", "processing"):
        raise ValueError(f"time must be 'event', 'message' or 'processing', not {time!r}")
    if time == "event" and not on:
        raise ValueError("event-time windows need the field that holds the time: on='ts'")
    return WindowSpec(window, parse_duration(size), parse_duration(step) if step is not None else None,
                      parse_duration(grace), parse_duration(expires) if expires is not None else None,
                      time, tuple(on.split(".")) if on else None)


def tumbling(size: Duration, *, grace: Duration = 0, expires: Duration | None = None,
             on: str | None = None, time: str | None = None) -> WindowSpec:
    """Fixed, non-overlapping windows: `tumbling("1m", on="ts", grace="10s")`."""
    return _spec("tumbling", size, None, grace, expires, on, time)


def hopping(size: Duration, step: Duration, *, grace: Duration = 0, expires: Duration | None = None,
            on: str | None = None, time: str | None = None) -> WindowSpec:
    """Overlapping windows of `size` starting every `step`: `hopping("10m", "1m")`."""
    return _spec("hopping", size, step, grace, expires, on, time)


def sliding(size: Duration, *, grace: Duration = 0, expires: Duration | None = None,
            on: str | None = None, time: str | None = None) -> WindowSpec:
    """Windows over the `size` before each event (Kafka Streams' sliding windows)."""
    return _spec("sliding", size, None, grace, expires, on, time)


def session(gap: Duration, *, grace: Duration = 0, expires: Duration | None = None,
            on: str | None = None, time: str | None = None) -> WindowSpec:
    """Sessions of activity per key, split by `gap` of inactivity (Kafka Streams' session windows).

    A session holds a key's events from its first to its last, each within `gap` of the
    next; an event that bridges two sessions merges them. A session closes once stream
    time passes its last event plus `gap` plus `grace`:

    >>> s = session("30m", grace="1m", on="ts")
    >>> (s.window, s.size_ms, s.grace_ms)
    ('session', 1800000, 60000)
    """
    return _spec("session", gap, None, grace, expires, on, time)


class _Aggregations:
    """`agg.count()`, `agg.sum("amount")`, ... — the right-hand sides of `aggregate(...)`."""

    @staticmethod
    def count() -> Aggregation:
        return Aggregation("", "count")

    @staticmethod
    def sum(field: Any) -> Aggregation:
        return Aggregation("", "sum", expr_or_callable(field))

    @staticmethod
    def min(field: Any) -> Aggregation:
        return Aggregation("", "min", expr_or_callable(field))

    @staticmethod
    def max(field: Any) -> Aggregation:
        return Aggregation("", "max", expr_or_callable(field))

    @staticmethod
    def avg(field: Any) -> Aggregation:
        return Aggregation("", "avg", expr_or_callable(field))

    @staticmethod
    def collect(field: Any = None) -> Aggregation:
        """Every value, in arrival order (a list)."""
        return Aggregation("", "collect", expr_or_callable(field) if field is not None else col("_value").expr)

    @staticmethod
    def set(field: Any = None) -> Aggregation:
        """The distinct values, sorted (Faust's SetTable)."""
        return Aggregation("", "set", expr_or_callable(field) if field is not None else col("_value").expr)

    @staticmethod
    def latest(field: Any = None) -> Aggregation:
        return Aggregation("", "latest", expr_or_callable(field) if field is not None else col("_value").expr)

    @staticmethod
    def reduce(reducer: Callable[[Any, Any], Any] | str, field: Any = None, *, initial: Any = None) -> Aggregation:
        """A custom reducer `(accumulator, value) -> accumulator`, a callable or an import path."""
        arg = expr_or_callable(field) if field is not None else col("_value").expr
        if isinstance(reducer, str):
            if ":" not in reducer:
                raise ValueError(f"reducer path {reducer!r} must look like 'package.module:function'")
            return Aggregation("", "reduce", arg, reducer=reducer, initial=initial)
        return Aggregation("", "reduce", arg, reducer=callable_ref(reducer), reducer_func=reducer, initial=initial)


agg = _Aggregations()
count = agg.count
sum_ = agg.sum
min_ = agg.min
max_ = agg.max
avg = agg.avg
collect = agg.collect
set_ = agg.set
latest = agg.latest
reduce = agg.reduce
