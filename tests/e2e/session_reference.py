"""A brute-force model of session windows, for the property tests.

It keeps, per key, the list of accepted events that are not in a closed session and
recomputes the sessions from it on every event (sort by time, split where two neighbours
are more than `gap` apart); closed sessions are frozen lists of events. Nothing is
incremental, nothing is merged: it only writes down the rules of docs/state.md.

Stream time is the pipeline's single source partition's: the test pipelines re-key one
source partition into the session partitions, and after a repartition a partition's time is
the watermark of where its records came from (docs/state.md, "Watermarks after a
repartition"), so every session partition closes and judges lateness by the highest time
read from the source so far.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dataflow.transport.base import partition_for

Event = tuple[int, int, Any]  # (arrival number, time, x)
#: the aggregates of the test pipelines, in their order: a retraction has each of them null
AGGREGATE_NAMES = ("n", "total", "lo", "hi", "mean", "xs", "distinct", "last", "first")


def row(events: list[Event]) -> dict[str, Any]:
    """The aggregates of the test pipelines over a session's events, folded in arrival order."""
    events = sorted(events)
    xs = [x for _, _, x in events]
    present = [x for x in xs if x is not None]
    times = [t for _, t, _ in events]
    return {"n": len(xs), "total": sum(present), "lo": min(present, default=None), "hi": max(present, default=None),
            "mean": sum(present) / len(present) if present else None, "xs": xs, "distinct": sorted(set(present)),
            "last": xs[-1], "first": xs[0], "window_start": min(times), "window_end": max(times)}


def sessions_of(events: list[Event], gap: int) -> list[list[Event]]:
    """The connected runs of events no more than `gap` apart, oldest first."""
    out: list[list[Event]] = []
    for e in sorted(events, key=lambda e: (e[1], e[0])):
        if out and e[1] - out[-1][-1][1] <= gap:
            out[-1].append(e)
        else:
            out.append([e])
    return out


def bounds(session: list[Event]) -> tuple[int, int]:
    return min(e[1] for e in session), max(e[1] for e in session)


@dataclass
class Reference:
    gap: int
    grace: int
    partitions: int = 1
    retention: int = 24 * 3600 * 1000
    stream_time: int | None = None  # the source partition's: see the module docstring
    runs_finished: int = 0  # how many times the end of input closed every session
    closed_in: dict[tuple[Any, int], int] = field(default_factory=dict)  # (key, start) -> runs finished before
    live: dict[Any, list[Event]] = field(default_factory=dict)  # key -> events of its open sessions
    closed: dict[Any, list[list[Event]]] = field(default_factory=dict)
    changes: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict)  # partition -> emitted (key, row)
    final: dict[int, list[tuple[Any, Any]]] = field(default_factory=dict)
    late: int = 0
    arrivals: int = 0

    def partition(self, key: Any) -> int:
        return partition_for(orjson.dumps(key), self.partitions)

    def _close(self, key: Any, everything: bool = False) -> None:
        """Freeze the key's sessions that stream time has closed (or all, at the end of input)."""
        still = []
        for s in sessions_of(self.live.get(key, []), self.gap):
            if everything or bounds(s)[1] + self.gap + self.grace < self.stream_time:  # type: ignore[operator]
                self.closed.setdefault(key, []).append(s)
                self.closed_in[(key, bounds(s)[0])] = self.runs_finished
            else:
                still.extend(s)
        self.live[key] = still

    def add(self, key: Any, t: int, x: Any) -> None:
        p = self.partition(key)
        self.arrivals += 1
        self.stream_time = t if self.stream_time is None else max(self.stream_time, t)
        self.live.setdefault(key, [])
        for other in list(self.live):
            self._close(other)

        def touches(s: list[Event]) -> bool:
            start, end = bounds(s)
            return start - self.gap <= t <= end + self.gap

        before = sessions_of(self.live[key], self.gap)
        touched = [s for s in before if touches(s)]
        if any(touches(s) for s in self.closed.get(key, [])) or (
                not touched and t + self.gap + self.grace < self.stream_time):
            self.late += 1
            return
        event = (self.arrivals, t, x)
        self.live[key].append(event)
        new = next(s for s in sessions_of(self.live[key], self.gap) if event in s)
        out = self.changes.setdefault(p, [])
        for old in touched:
            if bounds(old)[0] != bounds(new)[0]:
                out.append((key, {**dict.fromkeys(AGGREGATE_NAMES), "window_start": bounds(old)[0],
                                  "window_end": bounds(old)[1]}))
        out.append((key, row(new)))

    def finish(self) -> None:
        for key in list(self.live):
            self._close(key, everything=True)
        self.runs_finished += 1

    def emitted_final(self) -> dict[int, list[tuple[Any, Any]]]:
        """Every closed session, per partition, in the order closing sends them: what each run's
        end of input closed after what closed before it, and otherwise by (end, start, key as JSON)."""
        out: dict[int, list[tuple[Any, Any, Any]]] = {}
        for key, sessions in self.closed.items():
            for s in sessions:
                start, end = bounds(s)
                out.setdefault(self.partition(key), []).append(
                    ((self.closed_in[(key, start)], end, start, orjson.dumps(key)), key, row(s)))
        return {p: [(k, r) for _, k, r in sorted(rows, key=lambda item: item[0])] for p, rows in out.items()}

    def table(self) -> list[tuple[Any, Any]]:
        """((key, start), row) of every session that has not expired, sorted."""
        rows = []
        for key in set(self.live) | set(self.closed):
            for s in self.closed.get(key, []) + sessions_of(self.live.get(key, []), self.gap):
                start, end = bounds(s)
                if end + self.retention >= self.stream_time:  # type: ignore[operator]
                    rows.append(((key, start), row(s)))
        return sorted(rows, key=repr)
