"""Session windows: per key, runs of activity separated by a gap of inactivity.

The rules (Kafka Streams' session windows, with closed sessions made final):

* A session of a key is ``[start, end]``: the times of its first and last event, both
  included (a session of one event has ``start == end``).
* An event at ``t`` *touches* a session when ``start - gap <= t <= end + gap``. It joins
  every open session it touches; when it touches two or more, they **merge** into one
  session holding all their events.
* Stream time ``S`` is the highest event time the partition has seen. A session is
  **closed** once ``S > end + gap + grace``, and a closed session never changes again.
  An event that touches no open session starts a new one. It is **late** if it touches a
  closed session (even when it touches an open one too), or if its own session would be closed already
  (``t + gap + grace < S``). Late events are dropped and counted.
* A closed session is deleted (a tombstone in the changelog) once ``S > end + retention``;
  the retention is ``expires`` (at least ``gap + grace``), one day by default.

State: the aggregate's table holds one row per session, keyed ``(key, start)`` with the
windowed key encoding (so expiry range-scans by start), valued ``[end, accumulators]``.
A second store, ``NAME.events``, holds per key ``[next sequence number, sessions]`` where
each session is ``[start, end, events]``, ``events`` being ``[[sequence, args], ...]``
for an open session and null once it closed (its bounds are kept while an on-time event
could still touch it, so such an event is judged late after a restart too). A merge
refolds the merged events in arrival (sequence) order, so every aggregation function,
``reduce``, ``collect`` and ``latest`` included, gives exactly what folding the session's
events in arrival order gives.

Outputs: ``emit changes`` sends, for each event, first a *retraction* for every session
that stopped existing (merged away, or moved to an earlier start): a row with its
``window_start`` and ``window_end`` and every aggregate null; then the session's new row. ``emit final`` sends
each session's row once, when it closes, ordered by ``(window_end, window_start, key)``
within a partition.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import orjson

from ..ir import nodes as n
from ..state.table import ABSENT
from .aggregates import Aggregator
from .engine import Dead, Rec
from .stateful import StatefulStep, _origin
from .tables import Table
from .windows import DEFAULT_EXPIRES_MS

__all__ = ["SessionStep"]

_CLOSE, _FORGET = 0, 1  # what a heap item does when stream time passes its due time


def _compact(data: bytes) -> bytes:
    """A right-sized copy of orjson's output (which keeps its ~4 KiB buffer) to keep in a heap."""
    return memoryview(data).tobytes()


class SessionStep(StatefulStep):
    """An aggregate over session windows (see the module docstring for the rules)."""

    def __init__(self, node: n.Aggregate, window: n.Window, aggregator: Aggregator, table: Table, events: Table,
                 dead: Dead, time_of: Callable[[Rec], int]) -> None:
        super().__init__(node.name)
        self.aggregator = aggregator
        self.table = table
        self.events_table = events
        self.dead = dead
        self.time_of = time_of
        self.changes = node.emit == "changes"
        self.gap = window.size_ms
        self.grace = window.grace_ms
        self.close_after = self.gap + self.grace
        self.retention = max(self.close_after, DEFAULT_EXPIRES_MS if window.expires_ms is None else window.expires_ms)
        # per partition: a heap of (due, action, start, encoded key); stale items are skipped when popped
        self._heaps: dict[int, list[tuple[int, int, int, bytes]]] = {}
        # per partition: a heap of (end + retention, start, encoded key) of closed sessions, for expiry
        # (a range scan of the table at every commit would cost as much as the table is large)
        self._expiry: dict[int, list[tuple[int, int, bytes]]] = {}

    def present(self, key: Any, value: Any) -> Any:
        """The row users see for a stored session ``[end, accumulators]`` under ``(key, start)``."""
        row = self.aggregator.result(value[1])
        row["window_start"] = key[1]
        row["window_end"] = value[0]
        return row

    # -- events ----------------------------------------------------------------------
    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        out: list[Rec] = []
        for rec in batch:
            try:
                self._push_one(rec, out)
            except Exception as e:  # noqa: BLE001 - one bad record goes to the dead letters
                self.dead(rec, e, self.name)
        self.emit(out)

    def _push_one(self, rec: Rec, out: list[Rec]) -> None:
        k, v, ts, meta = rec
        p = meta.partition
        part = self.table.partition(p)
        buffers = self.events_table.partition(p)
        t = self.time_of(rec)
        stream_time = part.advance(t)
        gap, close_after = self.gap, self.close_after
        kb = orjson.dumps(k)
        entry = buffers.get(kb)
        seq, sessions = (0, []) if entry is ABSENT else entry
        touched: list[list[Any]] = []
        untouched: list[list[Any]] = []
        touches_closed = False
        for session in sessions:
            start, end, events = session
            if start - gap <= t <= end + gap:
                if events is None or end + close_after < stream_time:
                    touches_closed = True
                    untouched.append(session)
                else:
                    touched.append(session)
            else:
                untouched.append(session)
        # Touching a closed session is late even if it touches an open one too: joining only the
        # open one would leave two sessions of the key closer than the gap (a closed one is final).
        if touches_closed or (not touched and t + close_after < stream_time):
            self.late += 1
            return
        agg, encode = self.aggregator, self.table.keys.encode
        args = agg.args(k, v, ts, meta)
        event = [seq, args]
        if len(touched) == 1 and touched[0][0] <= t:
            # the common case: the event extends one session and leaves its start; the newest
            # event folds in last, so the stored accumulators stay valid (updated in place)
            session = touched[0]
            key = encode((k, session[0]))
            stored = part.get(key)
            agg.add_args(stored[1], args)  # first: an event that fails to fold is not kept for refolds
            if t > session[1]:
                session[1] = t
            session[2].append(event)
            entry[0] = seq + 1
            buffers.put(kb, entry)
            stored[0] = session[1]
            part.put(key, stored)
            if self.changes:
                out.append((k, self.present((k, session[0]), stored), ts, meta))
            return
        if not touched:
            start = end = t
            events = [event]
            acc = agg.add_args(agg.initial(), args)
            gone: list[list[Any]] = []
        elif len(touched) == 1:  # the event moves the session's start earlier
            old = touched[0]
            start, end, events = t, old[1], old[2]
            acc = agg.add_args(part.get(encode((k, old[0])))[1], args)
            events.append(event)
            gone = [old]
        else:
            start, end = min(t, touched[0][0]), max(t, max(s[1] for s in touched))
            events = sorted((e for s in touched for e in s[2]), key=lambda e: e[0])
            events.append(event)
            acc = agg.initial()
            for _, event_args in events:
                acc = agg.add_args(acc, event_args)
            gone = [s for s in touched if s[0] != start]
        for old in gone:
            part.delete(encode((k, old[0])))
        part.put(encode((k, start)), [end, acc])
        untouched.append([start, end, events])
        if len(untouched) > 1:
            untouched.sort(key=lambda s: s[0])
        buffers.put(kb, [seq + 1, untouched])
        if not touched or touched[0][0] != start:
            # one close item per session start: an item that comes due while its session has
            # grown is pushed again with the new end (see _settle), not once per event
            heapq.heappush(self._heap(p), (end + close_after, _CLOSE, start, _compact(kb)))
        if self.changes:
            for old in gone:
                out.append((k, self._retraction(old[0], old[1]), ts, meta))
            out.append((k, self.present((k, start), [end, acc]), ts, meta))

    def _retraction(self, start: int, end: int) -> dict[str, Any]:
        """The row that says a session is gone: its bounds, every aggregate null (so steps
        after `changes` read it as a row of the table's type, and a filter drops it)."""
        return {**dict.fromkeys(self.aggregator.names), "window_start": start, "window_end": end}

    # -- closing, forgetting, expiry -------------------------------------------------
    def _heap(self, p: int) -> list[tuple[int, int, int, bytes]]:
        """The partition's heap, rebuilt from its event store after an assignment or restart."""
        heap = self._heaps.get(p)
        if heap is None:
            heap = []
            gap, close_after = self.gap, self.close_after
            for kb, (_, sessions) in self.events_table.partition(p).range():
                for start, end, events in sessions:
                    if events is None:
                        heap.append((end + gap + close_after, _FORGET, start, kb))
                    else:
                        heap.append((end + close_after, _CLOSE, start, kb))
            heapq.heapify(heap)
            self._heaps[p] = heap
        return heap

    def _settle(self, p: int, heap: list[tuple[int, int, int, bytes]], item: tuple[int, int, int, bytes],
                stream_time: int | None, closed: list[tuple[int, int, bytes]]) -> None:
        """Carry out one heap item, if it still describes a session that exists.

        A session closes if stream time has passed its end plus gap and grace (always, when
        ``stream_time`` is None: the end of input); ``closed`` collects ``(end, start, key)``.
        """
        due, action, start, kb = item
        buffers = self.events_table.partition(p)
        entry = buffers.get(kb)
        if entry is ABSENT:
            return
        sessions = entry[1]
        gap, close_after = self.gap, self.close_after
        for i, session in enumerate(sessions):
            s, end, events = session
            if s != start:
                continue
            if action == _CLOSE and events is not None:
                if stream_time is not None and end + close_after >= stream_time:
                    heapq.heappush(heap, (end + close_after, _CLOSE, start, kb))  # it grew: not due yet
                    return
                session[2] = None  # closed: its events are never needed again
                buffers.put(kb, entry)
                heapq.heappush(heap, (end + gap + close_after, _FORGET, start, kb))
                heapq.heappush(self._expiry_heap(p), (end + self.retention, start, kb))
                closed.append((end, start, kb))
            elif action == _FORGET and events is None and end + gap + close_after == due:
                del sessions[i]  # no on-time event can touch it any more
                if sessions:
                    buffers.put(kb, entry)
                else:
                    buffers.delete(kb)
            return

    def _emit_closed(self, p: int, closed: list[tuple[int, int, bytes]], out: list[Rec]) -> None:
        """``emit final``: the closed sessions' rows, by end, start and key."""
        if self.changes:
            return
        part, encode = self.table.partition(p), self.table.keys.encode
        for end, start, kb in sorted(closed):
            k = orjson.loads(kb)
            out.append((k, self.present((k, start), part.get(encode((k, start)))), end, _origin(self.name, p, end)))

    def tick(self) -> None:
        out: list[Rec] = []
        for p in sorted(self.table.partitions):
            stream_time = self.table.partitions[p].stream_time
            if stream_time is None:
                continue
            heap = self._heap(p)
            closed: list[tuple[int, int, bytes]] = []
            while heap and heap[0][0] < stream_time:
                self._settle(p, heap, heapq.heappop(heap), stream_time, closed)
            self._emit_closed(p, closed, out)
        self.emit(out)

    def finish(self) -> None:
        """End of input: every open session closes now (``emit final`` emits them)."""
        out: list[Rec] = []
        for p in sorted(self.events_table.partitions):
            heap = self._heap(p)
            closing = [item for item in heap if item[1] == _CLOSE]
            heap[:] = [item for item in heap if item[1] != _CLOSE]
            heapq.heapify(heap)
            closed: list[tuple[int, int, bytes]] = []
            for item in closing:
                self._settle(p, heap, item, None, closed)
            self._emit_closed(p, closed, out)
        self.emit(out)

    def _expiry_heap(self, p: int) -> list[tuple[int, int, bytes]]:
        """The partition's expiry heap, rebuilt from its table (once) after an assignment or restart."""
        heap = self._expiry.get(p)
        if heap is None:
            retention, decode = self.retention, self.table.keys.decode
            heap = [(end + retention, start, _compact(orjson.dumps(k)))
                    for (k, start), (end, _) in ((decode(key), value) for key, value in self.table.partition(p).range())]
            heapq.heapify(heap)
            self._expiry[p] = heap
        return heap

    def before_commit(self) -> None:
        encode = self.table.keys.encode
        for p, part in self.table.partitions.items():
            stream_time = part.stream_time
            if stream_time is None:
                continue
            heap = self._expiry_heap(p)
            while heap and heap[0][0] < stream_time:
                due, start, kb = heapq.heappop(heap)
                key = encode((orjson.loads(kb), start))
                stored = part.get(key)
                # a session still open when the heap was rebuilt may have grown since: its item is stale
                if stored is not ABSENT and stored[0] + self.retention == due:
                    part.delete(key)

    def on_assigned(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._expiry.pop(partition, None)

    def on_revoked(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._expiry.pop(partition, None)
