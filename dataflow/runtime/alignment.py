"""Time-aligned consumption: a task that reads several inputs takes them in event-time order.

A *task* is one agent (sub-topology) for one partition number. When it reads more than one
input partition (a join of two topics, a stream and a table, a merge), each input partition
gets a queue of decoded records, and the task always takes from the queue whose head has the
lowest event time (ties: table inputs first, so a table update at the same time is visible
to the stream record; then a fixed order, by topic name). It takes a *slice* at a time --
every record of that queue up to the next-lowest head -- so the steps still get batches.

An input whose queue is empty holds the others back, boundedly (Kafka Streams'
`max.task.idle.ms`, here the setting `max_task_idle`):

* it has unread records (the log's end is past the consumer's position): wait for the fetch;
* it is caught up: with `max_task_idle` 0, go on without it; with a positive value, wait
  that long for new records (counted from when it was first found empty and caught up);
* it is an internal topic (a repartition or through topic, written by another
  sub-topology) whose watermark is known (`runtime.watermarks`): being caught up says
  nothing there, since its records exist only once the upstream task has written them.
  Instead no record before its watermark is still to come, so the others are taken up
  to it and wait beyond it, whatever `max_task_idle`, until the upstream reports that it
  went further, went idle, or ended.

A *bootstrap* table is read to the end it had when its task first ran before any other
input of the task gives a record.

`choose` is the pure rule; `Aligner` keeps the queues, the log ends and the offsets that
are safe to commit (all records below the lowest unprocessed one of every queue of a
partition), and tells the worker which partitions to pause while their queues are full.

>>> choose([Head(5), Head(3, table=True), Head(None, caught_up=True)], now=0.0, max_idle=0.0)
Take(index=1, until=(5, 1, 0))
>>> choose([Head(5), Head(None, caught_up=False)], now=0.0, max_idle=0.0)
Wait(until=None, watermark=False)
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ..transport.base import TP, Consumer, Message, TransportError

__all__ = ["HEARTBEAT_TIME", "Aligner", "Head", "Take", "Wait", "bootstrap_topics", "choose", "take_slice"]

Rec = tuple  # (key, value, timestamp, meta), as in runtime.engine
_TIME = itemgetter(2)
#: The queue time of a watermark heartbeat: before every record, so it is taken as soon as
#: the records before it in its partition are.
HEARTBEAT_TIME = -(2 ** 63)


@dataclass(frozen=True, slots=True)
class Head:
    """One input of a task as the chooser sees it.

    `time`: the event time of its first buffered record, None when nothing is buffered.
    `caught_up`: nothing unread in the log beyond what was fetched (only asked when empty).
    `bootstrapping`: a bootstrap table not yet read to its end.
    `idle_since`: when it was first found empty and caught up (for `max_task_idle`).
    `complete_until`: for an internal topic, the event time before which none of its
    records not fetched yet is still to come (its watermark; ``-inf`` while unknown,
    ``inf`` once ended); None: judged by the log's end. Nothing at or past it is taken
    from any input of the task, this one included (a slower upstream partition may yet
    send something earlier).
    """

    time: int | None
    table: bool = False
    caught_up: bool = True
    bootstrapping: bool = False
    idle_since: float | None = None
    complete_until: float | None = None


@dataclass(frozen=True, slots=True)
class Take:
    """Take from input `index` every leading record whose `(time, rank, index)` is below
    `until` (rank 0 for tables, 1 for streams); `until=None`: its whole queue."""

    index: int
    until: tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing may be taken now: wait for a fetch, or until `until` (monotonic seconds).

    `watermark`: what is awaited is an internal topic's watermark (its upstream's progress).
    """

    until: float | None
    watermark: bool = False


def bootstrap_topics(plan: Any, agent: Any) -> set[str]:
    """The topics an agent reads as bootstrap tables (`table(..., bootstrap=True)`)."""
    topology = plan.topology
    return {topic for reader, topic in agent.entries if getattr(topology.node(reader), "bootstrap", False)}


def _rank(head: Head, index: int) -> tuple[int, int, int]:
    assert head.time is not None
    return (head.time, 0 if head.table else 1, index)


def choose(heads: Sequence[Head], now: float, max_idle: float) -> Take | Wait | None:
    """Which input a task takes from next; None when every queue is empty.

    >>> choose([Head(7), Head(7, table=True)], now=0.0, max_idle=0.0)  # a table first on a tie
    Take(index=1, until=(7, 1, 0))
    >>> choose([Head(1), Head(None, idle_since=10.0)], now=10.5, max_idle=1.0)  # idle wait
    Wait(until=11.0, watermark=False)
    >>> choose([Head(1), Head(None, idle_since=10.0)], now=11.0, max_idle=1.0)
    Take(index=0, until=None)
    >>> choose([Head(1), Head(9, table=True, bootstrapping=True)], now=0.0, max_idle=0.0)
    Take(index=1, until=None)
    >>> choose([Head(5, table=True), Head(None, complete_until=8)], now=0.0, max_idle=0.0)  # up to a watermark
    Take(index=0, until=(8, 1, 1))
    >>> choose([Head(9, table=True), Head(None, complete_until=8)], now=0.0, max_idle=0.0)
    Wait(until=None, watermark=True)
    >>> choose([Head(9, table=True), Head(4, complete_until=6)], now=0.0, max_idle=0.0)  # a queue's own bound
    Take(index=1, until=(6, 1, 1))
    """
    if any(h.bootstrapping for h in heads):
        for index, head in enumerate(heads):
            if head.bootstrapping and head.time is not None:
                return Take(index, None)
        return Wait(None)  # its end is known to lie ahead: wait for the fetch
    deadline: float | None = None
    bounds = []  # internal inputs: the lowest rank a record of theirs not fetched yet may have
    for index, head in enumerate(heads):
        if head.complete_until is not None and head.complete_until != math.inf:
            bounds.append((head.complete_until, 0 if head.table else 1, index))
        if head.time is not None:
            continue
        if not head.caught_up:
            return Wait(None)
        if head.complete_until is not None:
            continue
        if max_idle > 0:
            ends = (head.idle_since if head.idle_since is not None else now) + max_idle
            if now < ends:
                deadline = ends if deadline is None else min(deadline, ends)
    ranked = sorted(_rank(h, i) for i, h in enumerate(heads) if h.time is not None)
    if not ranked:
        return None
    if deadline is not None:
        return Wait(deadline)
    bound = min(bounds) if bounds else None
    if bound is not None and bound <= ranked[0]:
        return Wait(None, watermark=True)
    until = ranked[1] if len(ranked) > 1 else None
    if bound is not None and (until is None or bound < until):
        until = (int(bound[0]), bound[1], bound[2])
    return Take(ranked[0][2], until)


def take_slice(queue: deque[Rec], rank: int, index: int, until: tuple[int, int, int] | None) -> list[Rec]:
    """Pop the leading records of `queue` that come before `until` (see `Take`).

    >>> q = deque([(None, 1, 5, None), (None, 2, 7, None), (None, 3, 6, None)])
    >>> [r[1] for r in take_slice(q, 1, 0, (7, 0, 1))], len(q)
    ([1], 2)
    """
    if until is None:
        out = list(queue)
        queue.clear()
        return out
    limit, tie = until[0], (rank, index) < until[1:]
    out = []
    while queue:
        ts = queue[0][2]
        if ts < limit or (ts == limit and tie):
            out.append(queue.popleft())
        else:
            break
    return out


@dataclass(eq=False)
class _Input:
    """One input partition of one task: its queue and what is known of its log."""

    tp: TP
    route: Any  # the worker's route: the steps that read this topic in this task
    table: bool
    bootstrap: bool
    order: tuple[str, int] = ("", 0)  # the fixed tie-break: topic name, then the route's place
    #: an internal topic whose watermarks are applied as fetched: its queue is kept in time
    #: order (its partitions interleave upstream partitions) and bounded by its watermark
    by_time: bool = False
    queue: deque[Rec] = field(default_factory=deque)
    end: int | None = None  # the log end, as last read (when no cheap high watermark is known)
    stale: bool = True  # the end must be read again before the input counts as caught up
    bootstrap_end: int | None = None
    bootstrapping: bool = False
    idle_since: float | None = None


@dataclass(eq=False)
class _Task:
    inputs: list[_Input] = field(default_factory=list)  # in the fixed tie-break order
    held: bool = False  # the last `run` stopped on an internal topic's watermark


@dataclass(frozen=True, slots=True)
class _Spec:
    task: Any  # which task of a partition this route feeds (the agent)
    order: tuple[str, int]  # tie-break: topic name, then the route's place
    table: bool
    bootstrap: bool
    by_time: bool


class Aligner:
    """The queues of every task that reads several inputs, for one worker.

    The worker `register`s the routes of such tasks, calls `assign`/`revoke` with its
    partitions, `push`es each fetched batch of their topics (decoded per route), then
    `run`s, which hands slices to `process(route, records)` in event-time order.
    `progress()` gives, per partition, the last offset below which every record is done
    (processed, or dead-lettered when decoded): the worker tracks and acks it once the
    outputs are produced, so a commit never covers a buffered record.
    """

    def __init__(self, max_idle: float, buffer_limit: int,
                 complete_until: Callable[[TP], float | None] | None = None) -> None:
        self.max_idle = max_idle
        self.buffer_limit = max(1, buffer_limit)
        #: how far an internal topic's partition is complete (`Watermarks.complete_until`)
        self.complete_until = complete_until or (lambda tp: None)
        #: after `run`: every task still holding records waits for an internal topic's watermark
        self.held_by_watermarks = False
        self._specs: dict[str, list[tuple[Any, _Spec]]] = {}  # topic -> (route, spec)
        self._tasks: dict[tuple[Any, int], _Task] = {}
        self._by_tp: dict[TP, list[_Input]] = {}
        self._fetched: dict[TP, int] = {}  # one past the last fetched offset
        self._done: dict[TP, int] = {}  # the last reported done position
        self._paused: set[TP] = set()
        self.buffered = 0

    # ------------------------------------------------------------------ set-up
    def register(self, route: Any, task: Any, topic: str, order: int, table: bool, bootstrap: bool,
                 by_time: bool = False) -> None:
        self._specs.setdefault(topic, []).append((route, _Spec(task, (topic, order), table, bootstrap, by_time)))

    def reads(self, topic: str) -> bool:
        return topic in self._specs

    def owns(self, route: Any) -> bool:
        return any(r is route for r, _ in self._specs.get(route.topic, ()))

    def assign(self, tps: Iterable[TP]) -> None:
        for tp in sorted(tps):
            for route, spec in self._specs.get(tp.topic, ()):
                if any(i.route is route for i in self._by_tp.get(tp, ())):
                    continue  # assignment callbacks may repeat partitions (eager rebalances)
                task = self._tasks.setdefault((spec.task, tp.partition), _Task())
                item = _Input(tp, route, spec.table, spec.bootstrap, spec.order, spec.by_time,
                              bootstrapping=spec.bootstrap)
                task.inputs.append(item)
                task.inputs.sort(key=lambda i: i.order)
                self._by_tp.setdefault(tp, []).append(item)

    def revoke(self, tps: Iterable[TP]) -> None:
        """Forget partitions: their buffered records are dropped unacked (replayed by the next owner)."""
        for tp in tps:
            self.rewind(tp)
            for item in self._by_tp.pop(tp, []):
                for key, task in list(self._tasks.items()):
                    if item in task.inputs:
                        task.inputs.remove(item)
                        if not task.inputs:
                            del self._tasks[key]
            self._done.pop(tp, None)
            self._paused.discard(tp)

    def rewind(self, tp: TP) -> int | None:
        """Drop what is buffered of `tp` (before a seek); returns the first offset not done."""
        first = self._position(tp)
        for item in self._by_tp.get(tp, ()):
            self.buffered -= len(item.queue)
            item.queue.clear()
            item.stale = True
            item.idle_since = None
        self._fetched.pop(tp, None)
        self._done.pop(tp, None)
        return first

    # ------------------------------------------------------------------ records in
    def push(self, tp: TP, messages: list[Message], decoded: Callable[[Any], list[Rec]]) -> None:
        """Queue a fetched batch of `tp` for every task reading it; `decoded(route)` decodes it."""
        items = self._by_tp.get(tp)
        if not items:
            return  # not assigned to a task here: nothing is marked done, so nothing is lost
        self._fetched[tp] = messages[-1].offset + 1
        self._done.setdefault(tp, messages[0].offset)  # where reading started: nothing below is ours
        for item in items:
            records = decoded(item.route)
            if records:
                if item.by_time:  # a merge of sorted runs: timsort's best case
                    item.queue = deque(sorted((*item.queue, *records), key=_TIME))
                else:
                    item.queue.extend(records)
                item.idle_since = None
                self.buffered += len(records)

    # ------------------------------------------------------------------ the log's ends
    async def refresh(self, consumer: Consumer) -> None:
        """Read the ends that decisions need: bootstrap ends (once per assignment) and the end
        of every empty input whose end went stale. A cheap high watermark is used when the
        consumer has one; the log end is asked only when a queue ran dry."""
        wanted: set[TP] = set()
        for task in self._tasks.values():
            for item in task.inputs:
                if item.bootstrapping and item.bootstrap_end is None:
                    wanted.add(item.tp)
                elif not item.queue and item.stale and consumer.highwater(item.tp) is None:
                    wanted.add(item.tp)
        if not wanted:
            return
        assigned = consumer.assignment()
        ends = await consumer.end_offsets(sorted(tp for tp in wanted if tp in assigned))
        for tp, end in ends.items():
            for item in self._by_tp.get(tp, ()):
                if item.bootstrapping and item.bootstrap_end is None:
                    item.bootstrap_end = end
                if not item.queue and item.stale:
                    item.end, item.stale = end, False

    def _head(self, item: _Input, consumer: Consumer, now: float) -> Head:
        if item.queue:
            bound = self.complete_until(item.tp) if item.by_time else None
            return Head(item.queue[0][2], item.table, True, item.bootstrapping, None, bound)
        try:
            position = consumer.position(item.tp)
        except TransportError:  # no position yet (just assigned): records may be there
            return Head(None, item.table, False, item.bootstrapping)
        if item.bootstrapping:
            if item.bootstrap_end is not None and position >= item.bootstrap_end:
                item.bootstrapping = False  # read to its end: an ordinary table input from now on
            else:
                return Head(None, item.table, False, True)
        end = consumer.highwater(item.tp)
        if end is None:
            end = item.end if not item.stale else None
        caught_up = end is not None and position >= end
        if caught_up:
            bound = self.complete_until(item.tp)
            if bound is not None:
                item.idle_since = None
                return Head(None, item.table, True, False, None, bound)
            if item.idle_since is None:
                item.idle_since = now
        else:
            item.idle_since = None
        return Head(None, item.table, caught_up, False, item.idle_since)

    # ------------------------------------------------------------------ records out
    def run(self, consumer: Consumer, now: float, process: Callable[[Any, list[Rec]], None]) -> int:
        """Hand every slice that may be taken now to `process`; returns how many records."""
        taken = 0
        held = True
        for task in list(self._tasks.values()):
            inputs = task.inputs
            while inputs:
                heads = [self._head(i, consumer, now) for i in inputs]
                choice = choose(heads, now, self.max_idle)
                if not isinstance(choice, Take):
                    task.held = isinstance(choice, Wait) and choice.watermark
                    if choice is not None and not task.held:
                        held = False
                    break
                item = inputs[choice.index]
                records = take_slice(item.queue, 0 if item.table else 1, choice.index, choice.until)
                if not item.queue:
                    item.stale = True  # ran dry: read its end again before calling it caught up
                self.buffered -= len(records)
                taken += len(records)
                process(item.route, records)
        self.held_by_watermarks = held
        return taken

    def _position(self, tp: TP) -> int | None:
        """The first offset of `tp` not done by every task reading it (None: nothing fetched)."""
        fetched = self._fetched.get(tp)
        if fetched is None:
            return None
        first = fetched
        for item in self._by_tp.get(tp, ()):
            if item.by_time and item.queue:  # in time order, not offset order
                first = min(first, min(rec[3].offset for rec in item.queue))
            elif item.queue:
                first = min(first, item.queue[0][3].offset)
        return first

    def progress(self) -> dict[TP, int]:
        """Per partition whose done position moved: the last offset below it (to track and ack)."""
        out = {}
        for tp in self._fetched:
            position = self._position(tp)
            if position is not None and position > self._done[tp]:
                self._done[tp] = position
                out[tp] = position - 1
        return out

    def flow_control(self) -> tuple[list[TP], list[TP]]:
        """Partitions to pause (every queue of it is full) and to resume (one has room again).

        No input of a task that waits for an internal topic's watermark is paused: what moves
        the watermark may lie further on in that topic's partition, behind records of faster
        upstream partitions, or come only once the worker has read everything and the run
        ends (a bounded run), so the queues grow past the limit meanwhile.
        """
        pause, resume = [], []
        held = {id(i) for task in self._tasks.values() if task.held for i in task.inputs}
        for tp, items in self._by_tp.items():
            full = bool(items) and all(len(i.queue) >= self.buffer_limit and id(i) not in held for i in items)
            if full and tp not in self._paused:
                self._paused.add(tp)
                pause.append(tp)
            elif not full and tp in self._paused:
                self._paused.discard(tp)
                resume.append(tp)
        return pause, resume
