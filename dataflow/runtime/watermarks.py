"""Watermarks through repartition and through topics.

After a ``group_by``, a partition of the repartition topic mixes records from every
partition of the writing sub-topology's inputs, read at different speeds. If its stream
time were the highest event time it has seen, the fastest upstream partition would
decide, and records of the slower ones would be dropped as late although they were on
time where they came from. So, as Flink does across input channels:

* every writing task tracks, per *origin* (one partition of a topic it reads), a
  watermark: for a source partition the highest event time read from it; for a partition
  of an internal topic, that partition's own watermark (below);
* when an origin's watermark moved, the writer tells every partition of each internal
  topic it writes: a header on the last record a batch sends to that partition, or, if
  the batch sends it nothing, a *heartbeat* (no key, no value, only headers) that readers
  never pass to steps;
* a reading partition's watermark is the lowest over ALL origins the plan says can write
  to it (every partition of every stream topic the writing sub-topology reads), and
  unknown until each has reported: no window closes before that. A source partition read
  to its end that has delivered nothing for ``IDLE_AFTER`` seconds, or an empty one (as
  the partitions a keyless input never writes), is reported *idle* and holds nothing back
  until it delivers again (Flink's idle sources). Headers are applied in
  the order records arrive, after the record that carries them, so a record is judged
  against what its reader knew when it was written behind it: a record that was on time
  where it came from is on time where it lands;
* a record that came after a later one of its origin carries (``BEHIND``) the highest time
  before it in its batch: with the origin's last reported watermark that is exactly the
  stream time it had where it came from, and a window judges it by that, so what is late
  after a repartition does not depend on speeds, batches or restarts.

Stateful steps fed from an internal topic whose time is the record timestamp (windowed
aggregates, stream-stream joins, session windows) take that watermark as the stream time
of their table partitions (:meth:`TablePartition.follow`); the per-origin watermarks are
persisted with the partition's stream time (same write batch, same changelog), so a
restart judges as an uninterrupted run would.

End of a bounded input: an origin the run has finished reading is reported *ended*
(with its real watermark); a reader whose origins have all ended finishes its steps
(:meth:`StatefulStep.finish`) and reports its own origins ended, and so on downstream.

The core (:class:`Progress`, :func:`split`, the header codec) is pure; :class:`Watermarks`
is the worker's bookkeeping around it.

>>> p = Progress(["a[0]", "a[1]"])
>>> p.update("a[0]", 500, False), p.watermark
(False, None)
>>> p.update("a[1]", 200, False), p.watermark
(True, 200)
>>> p.update("a[1]", 100, False), p.watermark  # watermarks never go back
(False, 200)
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter, le
from typing import Any

import orjson

from ..ir import nodes as n
from ..planner.naming import join_store
from ..planner.plan import ExecutionPlan
from ..transport.base import TP, Message, ProducerRecord, partition_for

__all__ = ["BEHIND", "HEADER", "HEARTBEAT", "RECORD_TIME", "Heartbeat", "Progress", "Watermarks", "WatermarkPlan", "decode",
           "encode", "is_heartbeat", "origin_of", "split"]

#: The header that carries ``[[origin, watermark or null, ended, idle], ...]`` (JSON).
HEADER = "dataflow.watermark"
#: On a record that came after a later one of its origin (or any record of an origin's first
#: batch after its writer started): ``[origin, {clock: the highest time before it in its
#: batch, or null}]``, so its reader judges it as it would have been judged where it came from.
BEHIND = "dataflow.behind"
#: Marks a control record: readers apply its watermarks and ack it, steps never see it.
HEARTBEAT = "dataflow.heartbeat"
_HEARTBEAT_HEADER = (HEARTBEAT, b"")

Entry = tuple[str, "int | None", bool, bool]  # (origin, watermark, ended, idle)
#: A source partition read to its end that has delivered nothing for this long (since the
#: worker started, if nothing yet), or that is empty, is *idle*: it stops holding
#: watermarks back until it delivers again.
IDLE_AFTER = 10.0


@dataclass(slots=True)
class Heartbeat(ProducerRecord):
    """A control record: watermarks for a partition the batch sent nothing else to.

    Not counted as a message sent or received (the monitor counts it as a heartbeat).
    """


def origin_of(topic: str, partition: int) -> str:
    """How an origin is named in headers and in persisted state.

    >>> origin_of("orders", 3)
    'orders[3]'
    """
    return f"{topic}[{partition}]"


def encode(entries: Iterable[Entry]) -> bytes:
    """The header value for some origins' watermarks.

    >>> decode(encode([("a[0]", 5, False, False), ("a[1]", None, True, False), ("a[2]", 3, False, True)]))
    [('a[0]', 5, False, False), ('a[1]', None, True, False), ('a[2]', 3, False, True)]
    """
    return orjson.dumps([[o, m, e, i] for o, m, e, i in entries])


def decode(value: bytes) -> list[Entry]:
    return [(str(o), None if m is None else int(m), bool(e), bool(i)) for o, m, e, i in orjson.loads(value)]


def is_heartbeat(message: Message) -> bool:
    return _HEARTBEAT_HEADER in message.headers


Behind = tuple[str, dict[str, "int | None"]]  # (origin, {clock: highest time before it in its batch})
Piece = tuple[list[Message], list[Entry], bool, "Behind | None"]


def split(messages: list[Message]) -> list[Piece]:
    """Cut a fetched batch after each record that carries watermarks, and around each
    record that was out of order where it came from.

    Each piece is pushed through the steps, then its watermarks are applied, so a record
    is never judged against a watermark written behind it. Heartbeats carry watermarks
    only: they end a piece without being in it (the flag says the piece ended in one). A
    record that came after a later one of its origin is a piece of its own, with what its
    writer said of it (``behind``): it is judged as it would have been where it came from.

    >>> m = [Message("r", 0, i, None, b"1", 0) for i in range(5)]
    >>> m[1] = Message("r", 0, 1, None, b"1", 0, ((HEADER, encode([("a[0]", 7, False, False)])),))
    >>> m[2] = Message("r", 0, 2, None, None, 0, ((HEADER, encode([("a[1]", 9, False, False)])), _HEARTBEAT_HEADER))
    >>> m[4] = Message("r", 0, 4, None, b"1", 0, ((BEHIND, orjson.dumps(["a[0]", {"": 8}])),))
    >>> [([x.offset for x in piece], [e[:2] for e in marks], beat, behind) for piece, marks, beat, behind in split(m)]
    [([0, 1], [('a[0]', 7)], False, None), ([], [('a[1]', 9)], True, None), ([3], [], False, None), ([4], [], False, ('a[0]', {'': 8}))]
    """
    out: list[Piece] = []
    start = 0
    for i, message in enumerate(messages):
        if not message.headers:
            continue
        entries: list[Entry] | None = None
        behind: Behind | None = None
        for name, value in message.headers:
            if name == HEADER:
                entries = decode(value)
            elif name == BEHIND:
                origin, within = orjson.loads(value)
                behind = (origin, within)
        if behind is not None:
            if start < i:
                out.append((messages[start:i], [], False, None))
            out.append(([message], entries or [], False, behind))
            start = i + 1
        elif entries is not None:
            beat = is_heartbeat(message)
            out.append((messages[start:i] if beat else messages[start:i + 1], entries, beat, None))
            start = i + 1
    if start < len(messages) or not out:
        out.append((messages[start:], [], False, None))
    return out


class Progress:
    """What one partition of an internal topic knows of its origins' watermarks.

    The watermark is the lowest over every expected origin that is not idle, None until
    each of those has reported (if all are idle: the lowest reported); each origin's
    watermark only moves forward. ``finished`` once every origin has reported the end of
    its (bounded) input.
    """

    __slots__ = ("ended", "expected", "idle", "marks")

    def __init__(self, expected: Iterable[str], marks: dict[str, Any] | None = None) -> None:
        self.expected = frozenset(expected)
        self.marks: dict[str, int] = {}
        self.ended: set[str] = set()
        self.idle: set[str] = set()
        if marks:
            self.load(marks)

    def update(self, origin: str, mark: int | None, ended: bool, idle: bool = False) -> bool:
        """Apply one origin's report; True when the watermark moved."""
        if origin not in self.expected:
            return False  # a writer of another plan: not one this partition waits for
        before = self.watermark
        if ended:
            self.ended.add(origin)
        if idle:
            self.idle.add(origin)
        else:
            self.idle.discard(origin)
        old = self.marks.get(origin)
        if mark is not None and (old is None or mark > old):
            self.marks[origin] = mark
        return self.watermark != before

    def load(self, saved: dict[str, Any]) -> None:
        """Merge what :meth:`snapshot` saved (the higher of two watermarks wins)."""
        for origin, (mark, idle) in saved.items():
            if origin not in self.expected:
                continue
            if mark is not None and int(mark) > self.marks.get(origin, int(mark) - 1):
                self.marks[origin] = int(mark)
            if idle:
                self.idle.add(origin)

    @property
    def watermark(self) -> int | None:
        marks = self.marks
        if not self.idle:
            if len(marks) < len(self.expected):
                return None
            return min(marks.values()) if marks else None
        active = self.expected - self.idle
        if not active:
            return min(marks.values()) if marks else None
        if any(o not in marks for o in active):
            return None
        return min(marks[o] for o in active)

    @property
    def finished(self) -> bool:
        return len(self.ended) == len(self.expected)

    def snapshot(self) -> dict[str, list[Any]]:
        """``{origin: [watermark or None, idle]}``: what a restart must judge by, as this did."""
        return {o: [self.marks.get(o), o in self.idle] for o in sorted(self.marks.keys() | self.idle)}


# --------------------------------------------------------------------------- the plan's view
#: The clock of a watermark: "" for the record timestamp, "@a.b" for a value field `a.b`
#: (a window `on a.b`). An origin reports one watermark per clock its readers use.
RECORD_TIME = ""


def _clock_of(origin: str) -> str:
    at = origin.find("@")
    return RECORD_TIME if at < 0 else origin[at:]


@dataclass(frozen=True)
class WatermarkPlan:
    """Which topics carry watermarks, who writes them, and which stores follow them.

    ``origins``: internal topic -> the topics whose partitions are its origins (the stream
    inputs of the sub-topologies that write it); ``clocks``: internal topic -> the clocks
    its watermarks are kept in; ``follows``: store -> (the topics whose watermark its
    stream time follows, the clock).
    """

    origins: dict[str, tuple[str, ...]]
    clocks: dict[str, tuple[str, ...]]
    follows: dict[str, tuple[tuple[str, ...], str]]
    #: internal topics whose writers set event time themselves: their record-time
    #: watermark is taken from what is written, not from what is read
    retimed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, plan: ExecutionPlan) -> WatermarkPlan:
        """Only topics upstream of a window or a stream-stream join carry watermarks: other
        steps never look at time, and their pipelines pay nothing."""
        topo = plan.topology
        roles = {t.name: t.role for t in plan.topics}
        read = {t for agent in plan.agents for _, t in agent.entries}
        internal = {t for t, role in roles.items() if role in ("repartition", "through") and t in read}
        writers: dict[str, set[str]] = {}  # internal topic -> origin topics
        retimed: set[str] = set()
        for agent in plan.agents:
            inputs = sorted({t for _, t in agent.entries})
            streams = [t for t in inputs if roles.get(t) != "table-source"] or inputs
            kinds = {step.kind for name in agent.nodes for step in _steps(topo.node(name))}
            for name in agent.nodes:
                node = topo.node(name)
                if isinstance(node, (n.Repartition, n.Through)) and node.topic in internal:
                    writers.setdefault(node.topic, set()).update(streams)
                    if kinds & RETIMING_KINDS:
                        retimed.add(node.topic)
        feeding: dict[str, tuple[set[str], set[str]]] = {}  # store -> (topics, nodes on the way)
        for store in plan.stores:
            if store.kind == "join-window" or (store.kind == "aggregate" and store.window is not None):
                side = next((s for s in ("left", "right") if store.name == join_store(store.node, s)), None)
                feeding[store.name] = _feeding(plan, plan.agent_of(store.node), store.node, side)
        needed = {t for topics, _ in feeding.values() for t in topics if t in writers}
        # A task that reads an internal topic beside other inputs takes them in event-time
        # order (runtime.alignment): it needs to know how far that topic is complete.
        aligned = {t for agent in plan.agents if len({t for _, t in agent.entries}) > 1
                   for _, t in agent.entries if t in writers}
        needed |= aligned
        follows: dict[str, tuple[tuple[str, ...], str]] = {}
        for name, (topics, nodes) in sorted(feeding.items()):
            streams = tuple(sorted(t for t in topics if roles.get(t) != "table-source"))
            clock = _clock(plan, plan.store(name), nodes)
            if clock is None or not any(t in needed for t in streams):
                continue
            if clock != RECORD_TIME and not all(t in needed for t in streams):
                continue  # a field's time is only tracked through internal topics
            follows[name] = (streams, clock)
        clocks: dict[str, set[str]] = {t: {RECORD_TIME} if t in aligned else set() for t in needed}
        for streams, clock in follows.values():
            for t in streams:
                if t in clocks:
                    clocks[t].add(clock)
        todo = sorted(needed)
        while todo:  # what closes or finishes downstream waits for the topics upstream too
            topic = todo.pop()
            for origin in writers[topic]:
                if origin in writers and (origin not in needed or not clocks[topic] <= clocks[origin]):
                    needed.add(origin)
                    clocks.setdefault(origin, set()).update(clocks[topic])
                    todo.append(origin)
        return cls({t: tuple(sorted(writers[t])) for t in sorted(needed)},
                   {t: tuple(sorted(clocks[t] or {RECORD_TIME})) for t in sorted(needed)}, follows,
                   frozenset(retimed & needed))


#: Node kinds that set a record's event time inside a pipeline (the `event_time` stage).
RETIMING_KINDS = frozenset({"event_time"})


def _steps(node: n.Node) -> tuple[n.Node, ...]:
    return node.steps if isinstance(node, n.Fused) else (node,)


def _clock(plan: ExecutionPlan, store: Any, nodes: set[str]) -> str | None:
    """The clock a store's step judges time by, if a watermark can stand for it."""
    if store.kind == "join-window":
        return RECORD_TIME
    window = store.window
    if window.time == "message":
        return RECORD_TIME
    if window.time != "event" or not window.time_field:
        return None  # processing time: the wall clock, not the records
    # A field is read at the writer, from what it sends: only steps that keep the value
    # as it is may lie between the topic and the window.
    for name in nodes:
        node = plan.topology.node(name)
        steps = node.steps if isinstance(node, n.Fused) else (node,)
        if not all(isinstance(step, (n.Filter, n.Window, n.Aggregate, n.Merge, n.Repartition, n.Through))
                   for step in steps):
            return None
    return "@" + ".".join(window.time_field)


def _feeding(plan: ExecutionPlan, agent: Any, node: str, side: str | None) -> tuple[set[str], set[str]]:
    """The topics of `agent` whose records reach `node` (through its `side` input for a join),
    and the nodes they pass on the way."""
    topo = plan.topology
    members = set(agent.nodes)
    todo = [node] if side is None else [e.source for e in topo.inputs(node) if (e.side or "left") == side]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in members:  # a boundary node upstream is read here, but written elsewhere
            todo.extend(topo.predecessors(name))
    topics = {topic for reader, topic in agent.entries if reader in seen}
    return topics, {name for name in seen if name in members and not isinstance(topo.node(name), (n.Source,))}


# --------------------------------------------------------------------------- the worker's bookkeeping
class _Follower:
    __slots__ = ("clock", "part", "topics")

    def __init__(self, part: Any, topics: tuple[str, ...], clock: str) -> None:
        self.part = part
        self.topics = topics
        self.clock = clock


Clocked = tuple[TP, str]  # (origin partition, clock)
_MISSING: Any = object()
_META = itemgetter(3)
_TIME = itemgetter(2)


def _times(batch: list[tuple], path: tuple[str, ...] | None) -> list[int | None]:
    """The time at `path` in each record's value (None where it cannot be read); with no
    path, each record's timestamp."""
    if path is None:
        return list(map(_TIME, batch))
    if len(path) == 1:
        name = path[0]
        try:
            return [int(rec[1][name]) for rec in batch]
        except (KeyError, TypeError, ValueError, IndexError):
            pass
    out: list[int | None] = []
    for rec in batch:
        value = rec[1]
        try:
            for name in path:
                value = value[name]
            out.append(int(value))
        except (KeyError, TypeError, ValueError, IndexError):
            out.append(None)
    return out


class Watermarks:
    """A worker's watermarks: what it read, what it told whom, and who follows them.

    The worker calls :meth:`observe` with each decoded batch of a source its writers
    read, :meth:`split` and :meth:`read` around the batches of internal topics,
    :meth:`stamp` on what it writes to internal topics and :meth:`heartbeats` once per
    flush; table partitions register through :meth:`opened` / :meth:`closed`.
    """

    def __init__(self, plan: ExecutionPlan, tables: dict[str, Any]) -> None:
        self.plan = WatermarkPlan.of(plan)
        self.tables = tables
        self.counts: dict[str, int] = {}
        self.progress: dict[Clocked, Progress] = {}  # partitions of internal topics read here
        self.marks: dict[Clocked, int] = {}  # source partitions: the highest time read (or written)
        self.ended: set[TP] = set()  # origins whose input this worker has finished
        # (internal topic, partition) -> {origin: (watermark, ended)} last told
        self._told: dict[tuple[str, int], dict[str, tuple[int | None, bool]]] = {}
        self._moved = False  # something to tell since the last heartbeats()
        self._writes = self.plan.origins  # internal topic -> origin topics
        self._clocks = self.plan.clocks
        self._origin_topics = {t for topics in self._writes.values() for t in topics}
        self.reading = frozenset(self._writes)
        # Sources whose record times are watermarks: origins, and sources read beside one.
        followed = {t for topics, clock in self.plan.follows.values() if clock == RECORD_TIME for t in topics}
        retimed = self.plan.retimed
        #: internal topics no store follows and no writer here reports on: their watermarks
        #: only bound time alignment, so they are applied as soon as they are fetched
        self.applied_on_fetch = frozenset(
            t for t in self.reading
            if t not in self._origin_topics and not any(t in topics for topics, _ in self.plan.follows.values()))
        self.observed = frozenset(t for t in (self._origin_topics | followed) - self.reading
                                  if any(RECORD_TIME in self._clocks[w] for w in self._writes
                                         if t in self._writes[w] and w not in retimed) or t in followed)
        self._followers: dict[Clocked, list[_Follower]] = {}
        self._placed: dict[str, dict[bytes | None, int]] = {}  # topic -> key -> partition
        self.idle: set[TP] = set()  # source partitions read to their end and quiet
        self._last_read: dict[TP, float] = {}
        self._next_idle_check = 0.0
        self._started = time.monotonic()
        # (origin topic, partition, clock) -> the highest time written from it since this
        # worker started (what tells an out-of-order record from an in-order one)
        self._sent_max: dict[tuple[str, int, str], int] = {}
        # internal topic -> [(clock, field path, or None: the timestamp)] of the watermarks
        # taken from what is written (a field's; record time where the writer sets it)
        self._paths = {topic: [(c, None if c == RECORD_TIME else tuple(c[1:].split(".")))
                               for c in clocks if c != RECORD_TIME or topic in retimed]
                       for topic, clocks in self._clocks.items()}
        # Record time: what is behind is found as it is read (over everything read, as the
        # watermark is), and remembered by id() of its message until the flush.
        self._behind_topics = {t for topic, clocks in self._clocks.items()
                               if RECORD_TIME in clocks and topic not in retimed for t in self._writes[topic]}
        self._behind_in: dict[int, tuple[str, int | None]] = {}

    @property
    def active(self) -> bool:
        return bool(self._writes)

    def set_counts(self, counts: dict[str, int]) -> None:
        """Partition counts of the topics involved (as the transport reports them)."""
        self.counts = dict(counts)

    def topics(self) -> list[str]:
        return sorted(self._origin_topics | set(self._writes))

    def _expected(self, topic: str, clock: str) -> list[str]:
        return [origin_of(t, p) + clock for t in self._writes.get(topic, ()) for p in range(self.counts.get(t, 0))]

    # -- reading -----------------------------------------------------------------
    def _progress(self, tp: TP, clock: str) -> Progress:
        progress = self.progress.get((tp, clock))
        if progress is None:
            progress = self.progress[(tp, clock)] = Progress(self._expected(tp.topic, clock))
        return progress

    def observe(self, tp: TP, batch: list[tuple]) -> None:
        """A decoded batch of a source partition: its highest record time is its watermark."""
        if not batch:
            return
        self._last_read[tp] = time.monotonic()
        if tp in self.idle:
            self.idle.discard(tp)
            self._moved = True
        key = (tp, RECORD_TIME)
        old = self.marks.get(key)
        ts = list(map(_TIME, batch))
        if old is not None and old <= ts[0] and all(map(le, ts, ts[1:])):
            high = ts[-1]  # in time order (the common case), checked in C
        else:
            high = max(ts)
            if tp.topic in self._behind_topics:
                self._mark_behind(tp, batch, ts, old)
        if old is None or high > old:
            self.marks[key] = high
            self._moved = True
            self._follow(key)

    def _mark_behind(self, tp: TP, batch: list[tuple], ts: list[int], old: int | None) -> None:
        """Remember the records read after a later one of their partition (all of them in
        the first batch this worker reads from it): what they are written as carries it."""
        origin = origin_of(tp.topic, tp.partition)
        marked = self._behind_in
        high = None
        for rec, t in zip(batch, ts):
            if old is None or t < (old if high is None or high < old else high):
                marked[id(rec[3])] = (origin, high)
            if high is None or t > high:
                high = t

    def read(self, tp: TP, entries: list[Entry]) -> None:
        """Apply the watermarks a record (or heartbeat) of an internal partition carried."""
        moved: set[str] = set()
        for origin, mark, ended, idle in entries:
            clock = _clock_of(origin)
            progress = self._progress(tp, clock)
            was_finished = progress.finished
            if progress.update(origin, mark, ended, idle) or (progress.finished and not was_finished):
                moved.add(clock)
        for clock in moved:
            self._moved = True
            self._follow((tp, clock))

    def watermark(self, tp: TP, clock: str = RECORD_TIME) -> int | None:
        """The watermark of a partition read here (a source's highest time, or its origins' lowest)."""
        if tp.topic in self.reading:
            progress = self.progress.get((tp, clock))
            return None if progress is None else progress.watermark
        return self.marks.get((tp, clock))

    def complete_until(self, tp: TP) -> float | None:
        """For time alignment: up to which event time a partition of an internal topic read
        here is complete, judged by its origins' record-time watermarks (no record of an
        origin that is neither ended nor idle is still to come before it).

        ``-inf``: not every such origin has reported yet; ``inf``: every origin ended;
        None: not tracked, or every origin that has not ended is idle (nothing is coming:
        judge it by the log's end, as a source).
        """
        if tp.topic not in self.reading or RECORD_TIME not in self._clocks.get(tp.topic, ()):
            return None
        progress = self.progress.get((tp, RECORD_TIME))
        if progress is None:
            return -math.inf
        active = progress.expected - progress.ended - progress.idle
        if not active:
            return math.inf if progress.finished else None
        marks = progress.marks
        if any(o not in marks for o in active):
            return -math.inf
        return min(marks[o] for o in active)

    def finished(self, tp: TP) -> bool:
        """Whether every origin of a partition read here has reported the end of its input."""
        for clock in self._clocks.get(tp.topic, (RECORD_TIME,)):
            progress = self.progress.get((tp, clock))
            if progress is None or not progress.finished:
                return False
        return True

    # -- table partitions that follow -------------------------------------------
    def opened(self, store: str, partition: int) -> None:
        follows = self.plan.follows.get(store)
        if follows is None:
            return
        topics, clock = follows
        part = self.tables[store].partitions[partition]
        for name, marks in (part.watermarks or {}).items():
            topic = name[:len(name) - len(clock)] if clock else name
            if topic in self.reading and name == topic + clock:
                self._progress(TP(topic, partition), clock).load(marks)
        follower = _Follower(part, topics, clock)
        part.follows = True
        for topic in topics:
            self._followers.setdefault((TP(topic, partition), clock), []).append(follower)
        self._update(follower, partition)

    def closed(self, store: str, partition: int) -> None:
        follows = self.plan.follows.get(store)
        if follows is None:
            return
        topics, clock = follows
        for topic in topics:
            followers = self._followers.get((TP(topic, partition), clock), [])
            followers[:] = [f for f in followers if f.part.store.name != store]

    def _follow(self, key: Clocked) -> None:
        for follower in self._followers.get(key, ()):
            self._update(follower, key[0].partition)

    def _update(self, follower: _Follower, partition: int) -> None:
        clock = follower.clock
        times = [self.watermark(TP(t, partition), clock) for t in follower.topics]
        marks = {t + clock: self.progress[(TP(t, partition), clock)].snapshot() for t in follower.topics
                 if (TP(t, partition), clock) in self.progress}
        follower.part.follow(None if None in times else min(times), marks)  # type: ignore[type-var]

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions that moved to another worker: their next owner reports for them."""
        gone = set(tps)
        for key in [k for k in self.progress if k[0] in gone]:
            del self.progress[key]
        for key in [k for k in self.marks if k[0] in gone]:
            del self.marks[key]
        self.ended -= gone
        self.idle -= gone

    async def check_idle(self, consumer: Any) -> bool:
        """Mark source partitions read to their end, and quiet, idle (at most once a second);
        True if that changed something to tell."""
        now = time.monotonic()
        if now < self._next_idle_check:
            return False
        self._next_idle_check = now + 1.0
        tps = [tp for tp in consumer.assignment() if tp.topic in self._origin_topics and tp.topic not in self.reading]
        if not tps:
            return False
        ends = await consumer.end_offsets(tps)
        changed = False
        for tp in tps:
            last = self._last_read.get(tp)
            quiet = ends[tp] == 0 or now - (self._started if last is None else last) >= IDLE_AFTER
            idle = consumer.position(tp) >= ends[tp] and quiet
            if idle != (tp in self.idle):
                (self.idle.add if idle else self.idle.discard)(tp)
                changed = True
        if changed:
            self._moved = True
        return changed

    # -- writing -----------------------------------------------------------------
    def end(self, tps: Iterable[TP]) -> None:
        """These origins' inputs are finished (a bounded run): say so downstream."""
        for tp in tps:
            if tp.topic in self._origin_topics and tp not in self.ended:
                self.ended.add(tp)
                self._moved = True

    def _written(self, topic: str, records: list[ProducerRecord], batch: list[tuple]) -> None:
        """Mark the records that came after a later one of their origin (``BEHIND``), and
        move field clocks' watermarks: the highest time each origin sent on.

        A batch holds runs of records from one origin; a run in time order (the common
        case) is checked in C, and only a run out of order is walked record by record.
        """
        behind: dict[int, dict[str, int | None]] = {}
        origins: dict[int, str] = {}
        if self._behind_in:
            marked = self._behind_in
            for i, rec in enumerate(batch):
                found = marked.get(id(rec[3]))
                if found is not None:
                    origins[i] = found[0]
                    behind[i] = {RECORD_TIME: found[1]}
        paths = self._paths[topic]
        if paths:
            self._written_fields(topic, batch, paths, behind, origins)
        if behind and len(records) == len(batch):  # else some failed to encode (dead letters)
            for i, clocks in behind.items():
                record = records[i]
                record.headers = (*record.headers, (BEHIND, orjson.dumps([origins[i], clocks])))

    def _written_fields(self, topic: str, batch: list[tuple], paths: list[tuple[str, tuple[str, ...] | None]],
                        behind: dict[int, dict[str, int | None]], origins: dict[int, str]) -> None:
        sources, sent, missing = self._writes[topic], self._sent_max, _MISSING
        keys = [(m.topic, m.partition) if m.__class__ is Message and m.topic in sources else None
                for m in map(_META, batch)]
        for clock, path in paths:
            ts = _times(batch, path)
            flush_high: dict[tuple[str, int, str], int] = {}  # what the reader has not heard of yet
            start = 0
            for key, run in groupby(keys):
                size = sum(1 for _ in run)
                first, start = start, start + size
                if key is None:
                    continue
                run_ts = ts[first:start]
                full = (key[0], key[1], clock)
                before = sent.get(full, missing)
                high = flush_high.get(full)
                if before is not missing and None not in run_ts and before <= run_ts[0] \
                        and all(map(le, run_ts, run_ts[1:])):
                    high = run_ts[-1]  # in order: nothing behind
                else:
                    # The first batch after this writer started: the reader knows what came before.
                    origin = origin_of(key[0], key[1])
                    for i, t in enumerate(run_ts, first):
                        if t is None:
                            continue  # the window dead-letters it; it moves no watermark
                        if before is missing or t < (before if high is None or high < before else high):
                            behind.setdefault(i, {})[clock] = high
                            origins[i] = origin
                        if high is None or t > high:
                            high = t
                    if high is None:
                        continue
                flush_high[full] = high
                if before is missing or high > before:
                    sent[full] = high
                t_key = (TP(key[0], key[1]), clock)
                if high > self.marks.get(t_key, high - 1):
                    self.marks[t_key] = high
                    self._moved = True

    def judge(self, tp: TP, behind: Behind | None) -> None:
        """Before a record that came after a later one of its origin: its followers judge
        it by the highest time its origin had sent before it (None: after it)."""
        origin, within = behind if behind is not None else ("", {})
        for clock in self._clocks.get(tp.topic, ()):
            followers = self._followers.get((tp, clock))
            if not followers:
                continue
            if behind is None:
                at = None
            else:
                progress = self.progress.get((tp, clock))
                known = None if progress is None else progress.marks.get(origin + clock)
                high = within.get(clock)
                at = known if high is None else high if known is None else max(known, high)
            for follower in followers:
                follower.part.judge = at

    def _news(self, topic: str, partition: int) -> list[Entry]:
        told = self._told.setdefault((topic, partition), {})
        news = []
        for clock in self._clocks[topic]:
            for tp in sorted(self._known(topic)):
                origin = origin_of(tp.topic, tp.partition) + clock
                now = (self.watermark(tp, clock), tp in self.ended, tp in self.idle)
                if told.get(origin, (None, False, False)) != now:
                    told[origin] = now
                    news.append((origin, *now))
        return news

    def _known(self, topic: str) -> set[TP]:
        sources = self._writes[topic]
        return {key[0] for key in (*self.marks, *self.progress) if key[0].topic in sources} | \
            {tp for tp in self.ended | self.idle if tp.topic in sources}

    def stamp(self, topic: str, records: list[ProducerRecord], batch: list[tuple]) -> list[ProducerRecord]:
        """Place records on their partitions; the last one to each partition carries the news."""
        if topic not in self._writes or not records:
            return records
        self._written(topic, records, batch)
        if not self._moved:
            return records
        count = self.counts[topic]
        placed = self._placed.get(topic)
        if placed is None:
            placed = self._placed[topic] = {}
        for record in records:
            if record.partition is None:
                key = record.key
                where = placed.get(key)
                if where is None:
                    where = placed[key] = partition_for(key, count)
                record.partition = where
        last = {record.partition: i for i, record in enumerate(records)}  # the last record to each
        for partition, i in last.items():
            news = self._news(topic, partition)
            if news:
                record = records[i]
                record.headers = (*record.headers, (HEADER, encode(news)))
        return records

    def heartbeats(self) -> list[Heartbeat]:
        """For every written partition that has not heard of a watermark that moved."""
        self._behind_in.clear()  # what this flush wrote is marked
        if not self._moved:
            return []
        self._moved = False
        out = []
        for topic in self._writes:
            for partition in range(self.counts.get(topic, 0)):
                news = self._news(topic, partition)
                if news:
                    out.append(Heartbeat(topic, None, None, partition, None,
                                         ((HEADER, encode(news)), _HEARTBEAT_HEADER)))
        return out
