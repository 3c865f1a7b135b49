"""Tables of a running plan: partitions that open, recover, commit and close.

A :class:`Table` is one store of the plan (an aggregate, a materialized stream, a table
read from a topic, one side of a windowed join, or the event buffer of a sliding window)
with the partitions this worker owns. Steps read and write its partitions during a batch;
the :class:`~dataflow.runtime.state.StateManager` opens them on assignment, rebuilds them
from their changelog, and flushes them at commits.

>>> t = Table("counts", "app-counts-changelog")
>>> from dataflow.state.table import memory_partition
>>> t.partitions[0] = memory_partition("counts", 0)
>>> t.partition(0).partition
0
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..state.table import PLAIN_KEYS, KeyCodec, TablePartition

__all__ = ["Table", "TableNotAssigned"]


class TableNotAssigned(KeyError):
    """A record reached a table partition this worker does not own."""

    def __str__(self) -> str:
        return str(self.args[0])


class Table:
    """One store of the plan, as seen by the steps that use it.

    ``source_changelog``: the table is read from a topic that is its own changelog (a
    table source); it writes no changelog records, and its recorded offset is the source
    offset it has applied up to. ``present`` turns a stored value into what users see
    (an aggregate stores accumulators and presents the finished row).
    """

    def __init__(self, name: str, changelog: str, *, keys: KeyCodec = PLAIN_KEYS,
                 source_changelog: bool = False, present: Callable[[Any, Any], Any] | None = None) -> None:
        self.name = name
        self.changelog = changelog
        self.keys = keys
        self.source_changelog = source_changelog
        self.present = present or (lambda key, value: value)
        self.partitions: dict[int, TablePartition] = {}
        # For a table source: the next source offset to apply, per partition.
        self.source_offsets: dict[int, int] = {}

    def partition(self, partition: int) -> TablePartition:
        try:
            return self.partitions[partition]
        except KeyError:
            raise TableNotAssigned(f"table {self.name!r} partition {partition} is not assigned to this worker; "
                                   "hint: the input topic has more partitions than the table") from None

    def rows(self) -> list[tuple[Any, Any]]:
        """Every ``(key, presented value)`` of the owned partitions, in stored-key order."""
        items = sorted(((key, value) for part in self.partitions.values() for key, value in part.range()),
                       key=lambda item: item[0])
        return [(decoded, self.present(decoded, value))
                for decoded, value in ((self.keys.decode(key), value) for key, value in items)]
