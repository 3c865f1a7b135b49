"""Type factories for the builder: types that Python annotations cannot say by themselves."""
from __future__ import annotations

from ..ir.types import Type, timestamp_type


def Timestamp(unit: str = "ms") -> Type:  # noqa: N802 - used where a type goes, so it reads like one
    """A timestamp whose numbers are written in `unit` (s, ms, us or ns) on a topic.

    Usable as a `Record` field annotation or as a topic's value type. Numbers are read in
    that unit, ISO-8601 text in any unit; inside the pipeline the value is epoch milliseconds.
    A plain `datetime` annotation is `Timestamp("ms")`.

    >>> from dataflow import Record, Timestamp
    >>> class Click(Record):
    ...     user: str
    ...     ts: Timestamp("s")
    >>> Click.__dataflow_schema__.describe()
    'Click { user: str, ts: timestamp(s) }'
    """
    return timestamp_type(unit)
