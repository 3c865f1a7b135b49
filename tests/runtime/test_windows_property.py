"""Windowed aggregations against a brute-force reference, on random out-of-order streams.

The real :class:`AggregateStep` runs over memory table partitions, driven as the worker
drives it: a batch is pushed, ``tick()`` emits what the batch closed, and at a commit
``before_commit()`` expires old windows and every partition is flushed to its store.
Sometimes the "process restarts" after a commit: the steps are compiled again over fresh
table partitions on the same stores (only what was flushed survives).

The reference below knows nothing of the runtime. It is written from the spec in
``dataflow/runtime/windows.py``:

* stream time is the highest event time a partition has seen (the event itself included);
* tumbling and hopping windows are half-open ``[start, start + size)``, epoch aligned,
  starting every ``step`` (``size`` for tumbling); a sliding window ``[t - size, t]``
  (both ends included) exists for each event time ``t`` of a key;
* a window closes once stream time reaches ``end + grace`` (``end``: the first time after
  it); an event only for closed windows is late: dropped and counted;
* a window is deleted once stream time reaches ``end + retention`` (checked at commits);
* ``emit="changes"`` sends the updated row of every window an event updates;
  ``emit="final"`` sends each window's row once, after the batch that closed it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataflow import Flow, Record, agg, hopping, sliding, tumbling
from dataflow.planner import plan as build_plan
from dataflow.runtime.engine import Step, compile_agent
from dataflow.runtime.state import make_tables
from dataflow.runtime.stateful import AggregateStep
from dataflow.runtime.windows import DEFAULT_EXPIRES_MS
from dataflow.state.stores import MemoryStore
from dataflow.state.table import TablePartition
from dataflow.transport.base import Message

PARTITIONS = 2
KEYS = ["a", "b", "c", "d"]  # key i lives in partition i % PARTITIONS
TOPIC = "w-by-repartition"


class Ev(Record):
    k: str
    x: int
    ts: int


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


@dataclass(frozen=True)
class Case:
    kind: str  # tumbling | hopping | sliding
    size: int
    step: int
    grace: int
    expires: int | None
    emit: str  # changes | final
    event_time: bool  # time from the value's `ts` field (else the message timestamp)

    @property
    def retention(self) -> int:
        return max(self.grace, DEFAULT_EXPIRES_MS if self.expires is None else self.expires)


# --------------------------------------------------------------------------- the real code
class Collector(Step):
    def __init__(self) -> None:
        super().__init__("collector")
        self.records: list[tuple[Any, Any, int]] = []

    def push(self, batch: list[Any]) -> None:
        self.records.extend((k, v, ts) for k, v, ts, _meta in batch)


@functools.cache
def make_plan(case: Case) -> Any:
    if case.kind == "tumbling":
        spec = tumbling(ms(case.size), grace=ms(case.grace), expires=None if case.expires is None else ms(case.expires),
                        on="ts" if case.event_time else None)
    elif case.kind == "hopping":
        spec = hopping(ms(case.size), ms(case.step), grace=ms(case.grace),
                       expires=None if case.expires is None else ms(case.expires), on="ts" if case.event_time else None)
    else:
        spec = sliding(ms(case.size), grace=ms(case.grace), expires=None if case.expires is None else ms(case.expires),
                       on="ts" if case.event_time else None)
    flow = Flow("w", partitions=PARTITIONS)
    table = (flow.source("ev", value=Ev).group_by("k", name="by").window(spec)
             .aggregate(n=agg.count(), s=agg.sum("x"), lo=agg.min("x"), hi=agg.max("x"), mean=agg.avg("x"),
                        xs=agg.collect("x"), name="agg", emit=case.emit))
    table.changes().to("out")
    return build_plan(flow.topology())


class Driver:
    """Runs the compiled aggregate as the worker would; can 'restart' after a commit."""

    def __init__(self, case: Case) -> None:
        self.plan = make_plan(case)
        self.agent = next(a for a in self.plan.agents if "agg" in a.stores)
        self.stores: dict[tuple[str, int], MemoryStore] = {}
        self.emitted: list[tuple[Any, Any, int]] = []
        self.dead: list[Any] = []
        self.late = 0
        self.offset = 0
        self._open()

    def _open(self) -> None:
        if hasattr(self, "step"):
            self.late += self.step.late
        self.tables = make_tables(self.plan)
        for name, table in self.tables.items():
            for p in range(PARTITIONS):
                store = self.stores.setdefault((name, p), MemoryStore(name, p))
                table.partitions[p] = TablePartition(store, table.keys)
        compiled = compile_agent(self.plan, self.agent, lambda rec, e, node: self.dead.append((rec, repr(e), node)),
                                 self.tables)
        self.step = compiled.steps["agg"]
        assert isinstance(self.step, AggregateStep)
        self.collector = Collector()
        self.step.successors = [self.collector]

    def push(self, batch: list[tuple[str, int, int, int]], event_time: bool) -> None:
        recs = []
        for k, x, t, noise in batch:
            self.offset += 1
            ts = noise if event_time else t  # with event time, the message timestamp is unrelated noise
            meta = Message(TOPIC, KEYS.index(k) % PARTITIONS, self.offset, None, None, ts)
            recs.append((k, {"k": k, "x": x, "ts": t}, ts, meta))
        self.step.push(recs)
        self.step.tick()
        self.emitted.extend(self.collector.records)
        self.collector.records.clear()

    def commit(self) -> None:
        self.step.before_commit()
        for table in self.tables.values():
            for part in table.partitions.values():
                part.flush(part.changes(), part.changelog_offset + 1)

    def restart(self) -> None:
        self._open()

    def rows(self) -> list[tuple[Any, Any]]:
        return self.tables["agg"].rows()

    def total_late(self) -> int:
        return self.late + self.step.late


# --------------------------------------------------------------------------- the reference
@dataclass
class Reference:
    case: Case
    stream_time: dict[int, int | None] = field(default_factory=lambda: dict.fromkeys(range(PARTITIONS)))
    # (key, window start) -> accepted events [(x, t)] in arrival order
    windows: dict[tuple[str, int], list[tuple[int, int]]] = field(default_factory=dict)
    accepted: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # sliding: key -> [(x, t)]
    emitted: list[tuple[Any, Any, int]] = field(default_factory=list)
    late: int = 0

    def end(self, start: int) -> int:
        return start + self.case.size + (1 if self.case.kind == "sliding" else 0)

    def closed(self, start: int, stream_time: int | None) -> bool:
        return stream_time is not None and self.end(start) + self.case.grace <= stream_time

    def starts(self, t: int) -> list[int]:
        """Every aligned start s (a multiple of the step) with s <= t < s + size, oldest first."""
        step = self.case.size if self.case.kind == "tumbling" else self.case.step
        s = t - t % step
        out = []
        while s > t - self.case.size:
            out.append(s)
            s -= step
        return sorted(out)

    def row(self, key: str, start: int) -> dict[str, Any]:
        events = self.windows[(key, start)]
        xs = [x for x, _ in events]
        return {"n": len(xs), "s": sum(xs), "lo": min(xs), "hi": max(xs), "mean": sum(xs) / len(xs), "xs": xs,
                "window_start": start, "window_end": start + self.case.size}

    def push(self, batch: list[tuple[str, int, int, int]], event_time: bool) -> None:
        before = dict(self.stream_time)
        for k, x, t, noise in batch:
            ts = noise if event_time else t
            p = KEYS.index(k) % PARTITIONS
            st_ = t if self.stream_time[p] is None else max(self.stream_time[p], t)  # type: ignore[type-var]
            self.stream_time[p] = st_
            if self.case.kind == "sliding":
                if self.closed(t - self.case.size, st_):
                    self.late += 1
                    continue
                self.accepted.setdefault(k, []).append((x, t))
                ends = sorted({u for _, u in self.accepted[k] if t <= u <= t + self.case.size})
                for u in ends:
                    start = u - self.case.size
                    # A window ending at an event time holds every accepted event of the key in it.
                    self.windows[(k, start)] = [(y, v) for y, v in self.accepted[k] if start <= v <= u]
                    if self.case.emit == "changes":
                        self.emitted.append((k, self.row(k, start), ts))
                continue
            updated = False
            for start in self.starts(t):
                if self.closed(start, st_):
                    continue
                self.windows.setdefault((k, start), []).append((x, t))
                updated = True
                if self.case.emit == "changes":
                    self.emitted.append((k, self.row(k, start), ts))
            if not updated:
                self.late += 1
        if self.case.emit == "final":
            span = self.end(0)
            for p in range(PARTITIONS):
                was, now = before[p], self.stream_time[p]
                closing = sorted(
                    (start, orjson.dumps(k), k) for k, start in self.windows
                    if KEYS.index(k) % PARTITIONS == p and self.closed(start, now) and not self.closed(start, was))
                self.emitted.extend((k, self.row(k, start), start + span - 1) for start, _, k in closing)

    def commit(self) -> None:
        for (k, start) in list(self.windows):
            now = self.stream_time[KEYS.index(k) % PARTITIONS]
            if now is not None and self.end(start) + self.case.retention <= now:
                del self.windows[(k, start)]

    def rows(self) -> list[tuple[Any, Any]]:
        order = sorted(self.windows, key=lambda ks: (ks[1], orjson.dumps(ks[0])))
        return [((k, start), self.row(k, start)) for k, start in order]


# --------------------------------------------------------------------------- strategies
@st.composite
def cases(draw: Any) -> Case:
    kind = draw(st.sampled_from(["tumbling", "hopping", "sliding"]))
    size = draw(st.integers(1, 12))
    step = draw(st.integers(1, size)) if kind == "hopping" else size
    grace = draw(st.integers(0, 6))
    # The planner insists a window expires no sooner than it closes: expires >= size + grace.
    expires = draw(st.none() | st.integers(size + grace, size + grace + 15))
    return Case(kind, size, step, grace, expires, draw(st.sampled_from(["changes", "final"])), draw(st.booleans()))


@st.composite
def streams(draw: Any, case: Case) -> list[tuple[str, int, int, int]]:
    """Events that mostly move forward, often a little out of order, sometimes beyond grace."""
    n = draw(st.integers(0, 40))
    cursor, out = draw(st.integers(0, 30)), []
    for _ in range(n):
        cursor += draw(st.integers(0, 4))
        back = draw(st.sampled_from([0, 0, 1, 2, case.grace, case.grace + 1, case.size, case.size + case.grace + 2]))
        t = max(0, cursor - back)
        out.append((draw(st.sampled_from(KEYS)), draw(st.integers(-9, 9)), t, draw(st.integers(0, 1000))))
    return out


@st.composite
def scenarios(draw: Any) -> tuple[Case, list[Any], list[int], list[str]]:
    case = draw(cases())
    events = draw(streams(case))
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(events), 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if 0 < c < len(events)], len(events)]
    batches = [events[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    # After each batch: nothing, a commit, or a commit and a restart.
    after = draw(st.lists(st.sampled_from(["", "", "commit", "restart"]), min_size=len(batches),
                          max_size=len(batches)))
    return case, events, [len(b) for b in batches], after


def run_both(case: Case, events: list[Any], sizes: list[int], after: list[str]) -> tuple[Driver, Reference]:
    driver, ref = Driver(case), Reference(case)
    i = 0
    for size, then in zip(sizes, after):
        batch = events[i:i + size]
        i += size
        driver.push(batch, case.event_time)
        ref.push(batch, case.event_time)
        if then in ("commit", "restart"):
            driver.commit()
            ref.commit()
        if then == "restart":
            driver.restart()
    return driver, ref


def check(case: Case, events: list[Any], sizes: list[int], after: list[str]) -> None:
    driver, ref = run_both(case, events, sizes, after)
    assert driver.dead == []
    assert driver.rows() == ref.rows()
    assert driver.emitted == ref.emitted
    assert driver.total_late() == ref.late
    if case.kind == "sliding":
        # Exactly one window per accepted event time of a key (that has not expired).
        accepted = {(k, t - case.size) for k, evs in ref.accepted.items() for _, t in evs}
        assert {key for key, _ in driver.rows()} == {w for w in accepted if w in ref.windows}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example((Case("sliding", 10, 10, 2, None, "changes", True),
          [("a", 1, 10, 0), ("a", 2, 5, 0), ("a", 3, 7, 0), ("a", 4, 30, 0), ("a", 5, 17, 0), ("a", 6, 27, 0)],
          [2, 2, 2], ["commit", "restart", ""]))
def test_windowed_aggregates_match_a_brute_force_reference(scenario: Any) -> None:
    check(*scenario)


def test_sliding_collect_keeps_arrival_order():
    """A sliding window created after out-of-order events still collects in arrival order."""
    case = Case("sliding", 2, 2, 1, None, "changes", False)
    # arrival: x=1 at t=1, x=2 at t=0, x=3 at t=2; the window [0, 2] is created by the last one.
    driver, ref = run_both(case, [("a", 1, 1, 0), ("a", 2, 0, 0), ("a", 3, 2, 0)], [3], [""])
    assert dict(driver.rows())[("a", 0)]["xs"] == [1, 2, 3]  # was [2, 1, 3]: folded in event-time order
    assert driver.rows() == ref.rows()


def test_the_reference_agrees_with_a_hand_worked_example():
    """Tumbling 10ms, grace 5ms, emit final, one event per batch."""
    case = Case("tumbling", 10, 10, 5, None, "final", False)
    events = [("a", 1, 1, 0), ("a", 2, 12, 0), ("a", 3, 8, 0), ("a", 4, 16, 0), ("a", 5, 9, 0)]
    driver, ref = run_both(case, events, [1] * 5, [""] * 5)
    first = {"n": 2, "s": 4, "lo": 1, "hi": 3, "mean": 2.0, "xs": [1, 3], "window_start": 0, "window_end": 10}
    second = {"n": 2, "s": 6, "lo": 2, "hi": 4, "mean": 3.0, "xs": [2, 4], "window_start": 10, "window_end": 20}
    # t=8 arrives after stream time 12 but within grace; stream time 16 closes [0, 10); t=9 is late.
    assert ref.emitted == driver.emitted == [("a", first, 9)]
    assert ref.late == driver.total_late() == 1
    assert ref.rows() == driver.rows() == [(("a", 0), first), (("a", 10), second)]

