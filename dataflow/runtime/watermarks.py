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
  unknown until each has reported: no window closes before that. Headers are applied in
  the order records arrive, after the record that carries them, so a record is judged
  against what its reader knew when it was written behind it: a record that was on time
  where it came from is on time where it lands.

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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..ir import nodes as n
from ..planner.naming import join_store
from ..planner.plan import ExecutionPlan
from ..transport.base import TP, Message, ProducerRecord, partition_for

__all__ = ["HEADER", "HEARTBEAT", "Heartbeat", "Progress", "Watermarks", "WatermarkPlan", "decode", "encode", "origin_of",
           "split"]

#: The header that carries ``[[origin, watermark or null, ended], ...]`` (JSON).
HEADER = "dataflow.watermark"
#: Marks a control record: readers apply its watermarks and ack it, steps never see it.
HEARTBEAT = "dataflow.heartbeat"
_HEARTBEAT_HEADER = (HEARTBEAT, b"")

Entry = tuple[str, "int | None", bool]  # (origin, watermark, ended)


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

    >>> decode(encode([("a[0]", 5, False), ("a[1]", None, True)]))
    [('a[0]', 5, False), ('a[1]', None, True)]
    """
    return orjson.dumps([[o, m, e] for o, m, e in entries])


def decode(value: bytes) -> list[Entry]:
    return [(str(o), None if m is None else int(m), bool(e)) for o, m, e in orjson.loads(value)]


def _entries(message: Message) -> list[Entry] | None:
    for name, value in message.headers:
        if name == HEADER:
            return decode(value)
    return None


def is_heartbeat(message: Message) -> bool:
    return _HEARTBEAT_HEADER in message.headers


def split(messages: list[Message]) -> list[tuple[list[Message], list[Entry], bool]]:
    """Cut a fetched batch after each record that carries watermarks.

    Each piece is pushed through the steps, then its watermarks are applied, so a record
    is never judged against a watermark written behind it. Heartbeats carry watermarks
    only: they end a piece without being in it (the flag says the piece ended in one).

    >>> m = [Message("r", 0, i, None, b"1", 0) for i in range(4)]
    >>> m[1] = Message("r", 0, 1, None, b"1", 0, ((HEADER, encode([("a[0]", 7, False)])),))
    >>> m[2] = Message("r", 0, 2, None, None, 0, ((HEADER, encode([("a[1]", 9, False)])), _HEARTBEAT_HEADER))
    >>> [([x.offset for x in piece], marks, beat) for piece, marks, beat in split(m)]
    [([0, 1], [('a[0]', 7, False)], False), ([], [('a[1]', 9, False)], True), ([3], [], False)]
    """
    out: list[tuple[list[Message], list[Entry], bool]] = []
    start = 0
    for i, message in enumerate(messages):
        if not message.headers:
            continue
        entries = _entries(message)
        if entries is None:
            continue
        beat = is_heartbeat(message)
        out.append((messages[start:i] if beat else messages[start:i + 1], entries, beat))
        start = i + 1
    if start < len(messages) or not out:
        out.append((messages[start:], [], False))
    return out


class Progress:
    """What one partition of an internal topic knows of its origins' watermarks.

    The watermark is the lowest over every expected origin, None until each has
    reported; each origin's watermark only moves forward. ``finished`` once every
    origin has reported the end of its (bounded) input.
    """

    __slots__ = ("ended", "expected", "marks")

    def __init__(self, expected: Iterable[str], marks: dict[str, int] | None = None) -> None:
        self.expected = frozenset(expected)
        self.marks: dict[str, int] = {}
        self.ended: set[str] = set()
        if marks:
            self.load(marks)

    def update(self, origin: str, mark: int | None, ended: bool) -> bool:
        """Apply one origin's report; True when the watermark moved."""
        if origin not in self.expected:
            return False  # a writer of another plan: not one this partition waits for
        if ended:
            self.ended.add(origin)
        if mark is None:
            return False
        old = self.marks.get(origin)
        if old is not None and mark <= old:
            return False
        before = self.watermark
        self.marks[origin] = mark
        return self.watermark != before

    def load(self, marks: dict[str, int]) -> None:
        """Merge persisted watermarks (the higher of two wins)."""
        for origin, mark in marks.items():
            self.update(origin, int(mark), False)

    @property
    def watermark(self) -> int | None:
        if len(self.marks) < len(self.expected):
            return None
        return min(self.marks.values()) if self.marks else None

    @property
    def finished(self) -> bool:
        return len(self.ended) == len(self.expected)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.marks.items()))


# --------------------------------------------------------------------------- the plan's view
@dataclass(frozen=True)
class WatermarkPlan:
    """Which topics carry watermarks, who writes them, and which stores follow them.

    ``origins``: internal topic -> the topics whose partitions are its origins (the stream
    inputs of the sub-topologies that write it). ``follows``: store -> the topics whose
    time its stream time follows (an internal topic, or a source topic read beside one).
    """

    origins: dict[str, tuple[str, ...]]
    follows: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, plan: ExecutionPlan) -> WatermarkPlan:
        """Only topics upstream of a window or a stream-stream join carry watermarks: other
        steps never look at time, and their pipelines pay nothing."""
        topo = plan.topology
        roles = {t.name: t.role for t in plan.topics}
        read = {t for agent in plan.agents for _, t in agent.entries}
        internal = {t for t, role in roles.items() if role in ("repartition", "through") and t in read}
        writers: dict[str, set[str]] = {}  # internal topic -> origin topics
        for agent in plan.agents:
            inputs = sorted({t for _, t in agent.entries})
            streams = [t for t in inputs if roles.get(t) != "table-source"] or inputs
            for name in agent.nodes:
                node = topo.node(name)
                if isinstance(node, (n.Repartition, n.Through)) and node.topic in internal:
                    writers.setdefault(node.topic, set()).update(streams)
        feeding: dict[str, set[str]] = {}
        for store in plan.stores:
            if store.kind == "join-window" or (store.kind == "aggregate" and store.window is not None):
                side = next((s for s in ("left", "right") if store.name == join_store(store.node, s)), None)
                feeding[store.name] = _feeding(plan, plan.agent_of(store.node), store.node, side)
        needed = {t for topics in feeding.values() for t in topics if t in writers}
        todo = list(needed)
        while todo:  # what finishes or closes downstream waits for the topics upstream too
            for origin in writers[todo.pop()]:
                if origin in writers and origin not in needed:
                    needed.add(origin)
                    todo.append(origin)
        follows = {name: tuple(sorted(t for t in topics if roles.get(t) != "table-source"))
                   for name, topics in sorted(feeding.items())
                   if _timed(plan.store(name)) and any(t in needed for t in topics)}
        return cls({t: tuple(sorted(writers[t])) for t in sorted(needed)}, follows)

    def topics_read_by_followers(self) -> set[str]:
        return {t for topics in self.follows.values() for t in topics}


def _timed(store: Any) -> bool:
    """Whether a store's step judges time by the record timestamp (what watermarks track)."""
    if store.kind == "join-window":
        return True
    window = store.window
    return store.kind == "aggregate" and window is not None and window.time == "message"


def _feeding(plan: ExecutionPlan, agent: Any, node: str, side: str | None) -> set[str]:
    """The topics of `agent` whose records reach `node` (through its `side` input for a join)."""
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
    topics = set()
    for reader, topic in agent.entries:
        if reader in seen:
            topics.add(topic)
    return topics


# --------------------------------------------------------------------------- the worker's bookkeeping
class _Follower:
    __slots__ = ("part", "topics")

    def __init__(self, part: Any, topics: tuple[str, ...]) -> None:
        self.part = part
        self.topics = topics


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
        #: internal topics read here -> expected origins, once partition counts are known
        self.expected: dict[str, frozenset[str]] = {}
        self.counts: dict[str, int] = {}
        self.progress: dict[TP, Progress] = {}
        self.marks: dict[TP, int] = {}  # source partitions: the highest event time read
        self.ended: set[TP] = set()  # origins whose input this worker has finished
        # (internal topic, partition) -> {origin: (watermark, ended)} last told
        self._told: dict[tuple[str, int], dict[str, tuple[int | None, bool]]] = {}
        self._moved = False  # something to tell since the last heartbeats()
        self._writes: dict[str, tuple[str, ...]] = self.plan.origins  # internal topic -> origin topics
        self._origin_topics = {t for topics in self._writes.values() for t in topics}
        self.observed = (self._origin_topics | self.plan.topics_read_by_followers()) - set(self._writes)
        self.reading = frozenset(self._writes)
        self._followers: dict[TP, list[_Follower]] = {}
        self._placed: dict[tuple[str, bytes | None], int] = {}

    @property
    def active(self) -> bool:
        return bool(self._writes)

    def set_counts(self, counts: dict[str, int]) -> None:
        """Partition counts of the topics involved (as the transport reports them)."""
        self.counts = dict(counts)
        for topic, sources in self._writes.items():
            self.expected[topic] = frozenset(origin_of(t, p) for t in sources for p in range(counts.get(t, 0)))

    def topics(self) -> list[str]:
        return sorted(self._origin_topics | set(self._writes))

    # -- reading -----------------------------------------------------------------
    def _progress(self, tp: TP) -> Progress:
        progress = self.progress.get(tp)
        if progress is None:
            progress = self.progress[tp] = Progress(self.expected.get(tp.topic, ()))
        return progress

    def observe(self, tp: TP, batch: list[tuple]) -> None:
        """A decoded batch of a source partition: its highest event time is its watermark."""
        if not batch:
            return
        high = max(rec[2] for rec in batch)
        old = self.marks.get(tp)
        if old is None or high > old:
            self.marks[tp] = high
            self._moved = True
            self._follow(tp)

    def read(self, tp: TP, entries: list[Entry]) -> None:
        """Apply the watermarks a record (or heartbeat) of an internal partition carried."""
        if not entries:
            return
        progress = self._progress(tp)
        moved = False
        for origin, mark, ended in entries:
            was_finished = progress.finished
            moved = progress.update(origin, mark, ended) or moved
            moved = moved or (progress.finished and not was_finished)
        if moved:
            self._moved = True
            self._follow(tp)

    def watermark(self, tp: TP) -> int | None:
        """The watermark of a partition read here (a source's highest time, or its origins' lowest)."""
        if tp.topic in self.reading:
            progress = self.progress.get(tp)
            return None if progress is None else progress.watermark
        return self.marks.get(tp)

    def finished(self, tp: TP) -> bool:
        progress = self.progress.get(tp)
        return progress is not None and progress.finished

    # -- table partitions that follow -------------------------------------------
    def opened(self, store: str, partition: int) -> None:
        topics = self.plan.follows.get(store)
        if topics is None:
            return
        part = self.tables[store].partitions[partition]
        for topic, marks in (part.watermarks or {}).items():
            if topic in self.reading:
                self._progress(TP(topic, partition)).load(marks)
        follower = _Follower(part, topics)
        part.follows = True
        for topic in topics:
            self._followers.setdefault(TP(topic, partition), []).append(follower)
        self._update(follower, partition)

    def closed(self, store: str, partition: int) -> None:
        for topic in self.plan.follows.get(store, ()):
            followers = self._followers.get(TP(topic, partition), [])
            followers[:] = [f for f in followers if f.part.store.name != store]

    def _follow(self, tp: TP) -> None:
        for follower in self._followers.get(tp, ()):
            self._update(follower, tp.partition)

    def _update(self, follower: _Follower, partition: int) -> None:
        times = [self.watermark(TP(t, partition)) for t in follower.topics]
        marks = {t: self.progress[TP(t, partition)].snapshot() for t in follower.topics
                 if TP(t, partition) in self.progress}
        follower.part.follow(None if None in times else min(times), marks)  # type: ignore[type-var]

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions that moved to another worker: their next owner reports for them."""
        for tp in tps:
            self.progress.pop(tp, None)
            self.marks.pop(tp, None)
            self.ended.discard(tp)

    # -- writing -----------------------------------------------------------------
    def end(self, tps: Iterable[TP]) -> None:
        """These origins' inputs are finished (a bounded run): say so downstream."""
        for tp in tps:
            if tp.topic in self._origin_topics and tp not in self.ended:
                self.ended.add(tp)
                self._moved = True

    def _state(self) -> dict[str, tuple[TP, tuple[int | None, bool]]]:
        out = {}
        for tp in {*self.marks, *self.progress, *self.ended}:
            if tp.topic in self._origin_topics:
                out[origin_of(tp.topic, tp.partition)] = (tp, (self.watermark(tp), tp in self.ended))
        return out

    def _news(self, topic: str, partition: int, state: dict[str, tuple[TP, tuple[int | None, bool]]]) -> list[Entry]:
        told = self._told.setdefault((topic, partition), {})
        sources = self._writes[topic]
        news = []
        for origin, (tp, now) in sorted(state.items()):
            if tp.topic in sources and told.get(origin) != now and (now[0] is not None or now[1]):
                told[origin] = now
                news.append((origin, now[0], now[1]))
        return news

    def stamp(self, topic: str, records: list[ProducerRecord]) -> list[ProducerRecord]:
        """Place records on their partitions; the last one to each partition carries the news."""
        if topic not in self._writes or not records or not self._moved:
            return records
        count = self.counts[topic]
        placed = self._placed
        last: dict[int, int] = {}
        for i, record in enumerate(records):
            if record.partition is None:
                where = placed.get((topic, record.key))
                if where is None:
                    where = placed[(topic, record.key)] = partition_for(record.key, count)
                record.partition = where
            last[record.partition] = i
        state = self._state()
        for partition, i in last.items():
            news = self._news(topic, partition, state)
            if news:
                record = records[i]
                record.headers = (*record.headers, (HEADER, encode(news)))
        return records

    def heartbeats(self) -> list[ProducerRecord]:
        """For every written partition that has not heard of a watermark that moved."""
        if not self._moved:
            return []
        self._moved = False
        state = self._state()
        out = []
        for topic in self._writes:
            for partition in range(self.counts.get(topic, 0)):
                news = self._news(topic, partition, state)
                if news:
                    out.append(Heartbeat(topic, None, None, partition, None,
                                         ((HEADER, encode(news)), _HEARTBEAT_HEADER)))
        return out
