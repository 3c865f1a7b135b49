"""The state of a running plan: open, recover, commit and close table partitions.

Commit protocol (the changelog is the truth, the store a cache of it):

1. :meth:`StateManager.changelog` collects, for every table partition changed since the
   last commit, one changelog record per changed key (its last value, or a tombstone),
   plus the partition's stream time when it moved;
2. the worker writes them with the batch's outputs and the consumer offsets -- on the
   embedded local log in ONE atomic transaction; on other transports produced and
   flushed before the offsets are committed;
3. :meth:`StateManager.flush` writes each partition's changes and the changelog offset
   they end at into its store, in one batch.

A crash between 2 and 3 leaves a store behind its changelog, never ahead of it; on
assignment :meth:`StateManager.assign` replays the changelog from the store's recorded
offset to the end (for a table read from a topic: up to the group's committed offset),
so a lost or stale store is rebuilt before its partition is consumed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..planner.plan import ExecutionPlan
from ..state.stores import open_store
from ..state.table import PLAIN_KEYS, WINDOWED_KEYS, TablePartition
from ..transport.base import TP, ProducerRecord, Transport, UnknownTopicError
from .tables import Table

__all__ = ["META_HEADER", "RestoreError", "StateManager", "make_tables"]

logger = logging.getLogger(__name__)

#: A changelog record carrying partition metadata (its value), not a key's value.
META_HEADER = "dataflow.meta"
_STREAM_TIME = b"stream_time"
_WATERMARKS = b"watermarks"  # the per-origin watermarks of a partition fed by an internal topic
_READ_BATCH = 10_000
_EMPTY_READS = 20
# Below this many changes a store write takes microseconds: cheaper inline than a thread hop.
_INLINE_FLUSH = 512


class RestoreError(RuntimeError):
    """A table partition could not be rebuilt from its changelog."""


def make_tables(plan: ExecutionPlan) -> dict[str, Table]:
    """One :class:`Table` per store of the plan (no partitions open yet)."""
    tables = {}
    for store in plan.stores:
        source = any(t.name == store.changelog and t.role == "table-source" for t in plan.topics)
        keys = WINDOWED_KEYS if store.window is not None else PLAIN_KEYS
        tables[store.name] = Table(store.name, store.changelog, keys=keys, source_changelog=source)
    return tables


@dataclass
class _Pending:
    table: Table
    part: TablePartition
    changes: list[tuple[bytes, bytes | None]]
    first: int  # index of its first changelog record in the commit's records
    count: int


class StateManager:
    """Owns the tables of one worker: which partitions are open, and their commits.

    ``backend``: ``memory`` (state lives as long as the process, as on ``memory://``) or
    ``leveldb`` (one LevelDB per table partition under ``data_dir/state``).

    Without a ``plan`` (the tables of a Python :class:`~dataflow.runtime.app.App`), the
    owner says which partitions to open and close (:meth:`open`, :meth:`close_partitions`)
    instead of :meth:`assign` and :meth:`revoke` deriving them from topic partitions.
    """

    def __init__(self, plan: ExecutionPlan | None, transport: Transport, backend: str, data_dir: str | Path | None,
                 tables: dict[str, Table] | None = None) -> None:
        self.plan = plan
        self.transport = transport
        self.backend = backend
        self.data_dir = data_dir
        if tables is None:
            if plan is None:
                raise ValueError("a state manager without a plan needs its tables")
            tables = make_tables(plan)
        self.tables = tables
        self.on_assigned: list[Callable[[int, str], None]] = []  # (partition, store) hooks of the steps
        self.on_revoked: list[Callable[[int, str], None]] = []
        # topic -> the stores whose partitions follow that topic's partitions
        self._stores_of_topic: dict[str, list[str]] = {}
        for agent in plan.agents if plan is not None else ():
            for _, topic in agent.entries:
                self._stores_of_topic.setdefault(topic, []).extend(
                    s for s in agent.stores if s not in self._stores_of_topic.get(topic, []))
        self._pending: list[_Pending] = []
        self.restored = 0

    @property
    def has_state(self) -> bool:
        return bool(self.tables)

    def stores_for(self, tps: Iterable[TP]) -> list[tuple[str, int]]:
        """The ``(store, partition)`` pairs that belong to these topic partitions."""
        out = set()
        for tp in tps:
            for store in self._stores_of_topic.get(tp.topic, []):
                if tp.partition < self.plan.store(store).partitions:
                    out.add((store, tp.partition))
        return sorted(out)

    # -- assignment ------------------------------------------------------------------
    async def assign(self, tps: Iterable[TP], committed: Callable[[TP], Awaitable[int | None]]) -> None:
        """Open and recover the table partitions of newly assigned topic partitions."""
        await self.open(self.stores_for(tps), committed)

    async def open(self, pairs: Iterable[tuple[str, int]],
                   committed: Callable[[TP], Awaitable[int | None]]) -> None:
        """Open and recover these ``(store, partition)`` pairs (those not open yet)."""
        loop = asyncio.get_running_loop()
        opened: list[tuple[str, int]] = []
        for name, p in pairs:
            table = self.tables[name]
            if p in table.partitions:
                continue
            store = await loop.run_in_executor(None, open_store, self.backend, name, p, self.data_dir)
            part = TablePartition(store, table.keys)
            await self._recover(table, part, committed)
            table.partitions[p] = part
            opened.append((name, p))
        for name, p in opened:
            for hook in self.on_assigned:
                hook(p, name)

    async def _recover(self, table: Table, part: TablePartition,
                       committed: Callable[[TP], Awaitable[int | None]]) -> None:
        tp = TP(table.changelog, part.partition)
        start = part.changelog_offset
        if table.source_changelog:
            end = await committed(tp) or 0
        else:
            try:
                end = await self.transport.end_offset(tp)  # type: ignore[attr-defined]
            except UnknownTopicError:
                return  # never written (a data directory queried before any run): nothing to restore
        if end <= start:
            return
        loop = asyncio.get_running_loop()
        position, restored, empty = start, 0, 0
        while position < end:
            messages = await self.transport.read_partition(tp, position, min(_READ_BATCH, end - position))  # type: ignore[attr-defined]
            if not messages:
                # A remote log may answer a fetch empty (still seeking); stopping here would
                # leave the table silently incomplete, so retry a bounded number of times.
                empty += 1
                if empty >= _EMPTY_READS:
                    raise RestoreError(f"cannot restore {table.name}[{part.partition}]: {tp.topic}[{tp.partition}] "
                                       f"returned nothing at offset {position} of {end}")
                continue
            empty = 0
            records, stream_time, watermarks = [], None, None
            for m in messages:
                kind = next((v for h, v in m.headers if h == META_HEADER), None) if m.key is None else None
                if kind == _WATERMARKS:
                    watermarks = orjson.loads(m.value or b"{}")
                elif kind is not None:
                    stream_time = max(stream_time or 0, int(orjson.loads(m.value or b"0")))
                else:
                    records.append((m.key, m.value))
            position = messages[-1].offset + 1
            restored += await loop.run_in_executor(None, part.restore, records, position, stream_time, watermarks)
        self.restored += restored
        table.source_offsets[part.partition] = position if table.source_changelog else 0
        logger.info("restored %s[%d]: %d changelog records (offsets %d..%d)",
                    table.name, part.partition, restored, start, position)

    def discard(self, tps: Iterable[TP]) -> None:
        """Forget the unflushed writes of these partitions (their input will be replayed)."""
        for name, p in self.stores_for(tps):
            part = self.tables[name].partitions.get(p)
            if part is not None:
                part.dirty.clear()
                part.cache.clear()

    async def revoke(self, tps: Iterable[TP]) -> None:
        """Close the table partitions of revoked topic partitions (commit first)."""
        await self.close_partitions(self.stores_for(tps))

    async def close_partitions(self, pairs: Iterable[tuple[str, int]]) -> None:
        """Close these ``(store, partition)`` pairs where open (commit first)."""
        for name, p in pairs:
            if p in self.tables[name].partitions:
                await self._close(self.tables[name], p)

    async def close(self) -> None:
        """Close every open partition (commit first)."""
        for table in self.tables.values():
            for p in sorted(table.partitions):
                await self._close(table, p)

    async def _close(self, table: Table, p: int) -> None:
        part = table.partitions[p]
        for hook in self.on_revoked:
            hook(p, table.name)
        if part.dirty:
            raise RuntimeError(f"table {table.name}[{p}] closed with unflushed writes; commit first")
        del table.partitions[p]
        table.source_offsets.pop(p, None)
        await asyncio.get_running_loop().run_in_executor(None, part.store.close)

    # -- commits ---------------------------------------------------------------------
    def changelog(self) -> list[ProducerRecord]:
        """Changelog records for everything changed since the last flush (remembered for it)."""
        records: list[ProducerRecord] = []
        self._pending = []
        for table in self.tables.values():
            for p, part in sorted(table.partitions.items()):
                if not part.dirty and not part.stream_time_changed and not table.source_changelog:
                    continue
                changes = part.changes()
                first = len(records)
                if not table.source_changelog:
                    to_changelog = table.keys.to_changelog
                    records.extend(ProducerRecord(table.changelog, to_changelog(key), value, p)
                                   for key, value in changes)
                    if part.stream_time_changed and part.stream_time is not None:
                        records.append(ProducerRecord(table.changelog, None, orjson.dumps(part.stream_time), p,
                                                      None, ((META_HEADER, _STREAM_TIME),)))
                    if part.stream_time_changed and part.watermarks:
                        records.append(ProducerRecord(table.changelog, None, orjson.dumps(part.watermarks), p,
                                                      None, ((META_HEADER, _WATERMARKS),)))
                if changes or len(records) > first or table.source_changelog:
                    self._pending.append(_Pending(table, part, changes, first, len(records) - first))
        return records

    async def flush(self, results: list[tuple[int, int]]) -> None:
        """Write the remembered changes into the stores, each with the changelog offset it ends at.

        ``results``: ``(partition, offset)`` of each record :meth:`changelog` returned.
        """
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for item in pending:
            if item.table.source_changelog:
                offset = item.table.source_offsets.get(item.part.partition, item.part.changelog_offset)
            elif item.count:
                offset = results[item.first + item.count - 1][1] + 1
            else:
                offset = item.part.changelog_offset
            if len(item.changes) > _INLINE_FLUSH:
                await loop.run_in_executor(None, item.part.flush, item.changes, offset)
            else:
                item.part.flush(item.changes, offset)

    def dirty(self) -> bool:
        return any(part.dirty or part.stream_time_changed for t in self.tables.values() for part in t.partitions.values())
