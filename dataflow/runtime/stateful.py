"""Stateful steps: tables, aggregates (plain and windowed) and joins.

Each step reads and writes the partition of its table that the record came from (the
partition of the source message in ``meta``: the planner co-partitions every stateful
step's inputs). Steps are synchronous over a batch; what a batch *closes* (final window
results, unmatched outer-join rows) is emitted by :meth:`StatefulStep.tick`, which the
worker calls after each batch, and expiry runs in :meth:`StatefulStep.before_commit`.

Time: each table partition keeps a *stream time*, the highest event time it has seen
(persisted with the table, so a restart decides exactly as an uninterrupted run would).
A partition fed from a repartition or through topic follows the watermark of its
upstream partitions instead (`runtime.watermarks`); steps see no difference: they call
``part.advance(t)`` and use what it returns.

End of a bounded input: :meth:`StatefulStep.finish` emits what only the passing of more
event time would have emitted, without moving the stream times that are persisted.
"""
from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..ir import nodes as n
from ..ir.types import RecordType, strip_optional
from ..transport.base import Message
from .aggregates import Aggregator
from .engine import Dead, Rec, Step
from .tables import Table
from .windows import WindowSpec
from ..state.table import ABSENT

__all__ = ["AggregateStep", "JoinStep", "StatefulStep", "TableStep", "event_time_getter"]


def _origin(name: str, partition: int, ts: int) -> Message:
    """The `meta` of a record a step makes on its own (a closed window, an unmatched row)."""
    return Message(name, partition, -1, None, None, ts)


def event_time_getter(window: n.Window, guard: Callable[[Any], int] | None = None) -> Callable[[Rec], int]:
    """How a window step reads an event's time: a value field, the record time, or the clock.

    A field's time is checked by `guard` (runtime.event_time): a missing, null, unusable or
    implausible time raises, and the step dead-letters the record with that reason."""
    if window.time == "processing":
        return lambda rec: time.time_ns() // 1_000_000
    path = window.time_field
    if window.time == "event" and path:
        from .event_time import EventTimeGuard, field_time

        if isinstance(guard, EventTimeGuard):
            # The wall clock is read again only for a time past the latest one accepted so
            # far: it only moves forward, so a time at or below that bound passes as it would
            # now (reading the clock per record cost more than the rest of this check).
            low, bound = guard.low_ms, [guard.high_ms()]
            name = path[0] if len(path) == 1 else None

            def from_field(rec: Rec) -> int:
                value = rec[1]
                ts = value.get(name) if name is not None and type(value) is dict else None
                if type(ts) is not int:
                    ts = field_time(value, path)
                if low <= ts <= bound[0]:
                    return ts
                bound[0] = guard.high_ms()
                return guard(ts)
            return from_field

        check = guard or int

        def from_field(rec: Rec) -> int:
            return check(field_time(rec[1], path))
        return from_field
    return lambda rec: rec[2]


class StatefulStep(Step):
    """A step with table state; counts the late events it drops."""

    late = 0

    def tick(self) -> None:
        """After a batch: emit what the batch closed."""

    def before_commit(self) -> None:
        """Before the changelog is written: delete what expired."""

    def on_assigned(self, partition: int) -> None:
        """A partition's tables were opened and recovered."""

    def on_revoked(self, partition: int) -> None:
        """A partition's tables are about to close."""

    def finish(self) -> None:
        """The end of a bounded input: emit, as if event time passed everything, what is
        still waiting for time to pass (open ``emit final`` windows, unmatched join rows).

        Called once, after the step's inputs have all ended and after its last ``tick()``;
        what it emits must not be emitted again by a later ``tick()`` of the same run. The
        persisted stream times stay as they are, so a later run over the same state goes on
        from the real event time (and closes these windows and rows again when it passes).
        """


class TableStep(StatefulStep):
    """The latest value per key (a materialized stream, or a table read from a topic).

    A null value deletes the key (a tombstone) and passes on as an update.
    """

    def __init__(self, name: str, table: Table, dead: Dead) -> None:
        super().__init__(name)
        self.table = table
        self.dead = dead

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        table, dumps, out = self.table, orjson.dumps, []
        offsets = table.source_offsets if table.source_changelog else None
        for rec in batch:
            k, v, _ts, meta = rec
            try:
                part = table.partition(meta.partition)
                key = dumps(k)
                if v is None:
                    part.delete(key)
                else:
                    part.put(key, v)
                if offsets is not None:
                    offsets[meta.partition] = meta.offset + 1
            except Exception as e:  # noqa: BLE001 - one bad record goes to the dead letters
                self.dead(rec, e, self.name)
                continue
            out.append(rec)
        self.emit(out)


class AggregateStep(StatefulStep):
    """Incremental aggregations per key, or per key and window.

    ``emit="changes"`` sends the updated row on every event; ``emit="final"`` (windowed
    only) sends each window's row once, when the window closes.
    """

    def __init__(self, node: n.Aggregate, aggregator: Aggregator, table: Table, dead: Dead,
                 window: WindowSpec | None = None, time_of: Callable[[Rec], int] | None = None,
                 events: Table | None = None) -> None:
        super().__init__(node.name)
        self.aggregator = aggregator
        self.table = table
        self.dead = dead
        self.window = window
        self.time_of = time_of or (lambda rec: rec[2])
        self.events_table = events
        self.changes = node.emit == "changes"
        self._before: dict[int, int | None] = {}  # stream time of each partition before this batch
        # Stream time of each partition at the last tick: a watermark can move it without
        # any record reaching this step, and what that closes is emitted all the same.
        self._ticked: dict[int, int | None] = {}
        self._expired_at: dict[int, int] = {}

    def present(self, key: Any, acc: Any) -> Any:
        """The row users see for a stored accumulator (with window bounds if windowed)."""
        row = self.aggregator.result(acc)
        if self.window is not None:
            row["window_start"] = key[1]
            row["window_end"] = key[1] + self.window.size
        return row

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        out: list[Rec] = []
        if self.window is None:
            self._push_plain(batch, out)
        elif self.window.kind == "sliding":
            self._push_sliding(batch, out)
        else:
            self._push_windowed(batch, out)
        self.emit(out)

    def _push_plain(self, batch: list[Rec], out: list[Rec]) -> None:
        table, dumps, initial = self.table, orjson.dumps, self.aggregator.initial
        add, result, changes, append = self.aggregator.add, self.aggregator.result, self.changes, out.append
        last_p, part = -1, None
        for rec in batch:
            k, v, ts, meta = rec
            try:
                if meta.partition != last_p:
                    part = table.partition(meta.partition)
                    last_p = meta.partition
                key = dumps(k)
                acc = part.get(key)  # type: ignore[union-attr]
                if acc is ABSENT:
                    acc = initial()
                acc = add(acc, k, v, ts, meta)
                part.put(key, acc)  # type: ignore[union-attr]
                if changes:
                    append((k, result(acc), ts, meta))
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def _partition(self, p: int) -> Any:
        part = self.table.partition(p)
        if p not in self._before:
            self._before[p] = part.stream_time
        return part

    def _push_windowed(self, batch: list[Rec], out: list[Rec]) -> None:
        w = self.window
        assert w is not None
        encode, initial, add = self.table.keys.encode, self.aggregator.initial, self.aggregator.add
        close_after = w.span + w.grace
        for rec in batch:
            k, v, ts, meta = rec
            try:
                part = self._partition(meta.partition)
                t = self.time_of(rec)
                stream_time = part.advance(t)
                updated = False
                for start in w.starts(t):
                    if start + close_after <= stream_time:
                        continue  # this window has closed
                    key = encode((k, start))
                    acc = part.get(key)
                    if acc is ABSENT:
                        acc = initial()
                    acc = add(acc, k, v, ts, meta)
                    part.put(key, acc)
                    updated = True
                    if self.changes:
                        out.append((k, self.present((k, start), acc), ts, meta))
                if not updated:
                    self.late += 1
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def _push_sliding(self, batch: list[Rec], out: list[Rec]) -> None:
        w = self.window
        assert w is not None and self.events_table is not None
        encode, agg, dumps = self.table.keys.encode, self.aggregator, orjson.dumps
        size = w.size
        for rec in batch:
            k, v, ts, meta = rec
            try:
                part = self._partition(meta.partition)
                buffers = self.events_table.partition(meta.partition)
                t = self.time_of(rec)
                stream_time = part.advance(t)
                if t - size + w.span + w.grace <= stream_time:
                    self.late += 1  # the window ending at this event has closed
                    continue
                args = agg.args(k, v, ts, meta)
                bkey = dumps(k)
                buffer = buffers.get(bkey)
                keep_from = stream_time - w.grace - w.span
                buffer = [] if buffer is ABSENT else [e for e in buffer if e[0] >= keep_from]
                times = [e[0] for e in buffer]
                # [time, offset, args]: offsets order a key's events by arrival (one partition)
                buffer.insert(bisect.bisect_right(times, t), [t, meta.offset, args])
                buffers.put(bkey, buffer)
                for end in sorted({e[0] for e in buffer if t <= e[0] <= t + size}):
                    start = end - size
                    key = encode((k, start))
                    acc = part.get(key)
                    if acc is ABSENT:  # the window ending at this event is new: fold in arrival order
                        acc = agg.initial()
                        for _, _, event_args in sorted((e for e in buffer if start <= e[0] <= end),
                                                       key=lambda e: e[1]):
                            acc = agg.add_args(acc, event_args)
                    else:
                        acc = agg.add_args(acc, args)
                    part.put(key, acc)
                    if self.changes:
                        out.append((k, self.present((k, start), acc), ts, meta))
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def tick(self) -> None:
        before, self._before = self._before, {}
        if self.changes or self.window is None:
            return
        w, out = self.window, []
        for p, part in sorted(self.table.partitions.items()):
            # Since the last tick (a watermark may have moved it before this batch reached p);
            # before the first tick, since the first record of this batch.
            previous = self._ticked[p] if p in self._ticked else before.get(p, part.stream_time)
            self._ticked[p] = part.stream_time
            if part.stream_time is None or part.stream_time == previous:
                continue
            lo = None if previous is None else self.table.keys.start_bound(w.closed_before(previous))
            hi = self.table.keys.start_bound(w.closed_before(part.stream_time))
            self._emit_windows(p, part, lo, hi, out)
        self.emit(out)

    def _emit_windows(self, p: int, part: Any, lo: bytes | None, hi: bytes | None, out: list[Rec]) -> None:
        w, decode = self.window, self.table.keys.decode
        assert w is not None
        for key, acc in part.range(lo, hi):
            k, start = decode(key)
            end_ts = start + w.span - 1
            out.append((k, self.present((k, start), acc), end_ts, _origin(self.name, p, end_ts)))

    def finish(self) -> None:
        """Emit every window still open (``emit final``): the input ended."""
        self.tick()
        if self.changes or self.window is None:
            return
        w, out = self.window, []
        for p, part in sorted(self.table.partitions.items()):
            lo = None if part.stream_time is None else self.table.keys.start_bound(w.closed_before(part.stream_time))
            self._emit_windows(p, part, lo, None, out)
        self.emit(out)

    def on_assigned(self, partition: int) -> None:
        part = self.table.partitions.get(partition)
        self._ticked[partition] = None if part is None else part.stream_time

    def on_revoked(self, partition: int) -> None:
        self._ticked.pop(partition, None)
        self._before.pop(partition, None)

    def before_commit(self) -> None:
        if self.window is None:
            return
        for p, part in self.table.partitions.items():
            if part.stream_time is None or self._expired_at.get(p) == part.stream_time:
                continue
            self._expired_at[p] = part.stream_time
            bound = self.table.keys.start_bound(self.window.expired_before(part.stream_time))
            for key, _ in list(part.range(None, bound)):
                part.delete(key)


class JoinSide(Step):
    """One input of a join: records pushed here are joined as coming from ``side``."""

    def __init__(self, join: JoinStep, side: str) -> None:
        super().__init__(f"{join.name} ({side})")
        self.join = join
        self.side = side

    def push(self, batch: list[Rec]) -> None:
        self.join.push_side(self.side, batch)


class JoinStep(StatefulStep):
    """Joins its left and right inputs on their keys.

    * stream-table: a stream record looks up the table's current value for its key
      (inner: no row if absent; left/outer: the table's fields are null); table updates
      emit nothing.
    * table-table: a change on either side re-emits the joined row for its key, or a
      tombstone when the row no longer exists.
    * stream-stream (``within``): each record is kept for ``within`` and joined with
      every record of the other side whose time is at most ``within`` away. Rows
      without a partner (left: left records; outer: both sides) are emitted once the
      *watermark* -- the lower of the two sides' stream times -- has passed
      ``time + within``. A record older than the watermark is late and dropped.

    A ``condition`` (``k, joined row, ts, meta -> bool``) is tested per candidate pair:
    a pair it rejects is no match, so left/outer joins emit the record unmatched, and a
    table-table key whose rows it rejects has no inner row (a tombstone is sent).
    An error in it dead-letters the record being joined, with nothing emitted for it.
    """

    def __init__(self, node: n.Join, shapes: dict[str, bool], types: dict[str, Any], dead: Dead,
                 tables: dict[str, Table | None], condition: Callable[..., Any] | None = None) -> None:
        super().__init__(node.name)
        self.node = node
        self.dead = dead
        self.is_table = shapes  # side -> is the input a table
        self.tables = tables  # side -> the input's table (tables), or the join-window store
        self.merge = _merger(types["left"], types["right"], node.right_prefix)
        self.condition = condition
        self.sides = {side: JoinSide(self, side) for side in ("left", "right")}
        self._heaps: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
        self._touched: set[int] = set()

    def push(self, batch: list[Rec]) -> None:
        self.push_side("left", batch)

    def push_side(self, side: str, batch: list[Rec]) -> None:
        self.events += len(batch)
        out: list[Rec] = []
        if self.node.within_ms is not None:
            self._windowed(side, batch, out)
        elif self.is_table["left"] and self.is_table["right"]:
            self._table_table(side, batch, out)
        elif not self.is_table[side]:
            self._lookup(side, batch, out)
        self.emit(out)

    def _row(self, side: str, mine: Any, theirs: Any) -> Any:
        return self.merge(mine, theirs) if side == "left" else self.merge(theirs, mine)

    def _lookup(self, side: str, batch: list[Rec], out: list[Rec]) -> None:
        other = "right" if side == "left" else "left"
        table = self.tables[other]
        assert table is not None
        inner = self.node.how == "inner"
        dumps, condition = orjson.dumps, self.condition
        for rec in batch:
            k, v, ts, meta = rec
            try:
                stored = table.partition(meta.partition).get(dumps(k))
                if stored is ABSENT:
                    if inner:
                        continue
                    row = self._row(side, v, None)
                else:
                    row = self._row(side, v, table.present(k, stored))
                    if condition is not None and not condition(k, row, ts, meta):
                        if inner:
                            continue
                        row = self._row(side, v, None)  # no match: as if the table had no row
                out.append((k, row, ts, meta))
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def _table_table(self, side: str, batch: list[Rec], out: list[Rec]) -> None:
        other = "right" if side == "left" else "left"
        table = self.tables[other]
        assert table is not None
        how, dumps, condition = self.node.how, orjson.dumps, self.condition
        for rec in batch:
            k, v, ts, meta = rec
            try:
                stored = table.partition(meta.partition).get(dumps(k))
                theirs = None if stored is ABSENT else table.present(k, stored)
                left, right = (v, theirs) if side == "left" else (theirs, v)
                rejected = False
                if condition is not None and left is not None and right is not None:
                    row = self.merge(left, right)
                    # A rejected pair is as if the right row were absent (outer joins refuse conditions).
                    # The row may have existed before this change, so its end is always sent.
                    rejected = not condition(k, row, ts, meta)
                    if rejected:
                        right = None
                exists = (left is not None and right is not None) if how == "inner" else \
                    left is not None if how == "left" else (left is not None or right is not None)
                if exists:
                    out.append((k, self.merge(left, right), ts, meta))
                elif v is None or rejected:
                    out.append((k, None, ts, meta))
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def _windowed(self, side: str, batch: list[Rec], out: list[Rec]) -> None:
        other = "right" if side == "left" else "left"
        mine_t, theirs_t = self.tables[side], self.tables[other]
        assert mine_t is not None and theirs_t is not None
        within, dumps, condition = self.node.within_ms or 0, orjson.dumps, self.condition
        for rec in batch:
            k, v, ts, meta = rec
            try:
                p = meta.partition
                mine, theirs = mine_t.partition(p), theirs_t.partition(p)
                watermark = _watermark(mine.stream_time, theirs.stream_time)
                if watermark is not None and ts < watermark:
                    self.late += 1
                    continue
                mine.advance(ts)
                key = dumps(k)
                entry = [ts, meta.offset, v, False]
                partners = theirs.get(key)
                if partners is not ABSENT:
                    if condition is None:
                        for partner in partners:
                            if abs(partner[0] - ts) <= within:
                                out.append((k, self._row(side, v, partner[2]), max(ts, partner[0]), meta))
                                partner[3] = entry[3] = True
                    else:
                        self._matches(side, k, v, ts, meta, entry, partners, out)
                    theirs.put(key, partners)
                entries = mine.get(key)
                entries = [] if entries is ABSENT else entries
                entries.insert(bisect.bisect_right([(e[0], e[1]) for e in entries], (ts, meta.offset)), entry)
                mine.put(key, entries)
                heapq.heappush(self._heaps.setdefault((side, p), []), (ts, key))
                self._touched.add(p)
            except Exception as e:  # noqa: BLE001
                self.dead(rec, e, self.name)

    def _matches(self, side: str, k: Any, v: Any, ts: int, meta: Message, entry: list[Any], partners: list[Any],
                 out: list[Rec]) -> None:
        """Join a record with the partners in time for which the condition holds.

        Only a pair the condition accepts marks either record matched, so a record no
        partner accepts is emitted unmatched by left/outer joins when it closes. The rows
        are collected first: if the condition fails on one pair, nothing is emitted or
        marked for this record, which the caller dead-letters.
        """
        within, condition = self.node.within_ms or 0, self.condition
        assert condition is not None
        found = []
        for partner in partners:
            if abs(partner[0] - ts) <= within:
                row, at = self._row(side, v, partner[2]), max(ts, partner[0])
                if condition(k, row, at, meta):
                    found.append((partner, (k, row, at, meta)))
        for partner, joined in found:
            out.append(joined)
            partner[3] = entry[3] = True

    def tick(self) -> None:
        touched, self._touched = self._touched, set()
        if self.node.within_ms is None:
            return
        out: list[Rec] = []
        left, right = self.tables["left"], self.tables["right"]
        assert left is not None and right is not None
        # Every open partition, not only those a record reached: a watermark from upstream
        # partitions moves stream time on its own (closing is a heap peek when nothing is due).
        for p in sorted(touched | set(left.partitions)):
            watermark = _watermark(left.partition(p).stream_time, right.partition(p).stream_time)
            if watermark is None:
                continue
            for side in ("left", "right"):
                self._close(side, p, watermark, out)
        self.emit(out)

    def finish(self) -> None:
        """Emit the rows still waiting for a partner (left and outer joins): the input ended.

        They stay in the join's state: a later run over it may still match them (and then
        emits the joined row too) or close them again.
        """
        self.tick()
        if self.node.within_ms is None or self.node.how == "inner":
            return
        out: list[Rec] = []
        for side in ("left", "right") if self.node.how == "outer" else ("left",):
            table = self.tables[side]
            assert table is not None
            for p, part in sorted(table.partitions.items()):
                pending = sorted((e[0], e[1], key, e[2]) for key, entries in part.range() for e in entries if not e[3])
                for ts, _offset, key, value in pending:
                    out.append((orjson.loads(key), self._row(side, value, None), ts, _origin(self.name, p, ts)))
        self.emit(out)

    def _close(self, side: str, p: int, watermark: int, out: list[Rec]) -> None:
        within = self.node.within_ms or 0
        unmatched = side == "left" and self.node.how in ("left", "outer") or side == "right" and self.node.how == "outer"
        table = self.tables[side]
        assert table is not None
        part = table.partition(p)
        heap = self._heaps.get((side, p), [])
        while heap and heap[0][0] + within < watermark:
            _, key = heapq.heappop(heap)
            entries = part.get(key)
            if entries is ABSENT:
                continue
            keep = [e for e in entries if e[0] + within >= watermark]
            if len(keep) == len(entries):
                continue
            if unmatched:
                k = orjson.loads(key)
                for e in entries:
                    if e[0] + within < watermark and not e[3]:
                        out.append((k, self._row(side, e[2], None), e[0], _origin(self.name, p, e[0])))
            if keep:
                part.put(key, keep)
            else:
                part.delete(key)

    def on_assigned(self, partition: int) -> None:
        if self.node.within_ms is None:
            return
        for side in ("left", "right"):
            table = self.tables[side]
            assert table is not None
            heap = [(e[0], key) for key, entries in table.partition(partition).range() for e in entries]
            heapq.heapify(heap)
            self._heaps[(side, partition)] = heap

    def on_revoked(self, partition: int) -> None:
        for side in ("left", "right"):
            self._heaps.pop((side, partition), None)


def _watermark(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else min(a, b)


def _merger(left: Any, right: Any, prefix: str) -> Callable[[Any, Any], Any]:
    """How a join builds its row; the same shape as `ir.schema.join_value`."""
    left, right = strip_optional(left), strip_optional(right)
    if isinstance(left, RecordType) and isinstance(right, RecordType):
        left_names = list(left.field_names)
        taken = set(left_names)
        right_names = [(f, f"{prefix}_{f}" if f in taken else f) for f in right.field_names]

        def merge(lv: Any, rv: Any) -> Any:
            row = dict(lv) if lv is not None else dict.fromkeys(left_names)
            for name, out in right_names:
                row[out] = None if rv is None else rv.get(name)
            return row
        return merge
    return lambda lv, rv: {"left": lv, "right": rv}


def compile_stateful(node: n.Node, plan: Any, dead: Dead, tables: dict[str, Table]) -> StatefulStep:
    """The step of a stateful node, wired to its tables (see `runtime.state.make_tables`)."""
    from ..ir.expr import Scope
    from ..ir.schema import join_pair_value
    from .join_conditions import compile_condition
    from ..planner.naming import join_store, window_events_store
    from .engine import UnsupportedNode
    from .event_time import EventTimeGuard

    topo = plan.topology
    if isinstance(node, (n.ToTable, n.TableSource)):
        return TableStep(node.name, tables[node.name], dead)
    if isinstance(node, n.Aggregate):
        upstream = plan.schemas[topo.predecessors(node.name)[0]]
        store = plan.store(node.name)
        if store.window is not None and store.window.window == "session":
            from .sessions import SessionStep  # sessions build on this module's StatefulStep
            session = SessionStep(node, store.window,
                                  Aggregator(node.aggregations, Scope(upstream.key, upstream.value), node.loc.file),
                                  tables[node.name], tables[window_events_store(node.name)], dead,
                                  event_time_getter(store.window, EventTimeGuard.of(plan.settings)))
            tables[node.name].present = session.present
            return session
        window = WindowSpec.of(store.window) if store.window is not None else None
        step = AggregateStep(node, Aggregator(node.aggregations, Scope(upstream.key, upstream.value), node.loc.file),
                             tables[node.name], dead, window,
                             event_time_getter(store.window, EventTimeGuard.of(plan.settings))
                             if store.window is not None else None,
                             tables.get(window_events_store(node.name)))
        tables[node.name].present = step.present
        return step
    if isinstance(node, n.Join):
        sources = {e.side or "left": e.source for e in topo.inputs(node.name)}
        shapes = {side: plan.schemas[src].is_table for side, src in sources.items()}
        types = {side: plan.schemas[src].value for side, src in sources.items()}
        if node.within_ms is not None:
            sides: dict[str, Table | None] = {side: tables[join_store(node.name, side)] for side in sources}
        else:
            sides = {side: tables[_table_owner(plan, src)] if shapes[side] else None for side, src in sources.items()}
        condition = None
        if node.condition is not None:
            pair = join_pair_value(types["left"], types["right"], node.right_prefix)
            condition = compile_condition(node.condition, Scope(plan.schemas[node.name].key, pair))
        return JoinStep(node, shapes, types, dead, sides, condition)
    raise UnsupportedNode(f"{node.loc}: no runtime step for '{node.name}' ({node.kind})")


def _table_owner(plan: Any, name: str) -> str:
    """The store behind a table-shaped input: the nearest upstream node that owns one."""
    stores = {s.node: s.name for s in plan.stores if s.kind in ("aggregate", "table")}
    current = name
    while current not in stores:
        preds = plan.topology.predecessors(current)
        if not preds:
            raise KeyError(f"no table found upstream of {name!r}")
        current = preds[0]
    return stores[current]
