"""The worker: runs a plan's agents over a transport, batch by batch.

One consumer (group = the pipeline's name) reads every topic the agents read,
as Kafka Streams does; each fetched batch is decoded once, pushed through the
compiled steps of the agents that read its topic, its outputs are produced,
and only then are its offsets acked. Commits take the highest consecutive
acked offset (`runtime.offsets`), every `commit_every` messages or
`commit_interval` seconds, and on shutdown. An agent that reads several topics (a join,
a merge) takes their records in event-time order instead (`runtime.alignment`): its
batches wait, decoded, in per-partition queues, and are acked as the queues drain.

Malformed records (undecodable, not matching their declared type, or failing
in a step) go to `<pipeline>-dead-letters` with their original key and value
bytes and the reason in headers; the stream goes on.

Stateful steps keep their tables in a `StateManager` (`runtime.state`): partitions open
and are rebuilt from their changelogs when assigned, and every commit writes the
changelog before the offsets. On the embedded local log a commit is ONE atomic write of
the outputs produced since the last commit, the changelog records and the consumer
offsets, so a crash at any moment replays exactly the uncommitted input against exactly
the committed state (exactly-once). Elsewhere outputs are produced per batch and the
guarantee is at-least-once.

Timers declared in the pipeline (`flow.every`, `every 10s emit ...`) tick while `run()`
runs (`runtime.flow_timers`): each tick takes the batch lock, pushes its one record
through the timer's steps, and produces and commits like a batch. They do not keep an
`until_idle` run going.

After a repartition (or a `through` topic), stream time follows watermarks that the
writing tasks send along with their records (`runtime.watermarks`), so it advances with
the slowest upstream partition. A bounded run (`run(until_idle=True)`, unless told
`bounded=False`) ends by finishing: at the end of its input every stateful step, upstream
first, emits what was waiting for event time to pass (`runtime.finish`).

Python agents the pipeline calls (`call agent`, `to agent`) run in this process, their apps
on this worker's transport from `start()` to `stop()`; what reached them in a batch is asked
and cast before the batch's outputs are produced (`runtime.flow_agents`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import functools
import inspect
import operator
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

import orjson

from ..planner.naming import dead_letter_topic
from ..planner.plan import ExecutionPlan
from ..transport.base import TP, Consumer, Message, Producer, ProducerRecord, Transport
from ..transport.kafka_topics import declarations_for, declare_topics
from .alignment import HEARTBEAT_TIME, Aligner, bootstrap_topics
from .codecs import CodecError, get_codec
from .engine import CompiledAgent, Output, Rec, Step, compile_agent
from .event_time import EventTimeGuard, field_time
from .finish import Finisher
from .flow_agents import AgentApps
from .flow_timers import FlowTimer, TimerStep, stop_timers
from .keys import key_checker
from .monitor import Monitor
from .offsets import Tracker
from .records import validator
from .replies import encode_reply_value, reply_address, reply_to_record
from .state import RestoreError, StateManager, make_tables
from .stateful import StatefulStep
from .watermarks import Heartbeat, Watermarks, is_heartbeat, split

logger = logging.getLogger(__name__)


_topic_of = operator.attrgetter("topic")


def _compact(data: bytes) -> bytes:
    """A right-sized copy of orjson output.

    orjson's result keeps its whole working buffer (about 4 KiB) however short the
    JSON is; records kept in memory (memory:// topics, batches in flight) would cost
    4 KiB each. Copying 50 bytes is far cheaper than keeping (and page-faulting) 4 KiB.
    """
    return memoryview(data).tobytes()


@dataclass
class _Route:
    """How to decode one topic and which steps read it."""

    topic: str
    steps: list[Step]
    agent: str
    value_codec: Any
    key_codec: Any
    check: Callable[[Any], Any] | None
    timestamp_field: tuple[str, ...] | None
    tombstones: bool = False  # a table source: a null value deletes its key
    check_key: Callable[[Any], Any] | None = None  # a declared key type, or a table: see runtime.keys
    guard: EventTimeGuard | None = None  # a user topic: its event times are checked (runtime.event_time)


def _deletes(route: _Route, message: Message) -> bool:
    """Whether a table source's record deletes its key: a null value, or a JSON null (what
    `dataflow send --keyed` and `run --input --keyed` write for `{"value": null}`)."""
    return message.value is None or (message.value == b"null" and route.value_codec.name == "json")


@dataclass
class WorkerOptions:
    batch_size: int = 1000
    commit_every: int = 50_000
    commit_interval: float = 1.0
    poll_timeout: float = 0.05
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    #: where LevelDB table stores live; None keeps state in memory (as memory:// does)
    data_dir: str | None = None
    #: the clock (epoch seconds) and sleep of the pipeline's timers; None: time.time and asyncio.sleep
    timer_clock: Callable[[], float] | None = None
    timer_sleep: Callable[[float], Any] | None = None


class Worker:
    """Runs every agent of `plan` in this process.

    >>> import asyncio
    >>> from dataflow import Flow, col
    >>> from dataflow.planner import plan
    >>> from dataflow.transport.base import open_transport, ProducerRecord
    >>> flow = Flow("demo"); flow.source("n", value=int).filter(col("_value") > 1).to("big")
    >>> async def main():
    ...     async with open_transport("memory://", ".") as t:
    ...         w = Worker(plan(flow.topology()), t); await w.start()
    ...         await w.producer.send_batch([ProducerRecord("n", None, str(i).encode()) for i in range(4)])
    ...         await w.run(until_idle=True); await w.stop()
    ...         return w.monitor.as_dict()["messages_sent_by_topic"]
    >>> asyncio.run(main())
    {'big': 2}
    """

    def __init__(self, plan: ExecutionPlan, transport: Transport, options: WorkerOptions | None = None,
                 monitor: Monitor | None = None):
        self.plan = plan
        self.transport = transport
        self.options = options or WorkerOptions(batch_size=plan.settings.batch_size,
                                                commit_every=plan.settings.commit_every,
                                                commit_interval=plan.settings.commit_interval)
        self.monitor = monitor or Monitor()
        self.tracker = Tracker()
        self.dead_topic = dead_letter_topic(plan.name)
        self.agents: list[CompiledAgent] = []
        self.routes: dict[str, list[_Route]] = {}
        self.producer: Producer = None  # type: ignore[assignment]
        self.consumer: Consumer = None  # type: ignore[assignment]
        self._dead: list[ProducerRecord] = []
        self._stopping = asyncio.Event()
        self._since_commit = 0
        self._last_commit = time.monotonic()
        self._files: dict[str, TextIO] = {}
        self.tables = make_tables(plan)
        self.state = StateManager(plan, transport, "leveldb" if self.options.data_dir else "memory",
                                  self.options.data_dir, self.tables)
        self.stateful: list[StatefulStep] = []
        # The embedded local log writes outputs, changelogs and offsets in one transaction.
        self.transactional = hasattr(transport, "transaction")
        self._unwritten: list[ProducerRecord] = []  # outputs waiting for the next transaction
        self._lock = asyncio.Lock()  # a batch, a commit and a rebalance never interleave
        # Assigned partitions whose tables are open and recovered. A transport may hand out
        # records of a partition while its on_assigned callback still restores the state.
        self._ready: set[TP] = set()
        self._every_partition: list[TP] | None = None  # of the topics read, see is_idle()
        self._failure: BaseException | None = None  # a restore that failed in on_assigned
        # Asks in the current batch (records with reply headers), by id() of their message:
        # answered by the flow's first output for them, an error, or null if nothing came out.
        self._asks: dict[int, Message] = {}
        self._answered: set[int] = set()
        self._forwarded: set[int] = set()  # went on through an internal topic: answered downstream
        self.timers: list[FlowTimer] = []  # the pipeline's timers, ticking while run() runs
        self._timer_tasks: list[asyncio.Future[Any]] = []
        self.agent_apps = AgentApps(transport)  # the apps of the Python agents the pipeline calls
        # Tasks that read several inputs take their records in event-time order (runtime.alignment);
        # their topics' records wait in its queues. None: no such task, today's direct path only.
        self.aligner: Aligner | None = None
        self._direct: dict[str, list[_Route]] = {}  # topic -> routes processed as fetched
        self.watermarks = Watermarks(plan, self.tables)
        self.finisher: Finisher | None = None  # a bounded run at the end of its input

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # Checks before it creates: missing user topics (unless auto-create is on) and
        # co-partitioned topics with different partition counts fail here, before consuming.
        await declare_topics(self.transport, declarations_for(self.plan),
                             auto_create=self.plan.settings.auto_create_topics)
        order = {name: i for i, name in enumerate(self.plan.topology.order())}
        guard = EventTimeGuard.of(self.plan.settings)
        for agent in self.plan.agents:
            compiled = compile_agent(self.plan, agent, self._on_step_error, self.tables)
            self.agents.append(compiled)
            for topic, steps in compiled.entries.items():
                tplan = self.plan.topic(topic)
                schema = compiled.source_types[topic]
                user = tplan.role in ("source", "table-source")
                table = tplan.role == "table-source"
                self.routes.setdefault(topic, []).append(_Route(
                    topic, steps, agent.name, get_codec(tplan.serializer), get_codec("json"),
                    validator(schema.value) if user else None,
                    compiled.timestamp_fields.get(topic), table,
                    key_checker(topic, schema.key, table=table) if user else None,
                    guard if user else None))
            self.stateful.extend(s for s in compiled.steps.values() if isinstance(s, StatefulStep))
            self.timers.extend(
                FlowTimer(s.name, s.interval_ms / 1000, functools.partial(self._on_timer, agent.name, s),
                          clock=self.options.timer_clock, sleep=self.options.timer_sleep)
                for s in compiled.steps.values() if isinstance(s, TimerStep))
        self._align_routes()
        # Ticks run upstream first: what one step closes may feed (and close) the next.
        self.stateful.sort(key=lambda s: order.get(s.name, 0))
        for step in self.stateful:
            self.state.on_assigned.append(lambda p, _store, step=step: step.on_assigned(p))
            self.state.on_revoked.append(lambda p, _store, step=step: step.on_revoked(p))
        if self.watermarks.active:
            self.watermarks.set_counts(await self.transport.describe_topics(self.watermarks.topics()))
            self.state.on_assigned.append(lambda p, store: self.watermarks.opened(store, p))
            self.state.on_revoked.append(lambda p, store: self.watermarks.closed(store, p))
        await self.agent_apps.start(self.agents)
        self.producer = self.transport.producer()
        await self.producer.start()
        if not self.routes:
            return  # timers alone: no topic to read, no consumer
        self.consumer = self.transport.consumer(self.plan.name, sorted(self.routes),
                                                on_assigned=self._on_assigned, on_revoked=self._on_revoked)
        await self.consumer.start()

    def _align_routes(self) -> None:
        """Send the routes of agents that read several topics through the aligner."""
        for index, agent in enumerate(self.agents):
            if len(agent.entries) < 2:
                continue
            if self.aligner is None:
                self.aligner = Aligner(self.plan.settings.max_task_idle, 4 * self.options.batch_size,
                                       self.watermarks.complete_until)
            bootstrap = bootstrap_topics(self.plan, self.plan.agents[index])
            for topic in sorted(agent.entries):
                for order, route in enumerate(r for r in self.routes[topic] if r.steps is agent.entries[topic]):
                    self.aligner.register(route, index, topic, order, route.tombstones, topic in bootstrap,
                                          topic in self.watermarks.applied_on_fetch)
        aligned = self.aligner
        self._direct = {topic: [r for r in routes if aligned is None or not aligned.owns(r)]
                        for topic, routes in self.routes.items()}

    async def _on_assigned(self, tps: set[TP]) -> None:
        """Open and recover the tables of new partitions before any of their records is read."""
        async with self._lock:
            if self.aligner is not None:
                self.aligner.assign(tps)
            if self.state.has_state:
                before = self.state.restored
                try:
                    await self.state.assign(tps, self.consumer.committed)
                except Exception as e:
                    # The partitions would never become ready: stop the run loudly instead. Not
                    # re-raised: the run reports it once, as a RestoreError (the transport would
                    # only log it again, with a traceback).
                    self._failure = e
                    self._stopping.set()
                    return
                self.monitor.restored_records += self.state.restored - before
            self._ready |= tps

    async def _on_revoked(self, tps: set[TP]) -> None:
        """Finish and commit what was read from partitions that move away; close their tables."""
        async with self._lock:
            try:
                await self._flush()
                await self._commit_now()
            except Exception as e:  # noqa: BLE001 - e.g. a commit refused mid-rebalance
                # Whoever owns these partitions next replays from the last commit; what this
                # worker did since must not survive here as state it no longer owns.
                logger.warning("worker %s: commit on revocation failed (%s); uncommitted work on %d "
                               "partitions will be replayed by their next owner", self.plan.name, e, len(tps))
                self.state.discard(tps)
            finally:
                self._ready -= tps
                self.tracker.forget(tps)
                if self.aligner is not None:
                    self.aligner.revoke(tps)  # buffered records go unacked: the next owner replays them
                self.watermarks.forget(tps)
                await self.state.revoke(tps)

    async def stop(self) -> None:
        """Drain what is in flight, commit, and close."""
        self._stopping.set()
        await stop_timers(self._timer_tasks)
        if self.consumer is not None:
            async with self._lock:
                await self._flush()
                await self._commit_now()
            await self.consumer.stop()
        await self.agent_apps.stop()
        await self.state.close()
        if self.producer is not None:
            await self.producer.flush()
            await self.producer.stop()
        for f in self._files.values():
            f.close()
        self._files.clear()

    def request_stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------------ the loop
    async def run(self, until_idle: bool = False, idle_when: Callable[[], bool] = lambda: True,
                  bounded: bool | None = None) -> None:
        """Consume until stopped; with `until_idle`, until inputs are consumed and agents idle.

        The pipeline's timers tick meanwhile; they stop when this returns (so a pipeline of
        timers alone returns at once with `until_idle`).

        `bounded` (default: `until_idle`): the inputs are finite, so once they are consumed
        event time passes everything: open `emit final` windows and unmatched rows of left
        and outer joins are emitted, upstream steps first, before this returns. With
        `until_idle` and `bounded=False` the run stops with them still open, as an unbounded
        run leaves them, for a later run to go on.
        """
        if (until_idle if bounded is None else bounded) and self.consumer is not None:
            self.finisher = Finisher(self)
        self._timer_tasks.extend(asyncio.ensure_future(timer.run()) for timer in self.timers)
        try:
            await self._consume(until_idle, idle_when)
        finally:
            await stop_timers(self._timer_tasks)

    async def _on_timer(self, agent: str, step: TimerStep, tick: float) -> None:
        """One tick: its record goes through the timer's steps, and out, like a batch."""
        async with self._lock:
            if self._stopping.is_set():
                return
            if step.fire(round(tick * 1000)):
                self.monitor.on_events(agent, 1)
            await self._flush()
            if self._unwritten:
                # Outputs waiting for a transaction: write them now, so ticks never keep the
                # worker from being idle (and a pipeline of timers alone has no loop to do it).
                await self._commit_now()
            else:
                await self.commit()

    async def _consume(self, until_idle: bool, idle_when: Callable[[], bool]) -> None:
        if self.consumer is None:  # timers alone: they tick until the worker stops
            if not until_idle:
                await self._stopping.wait()
            return
        try:
            await self._consume_until_stopped(until_idle, idle_when)
        finally:
            if self._failure is not None:
                raise RestoreError(f"pipeline {self.plan.name} cannot restore the tables of its partitions: "
                                   f"{self._failure}") from self._failure

    async def _consume_until_stopped(self, until_idle: bool, idle_when: Callable[[], bool]) -> None:
        while not self._stopping.is_set():
            batches = await self.consumer.getmany(max_records=self.options.batch_size,
                                                  timeout=self.options.poll_timeout)
            if batches or (self.aligner is not None and self.aligner.buffered):
                async with self._lock:
                    started = time.perf_counter()
                    ready = self._take_ready(batches) if batches else []
                    for tp in ready:
                        self._process(tp, batches[tp])
                    done = await self._take_aligned() if self.aligner is not None else {}
                    if batches or done:
                        self._tick()
                        await self._flush()
                        for tp in ready:
                            self.tracker.ack(tp, batches[tp][-1].offset)
                        for tp, offset in done.items():
                            self.tracker.ack(tp, offset)
                        self.monitor.on_batch(time.perf_counter() - started)
                        await self.commit()
                        continue
                # Records are buffered but none may be taken yet (an input is awaited): idle below.
            if self._unwritten:
                async with self._lock:  # caught up: make the outputs waiting for a transaction visible
                    await self._commit_now()
            elif until_idle and idle_when():
                if self.aligner is not None and self.aligner.held_by_watermarks and self.aligner.buffered:
                    async with self._lock:  # its idle check: a quiet upstream may be what they wait for
                        await self.commit()
                if await self._shares_group():
                    async with self._lock:  # caught up: peers deciding whether they are idle wait for these offsets
                        await self.commit(force=bool(self.tracker.committable()))
                if await self.is_idle() and (self.finisher is None or await self.finisher.at_end()):
                    return
            else:
                async with self._lock:
                    await self.commit()

    def _take_ready(self, batches: dict[TP, list[Message]]) -> list[TP]:
        """The fetched partitions to process now, in order; callers hold the lock.

        A partition revoked while the batch was fetched is skipped (its next owner replays it
        from the last commit). One assigned but still being restored is read again later:
        processing it would write to tables that are not open yet.
        """
        assigned = self.consumer.assignment()
        ready = []
        for tp in sorted(batches):
            if tp in self._ready and tp in assigned:
                ready.append(tp)
            elif tp in assigned:
                offset = batches[tp][0].offset
                if self.aligner is not None and self.aligner.reads(tp.topic):
                    # What its queues still hold is read again too: forget it, unacked.
                    first = self.aligner.rewind(tp)
                    self.tracker.forget([tp])
                    offset = offset if first is None else min(first, offset)
                self.consumer.seek(tp, offset)
        return ready

    async def _take_aligned(self) -> dict[TP, int]:
        """Process what the aligned tasks may take now; returns, per partition, the offset to
        ack once the outputs are produced (tracked here, so it counts as in flight till then)."""
        aligner = self.aligner
        assert aligner is not None
        await aligner.refresh(self.consumer)
        aligner.run(self.consumer, time.monotonic(), self._process_slice)
        done = aligner.progress()
        for tp, offset in done.items():
            self.tracker.track_offset(tp, offset)
        pause, resume = aligner.flow_control()
        assigned = self.consumer.assignment()
        if pause:
            self.consumer.pause(*[tp for tp in pause if tp in assigned])
        if resume:
            self.consumer.resume(*[tp for tp in resume if tp in assigned])
        return done

    def _process_slice(self, route: _Route, batch: list[Rec]) -> None:
        """A slice of one aligned input (decoded when fetched) through its task's steps.

        On an internal topic that carries watermarks, the slice is cut where they are, as
        `_process` cuts a fetched batch: its heartbeats (queued in their place) and marks
        apply once the records before them in their partition are processed, not when fetched.
        """
        if not self._direct.get(route.topic):  # else its asks were noted when fetched
            for rec in batch:
                m = rec[3]
                if m.headers and reply_address(m.headers) is not None:
                    self._asks[id(m)] = m
        if route.topic not in self.watermarks.reading or route.topic in self.watermarks.applied_on_fetch:
            self._push_decoded(route, batch)
            return
        by_message = {id(rec[3]): rec for rec in batch}
        self._in_pieces(TP(route.topic, batch[0][3].partition), [rec[3] for rec in batch],
                        lambda piece: self._push_decoded(route, [by_message[id(m)] for m in piece]))

    def _push_decoded(self, route: _Route, batch: list[Rec]) -> None:
        if batch and route.topic in self.watermarks.observed:
            self.watermarks.observe(TP(route.topic, batch[0][3].partition), batch)
        for step in route.steps:
            step.push(batch)
        self.monitor.on_events(route.agent, len(batch))

    def _decode_queued(self, route: _Route, messages: list[Message]) -> list[Rec]:
        """A fetched batch of an aligned input, decoded for its queue. Heartbeats stay in the
        queue in their place (they carry the watermarks `_process_slice` applies there), with
        a time before any record's, so that one at the head is taken at once: what it says
        of the upstream's progress may be what the other inputs wait for."""
        if route.topic not in self.watermarks.reading:
            return self._decode(route, messages)
        if route.topic in self.watermarks.applied_on_fetch:  # applied in `_process`
            return self._decode(route, [m for m in messages if not (m.headers and is_heartbeat(m))])
        out: list[Rec] = []
        run: list[Message] = []
        for m in messages:
            if m.headers and is_heartbeat(m):
                if run:
                    out.extend(self._decode(route, run))
                    run = []
                out.append((None, None, HEARTBEAT_TIME, m))
            else:
                run.append(m)
        if run:
            out.extend(self._decode(route, run))
        return out

    def _tick(self) -> None:
        """Let stateful steps emit what the batch closed; count what they dropped as late."""
        for step in self.stateful:
            step.tick()
            if step.late:
                self.monitor.on_late(step.name, step.late)
                step.late = 0

    async def is_idle(self) -> bool:
        """Nothing in flight, every assigned partition read to its end, and every other
        partition of the topics it reads committed to its end by whichever worker owns it.

        The last part matters when several workers share the group: a peer still working
        may yet write into this worker's repartition partitions, or leave the group and hand
        its partitions over. Peers are checked first, so records they produced before their
        commit are inside the ends read for this worker's own partitions after it.
        """
        if self.tracker.in_flight or self._unwritten or not await self.agent_apps.idle():
            return False
        if self.aligner is not None and self.aligner.buffered and \
                not (self.finisher is not None and self.aligner.held_by_watermarks):
            # (At the end of a bounded input, records held for an upstream's watermark wait
            # for the upstream to finish, which happens once the worker is otherwise idle.)
            return False
        assigned = self.consumer.assignment()
        everything = await self._partitions_read()
        others = [tp for tp in everything if tp not in assigned]
        if others:
            ends = await self.consumer.end_offsets(others)
            for tp in others:
                if ends[tp] and (await self.consumer.committed(tp) or 0) < ends[tp]:
                    return False
        if not assigned:
            return True
        ends = await self.consumer.end_offsets(assigned)
        if self.consumer.assignment() != assigned:
            return False  # a rebalance happened meanwhile: look again
        for tp, end in ends.items():
            key = f"{tp.topic}[{tp.partition}]"
            self.monitor.end[key] = end
            if self.consumer.position(tp) < end:
                return False
        return True

    async def _shares_group(self) -> bool:
        """Whether other workers own some of the partitions this worker's group reads."""
        assigned = self.consumer.assignment()
        return any(tp not in assigned for tp in await self._partitions_read())

    async def _partitions_read(self) -> list[TP]:
        """Every partition of the topics this worker's group reads (counts fixed for the run)."""
        if self._every_partition is None:
            counts = await self.transport.describe_topics(sorted(self.routes))
            self._every_partition = [TP(topic, p) for topic, n in sorted(counts.items()) for p in range(n)]
        return self._every_partition

    def _process(self, tp: TP, messages: list[Message]) -> None:
        routes = self._direct.get(tp.topic, [])
        self.monitor.on_received(tp.topic, len(messages))
        self.monitor.read[f"{tp.topic}[{tp.partition}]"] = messages[-1].offset + 1
        self._since_commit += len(messages)
        if self.aligner is not None and self.aligner.reads(tp.topic):
            if tp.topic in self.watermarks.applied_on_fetch:
                self._read_marks(tp, messages)
            # Queued for its tasks, decoded now (the event time may be a value field); its
            # offsets are acked as the queues drain (`_take_aligned`), not with this batch.
            self.aligner.push(tp, messages, functools.partial(self._decode_queued, messages=messages))
            if not routes:
                return
        else:
            # A batch is processed, produced and acked as a unit, so its last offset stands for
            # all of it: the tracker's commit rule gives last + 1 once it is acked, at O(1) per batch.
            self.tracker.track_offset(tp, messages[-1].offset)
        for m in messages:
            if m.headers and reply_address(m.headers) is not None:
                self._asks[id(m)] = m
        if tp.topic in self.watermarks.reading:
            self._in_pieces(tp, messages, lambda piece: self._push(tp, routes, piece))
        else:
            self._push(tp, routes, messages)

    def _read_marks(self, tp: TP, messages: list[Message]) -> None:
        """Apply the watermarks a fetched batch carries (a topic whose marks only bound alignment)."""
        for _piece, marks, beat, _behind in split(messages):
            self.watermarks.read(tp, marks)
            if beat:
                self.monitor.on_received(tp.topic, -1)
                self.monitor.heartbeats_received += 1

    def _in_pieces(self, tp: TP, messages: list[Message], push: Callable[[list[Message]], None]) -> None:
        """Push messages of an internal topic that carries watermarks, cut where they are:
        watermarks apply after the record that carries them, a record out of order where it
        came from is judged as it was there, and heartbeats are counted apart, never pushed."""
        for piece, marks, beat, behind in split(messages):
            if behind is not None:
                self.watermarks.judge(tp, behind)
                push(piece)
                self.watermarks.judge(tp, None)
            elif piece:
                push(piece)
            self.watermarks.read(tp, marks)
            if beat:
                self.monitor.on_received(tp.topic, -1)
                self.monitor.heartbeats_received += 1

    def _push(self, tp: TP, routes: list[_Route], messages: list[Message]) -> None:
        observed = tp.topic in self.watermarks.observed
        for route in routes:
            batch = self._decode(route, messages)
            if observed:
                self.watermarks.observe(tp, batch)
            for step in route.steps:
                step.push(batch)
            self.monitor.on_events(route.agent, len(batch))

    def _decode(self, route: _Route, messages: list[Message]) -> list[Rec]:
        if route.tombstones and any(_deletes(route, m) for m in messages):
            return self._decode_with_tombstones(route, messages)
        values = route.value_codec.loads_many([m.value for m in messages], errors="return")
        check = route.check
        ts_field = route.timestamp_field
        decode_key = self._decode_key
        check_key, guard = route.check_key, route.guard
        low, high = (guard.low_ms, guard.high_ms()) if guard is not None else (0, 0)
        out: list[Rec] = []
        append = out.append
        for message, value in zip(messages, values):
            if isinstance(value, CodecError):
                self._dead_letter(message, "decode", str(value))
                continue
            try:
                if check is not None:
                    value = check(value)
                key = message.key
                if key is not None:
                    key = decode_key(route, key)
                if check_key is not None:
                    key = check_key(key)
                ts = message.timestamp if ts_field is None else field_time(value, ts_field)
                if guard is not None and not low <= ts <= high:
                    raise ValueError(guard.reason(ts))
            except (ValueError, KeyError, TypeError) as e:
                self._dead_letter(message, "validate", str(e))
                continue
            append((key, value, ts, message))
        return out

    def _decode_with_tombstones(self, route: _Route, messages: list[Message]) -> list[Rec]:
        """A table source's batch in order, its null values passed on as deletions."""
        out: list[Rec] = []
        run: list[Message] = []
        for message in [*messages, None]:
            if message is not None and not _deletes(route, message):
                run.append(message)
                continue
            if run:
                out.extend(self._decode(route, run))
                run = []
            if message is not None:
                key = self._decode_key(route, message.key)
                if route.check_key is not None:
                    try:
                        key = route.check_key(key)
                    except ValueError as e:
                        self._dead_letter(message, "validate", str(e))
                        continue
                out.append((key, None, message.timestamp, message))
        return out

    @staticmethod
    def _decode_key(route: _Route, key: bytes | None) -> Any:
        if key is None:
            return None
        try:
            return route.key_codec.loads(key)
        except CodecError:
            return key.decode("utf-8", "replace")  # plain-text keys from other producers are common

    # ------------------------------------------------------------------ outputs
    async def _call_agents(self) -> None:
        """Ask and cast for what agent steps collected (see `runtime.flow_agents`); replies
        that reached stateful steps tick now, as if they had come with the batch."""
        if await self.agent_apps.settle():
            self._tick()

    async def _flush(self) -> None:
        await self._call_agents()
        records: list[ProducerRecord] = []
        pending: list[Any] = []
        for agent in self.agents:
            for output in agent.outputs:
                if output.records:
                    records_or_awaitables = self._drain(output)
                    if output.kind == "topic":
                        records.extend(records_or_awaitables)
                    else:
                        pending.extend(records_or_awaitables)
        if pending:  # before producing, so a failing async sink's dead letter goes out with this batch
            await asyncio.gather(*pending)
        if self.watermarks.active:
            records.extend(self.watermarks.heartbeats())
        if self._asks:
            records.extend(self._unanswered_replies())
        if self._dead:
            records.extend(self._dead)
            self._dead = []
        if records:
            if self.transactional:
                self._unwritten.extend(records)  # written with the next commit, atomically
                return
            await self.producer.send_batch(records)
            self._count_sent(records)

    def _count_sent(self, records: list[ProducerRecord]) -> None:
        for topic, count in Counter(map(_topic_of, records)).items():  # counted in C, not per record in Python
            self.monitor.on_sent(topic, count)
        if self.watermarks.active and Heartbeat in Counter(map(type, records)):
            for record in records:  # control records are counted apart (rare: one per idle partition)
                if type(record) is Heartbeat:
                    self.monitor.on_sent(record.topic, -1)
                    self.monitor.heartbeats_sent += 1

    def _unanswered_replies(self) -> list[ProducerRecord]:
        """Null replies to asks that left no output here (filtered out), then forget them."""
        out = []
        for key, message in self._asks.items():
            if key not in self._answered and key not in self._forwarded:
                reply = reply_to_record(message.headers, value=b"null")
                if reply is not None:
                    out.append(reply)
        self._asks.clear()
        self._answered.clear()
        self._forwarded.clear()
        return out

    def _replies(self, output: Output, batch: list[Rec], records: list[Any]) -> list[Any]:
        """Answer the asks among `batch` (or carry their request on through an internal topic)."""
        asks, replies = self._asks, []
        for i, rec in enumerate(batch):
            key = id(rec[3])
            if key not in asks:
                continue
            request = asks[key].headers
            if output.internal:
                self._forwarded.add(key)
                if i < len(records):
                    records[i] = dataclasses.replace(records[i], headers=(*request, *records[i].headers))
            elif output.node and key not in self._answered:  # a sink: the flow's result
                self._answered.add(key)
                try:
                    reply = reply_to_record(request, value=encode_reply_value(rec[1]))
                except CodecError as e:
                    reply = reply_to_record(request, error=f"flow {self.plan.name}: the result cannot be encoded: {e}")
                if reply is not None:
                    replies.append(reply)
        return replies

    def _drain(self, output: Output) -> list[Any]:
        batch, output.records[:] = list(output.records), []
        if self._asks:
            drained = self._drain_records(output, batch)
            replies = self._replies(output, batch, drained if output.kind == "topic" else [])
            if replies:
                self._dead.extend(replies)  # produced with this batch's other records
            return drained
        return self._drain_records(output, batch)

    def _drain_records(self, output: Output, batch: list[Rec]) -> list[Any]:
        if output.kind == "topic":
            codec = get_codec(output.serializer)
            dumps, compact, target = orjson.dumps, _compact, output.target
            try:
                values = codec.dumps_many([rec[1] for rec in batch])
                if codec.name == "json":
                    values = [compact(v) for v in values]
                records = [ProducerRecord(target, compact(dumps(rec[0])) if rec[0] is not None else None, value,
                                          None, rec[2]) for rec, value in zip(batch, values)]
            except (CodecError, TypeError):
                records = self._encode_one_by_one(output, batch)
            return self.watermarks.stamp(target, records, batch) if output.internal else records
        if output.kind in ("stdout", "file"):
            lines = b"".join(orjson.dumps({"key": k, "value": v}) + b"\n" for k, v, _ts, _m in batch).decode()
            if output.kind == "stdout":
                self.options.stdout.write(lines)
                self.options.stdout.flush()
            else:
                self._file(output.target).write(lines)
            return []
        awaitables = []
        for k, v, _ts, meta in batch:
            try:
                result = output.func(v)  # type: ignore[misc]
            except Exception as e:  # noqa: BLE001 - a failing user sink dead-letters its record
                self._on_step_error((k, v, _ts, meta), e, output.node or output.target)
                continue
            if inspect.isawaitable(result):
                awaitables.append(self._await_sink(result, (k, v, _ts, meta), output.node or output.target))
        return awaitables

    async def _await_sink(self, awaitable: Any, rec: Rec, stage: str) -> None:
        try:
            await awaitable
        except Exception as e:  # noqa: BLE001 - a failing async sink dead-letters its record too
            self._on_step_error(rec, e, stage)

    def _encode_one_by_one(self, output: Output, batch: list[Rec]) -> list[ProducerRecord]:
        codec = get_codec(output.serializer)
        out = []
        for rec in batch:
            k, v, ts, _meta = rec
            try:
                out.append(ProducerRecord(output.target, _compact(orjson.dumps(k)) if k is not None else None,
                                          _compact(codec.dumps(v)), None, ts))
            except (CodecError, TypeError) as e:
                self._on_step_error(rec, e, f"encode {output.target}")
        return out

    def _file(self, path: str) -> TextIO:
        if path not in self._files:
            self._files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        return self._files[path]

    # ------------------------------------------------------------------ dead letters and commits
    def _on_step_error(self, rec: Rec, error: BaseException, node: str) -> None:
        meta = rec[3]
        if isinstance(meta, Message):
            self._dead_letter(meta, node, f"{type(error).__name__}: {error}")
        else:
            value = orjson.dumps(rec[1], default=str)
            self._dead.append(ProducerRecord(self.dead_topic, None, value, 0, rec[2], (
                ("dataflow.stage", node.encode()), ("dataflow.error", f"{type(error).__name__}: {error}".encode()))))
            self.monitor.on_dead_letter(node)

    def _dead_letter(self, message: Message, stage: str, reason: str) -> None:
        if self._asks and id(message) in self._asks and id(message) not in self._answered:
            self._answered.add(id(message))
            reply = reply_to_record(message.headers, error=f"flow {self.plan.name} failed at {stage}: {reason}")
            if reply is not None:
                self._dead.append(reply)
        headers = (*message.headers,
                   ("dataflow.stage", stage.encode()),
                   ("dataflow.error", reason.encode()),
                   ("dataflow.source", f"{message.topic}[{message.partition}]@{message.offset}".encode()))
        self._dead.append(ProducerRecord(self.dead_topic, message.key, message.value, 0, message.timestamp, headers))
        self.monitor.on_dead_letter(stage)

    async def commit(self, force: bool = False) -> None:
        """Commit if `commit_every` messages or `commit_interval` seconds have passed (or `force`)."""
        if self.watermarks.active and self.consumer is not None and await self.watermarks.check_idle(self.consumer):
            await self._flush()  # tell readers that a quiet source partition stops holding them back
        due = force or self._since_commit >= self.options.commit_every or \
            time.monotonic() - self._last_commit >= self.options.commit_interval
        if due:
            await self._commit_now()

    async def _commit_now(self) -> None:
        """Make outputs, state and offsets durable; callers hold the lock."""
        self._last_commit = time.monotonic()
        for step in self.stateful:
            step.before_commit()
        changelog = self.state.changelog()
        offsets = self.tracker.committable()
        if not offsets and not changelog and not self._unwritten and not self.state.dirty():
            return
        started = time.perf_counter()
        if self.transactional:
            records, self._unwritten = [*self._unwritten, *changelog], []
            async with self.transport.transaction() as txn:  # type: ignore[attr-defined]
                for record in records:
                    txn.send(record)
                if offsets:
                    txn.commit_offsets(self.consumer.group_id, offsets)
            results = txn.results[len(records) - len(changelog):]
            self._count_sent([r for r in records[:len(records) - len(changelog)]])
        else:
            results = await self.producer.send_batch(changelog) if changelog else []
            await self.producer.flush()
            if offsets:
                await self.consumer.commit(offsets)
        self.monitor.changelog_records += len(changelog)
        await self.state.flush(results)
        if offsets:
            self.tracker.mark_committed(offsets)
        self._since_commit = 0
        self.monitor.on_commit({f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()},
                               time.perf_counter() - started)
