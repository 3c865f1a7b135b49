"""Run a whole pipeline in a test, with no broker: pipe records in, read what comes out.

:class:`PipelineDriver` is to a dataflow pipeline what Kafka Streams' TopologyTestDriver
is to a topology. It compiles the pipeline (a ``.flow`` file, a Python file or
``module:attribute`` naming a ``Flow``, or a ``Flow``) and runs it with the runtime's own
worker on a private in-memory log (``memory://``) in this process: the records go through
exactly the code a ``dataflow run`` of the pipeline runs, batch by batch.

>>> from dataflow import Flow, col
>>> flow = Flow("shop", partitions=1)
>>> orders = flow.source("orders")
>>> _ = orders.filter(col("amount") > 100).to("large")
>>> with PipelineDriver(flow) as driver:
...     driver.pipe("orders", {"amount": 500}, key="alice", timestamp=1_000)
...     driver.pipe("orders", b"not json")
...     driver.read("large"), [d.stage for d in driver.dead_letters()]
([OutputRecord(key='alice', value={'amount': 500}, timestamp=1000, headers={}, partition=0)], ['decode'])

The driver is synchronous: each call returns once the pipeline has processed everything
it caused (outputs, repartitions, tables). Use it from plain ``def`` tests.

Time:

* event time moves with the records piped (their ``timestamp``, or the field the pipeline
  reads it from), per partition, as in a run; :meth:`end_input` ends the input, so that
  event time passes everything, as at the end of ``dataflow run --until-idle``: open
  ``emit final`` windows close and unmatched rows of left and outer joins come out;
* the wall clock stands still until :meth:`advance_wall_clock` moves it; the pipeline's
  timers (``every 10s emit ...``) tick on it, and records piped without a timestamp are
  stamped with it.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import Coroutine, Iterable
from datetime import timedelta
from typing import Any

import orjson

from ..builder import Flow
from ..ir.durations import parse_duration
from ..loader import load_pipeline
from ..planner import plan as compile_plan
from ..planner.naming import dead_letter_topic
from ..planner.plan import ExecutionPlan
from ..planner.render import to_text
from ..runtime.codecs import get_codec
from ..runtime.flow_timers import stop_timers
from ..runtime.query import table_names, unknown_table
from ..runtime.runner import decoded_value, json_or_text
from ..runtime.watermarks import is_heartbeat
from ..runtime.worker import Worker, WorkerOptions
from ..transport.base import Consumer, Message, Producer, ProducerRecord, TopicSpec
from ..transport.memory import MemoryTransport
from .clock import ManualClock
from .records import DeadLetter, InputRecord, OutputRecord, encode_headers

__all__ = ["DriverError", "PipelineDriver"]

#: The dead-letter headers that become a :class:`DeadLetter`'s fields.
_STAGE, _ERROR, _SOURCE = "dataflow.stage", "dataflow.error", "dataflow.source"


class DriverError(Exception):
    """The test used the driver wrongly: an unknown topic or table, a record after the end
    of the input, a call from a running event loop. The message says what to do."""


def compile_pipeline(pipeline: str | os.PathLike[str] | Flow, settings: dict[str, Any] | None = None
                     ) -> ExecutionPlan:
    """The plan of a ``.flow`` file, a Python file or ``module:attribute`` naming a Flow, or
    a Flow, with ``settings`` overridden (a Flow given as an object is left unchanged).

    >>> compile_pipeline("examples/wordcount.flow", {"partitions": 2}).settings.partitions
    2
    """
    if isinstance(pipeline, Flow):
        topology = pipeline.topology()
        if settings:
            topology = topology.with_settings(pipeline.settings.with_overrides(settings))
        return compile_plan(topology)
    return compile_plan(load_pipeline(os.fspath(pipeline), settings).topology())


class PipelineDriver:
    """A pipeline running in this process on a private in-memory log, driven by a test.

    ``pipeline``: a path (``.flow`` or ``.py``), ``module:attribute``, or a ``Flow``.
    ``settings``: setting overrides, as ``dataflow run --set`` gives them.
    ``wall_clock``: the wall clock's start, in epoch seconds (default: now).

    Close it with :meth:`close` (or use it in a ``with`` block, or get it from the
    ``pipeline_driver`` pytest fixture, which closes it after the test).
    """

    def __init__(self, pipeline: str | os.PathLike[str] | Flow, *, settings: dict[str, Any] | None = None,
                 wall_clock: float | None = None) -> None:
        _not_in_a_running_loop()
        self.plan: ExecutionPlan = compile_pipeline(pipeline, settings)
        self.clock = ManualClock(round(time.time(), 3) if wall_clock is None else wall_clock)
        self._loop = asyncio.new_event_loop()
        self._stdout = io.StringIO()
        self._stdout_read = 0
        self._readers: dict[str, Consumer] = {}
        self._timers: list[asyncio.Future[Any]] = []
        self._ended = False
        self._closed = False
        self.transport = MemoryTransport(clock=self.clock.ms)
        self.worker = Worker(self.plan, self.transport, WorkerOptions(
            batch_size=self.plan.settings.batch_size, commit_every=self.plan.settings.commit_every,
            commit_interval=self.plan.settings.commit_interval,
            poll_timeout=0.005,  # how long an idle poll waits: the driver polls till idle after every call
            stdout=self._stdout, timer_clock=self.clock, timer_sleep=self.clock.sleep))
        self._producer: Producer = self.transport.producer()
        try:
            self._call(self._start())
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the start is the one to see
                self.close()
            raise

    # ------------------------------------------------------------------ input
    def pipe(self, topic: str, value: Any, key: Any = None, *, timestamp: int | None = None,
             headers: Any = None) -> None:
        """Send one record to a source topic and process everything it causes.

        ``timestamp`` is epoch milliseconds (default: the driver's wall clock); ``headers``
        a mapping or ``(name, value)`` pairs. ``value`` and ``key`` are encoded as the topic
        declares; ``bytes`` are sent as they are.
        """
        self.pipe_many(topic, [InputRecord(value, key, timestamp, headers)])

    def pipe_many(self, topic: str, records: Iterable[Any]) -> None:
        """Send records to a source topic as one batch, as ``dataflow run --input`` does,
        and process everything they cause. Each is an :class:`InputRecord` or a bare value."""
        self._open()
        if self._ended:
            raise DriverError("the input has ended (end_input() was called); hint: open a new driver to pipe more")
        self._call(self._send(topic, [r if isinstance(r, InputRecord) else InputRecord(r) for r in records]))

    def end_input(self) -> None:
        """End the input: event time passes everything, as at the end of a bounded run
        (``dataflow run --until-idle``). Open ``emit final`` windows are emitted, and rows of
        left and outer joins still waiting for a partner, upstream steps first. Nothing can
        be piped afterwards."""
        self._open()
        if not self._ended:
            self._ended = True
            self._call(self.worker.run(until_idle=True, bounded=True))

    def advance_wall_clock(self, by: float | str | timedelta) -> None:
        """Move the wall clock forward by ``by`` (seconds, ``"10s"``, or a timedelta).

        Every timer tick due on the way fires, in order, each stamped with its own time, and
        what it emits is processed before the clock moves on to the next one."""
        self._open()
        self._call(self._advance(parse_duration(by) / 1000))

    # ------------------------------------------------------------------ output
    def read(self, topic: str) -> list[OutputRecord]:
        """The records written to ``topic`` since it was last read (partition by partition,
        in offset order), decoded as the topic declares."""
        self._open()
        codec = get_codec(self._topic(topic).serializer)
        return [OutputRecord(json_or_text(m.key), decoded_value(codec, m.value), m.timestamp, _headers(m.headers),
                             m.partition) for m in self._call(self._messages(topic))]

    def read_values(self, topic: str) -> list[Any]:
        """The values of :meth:`read`."""
        return [r.value for r in self.read(topic)]

    def read_pairs(self, topic: str) -> list[tuple[Any, Any]]:
        """The ``(key, value)`` pairs of :meth:`read`."""
        return [r.pair for r in self.read(topic)]

    def dead_letters(self) -> list[DeadLetter]:
        """The records dead-lettered since this was last called, with where and why."""
        self._open()
        out = []
        for m in self._call(self._messages(dead_letter_topic(self.plan.name))):
            headers = _headers(m.headers)
            stage, reason, source = (headers.pop(name, "") for name in (_STAGE, _ERROR, _SOURCE))
            out.append(DeadLetter(json_or_text(m.key), json_or_text(m.value), stage, reason, source, m.timestamp,
                                  headers))
        return out

    def read_stdout(self) -> list[tuple[Any, Any]]:
        """The ``(key, value)`` pairs written by ``to stdout`` sinks since this was last called."""
        text = self._stdout.getvalue()
        new, self._stdout_read = text[self._stdout_read:], len(text)
        return [(row["key"], row["value"]) for row in map(orjson.loads, new.splitlines())]

    def table(self, name: str) -> list[tuple[Any, Any]]:
        """The rows of a table, ``(key, value)`` in key order, as ``dataflow query`` shows
        them; a windowed table's key is ``(key, window_start)`` and its rows carry
        ``window_start`` and ``window_end``."""
        self._open()
        if name not in table_names(self.plan):
            raise unknown_table(self.plan, name)
        return self.worker.tables[name].rows()

    def plan_text(self, locations: bool = True) -> str:
        """The plan as ``dataflow plan`` prints it, locations relative to the project root,
        so that ``assert driver.plan_text() == snapshot`` holds on every machine."""
        return to_text(self.plan, locations=locations)

    @property
    def monitor(self) -> Any:
        """What the worker counted (:class:`~dataflow.runtime.monitor.Monitor`): messages
        read and sent per topic, dead letters per stage, late events per step."""
        return self.worker.monitor

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Stop the pipeline and free the event loop; closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run_until_complete(self._stop())
        finally:
            self._loop.close()

    def __enter__(self) -> PipelineDriver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        try:
            _not_in_a_running_loop()
        except DriverError:
            coroutine.close()
            raise
        return self._loop.run_until_complete(coroutine)

    def _open(self) -> None:
        if self._closed:
            raise DriverError(f"the driver of pipeline {self.plan.name} is closed")

    def _topic(self, name: str) -> Any:
        topics = {t.name: t for t in self.plan.topics}
        if name not in topics:
            raise DriverError(f"pipeline {self.plan.name} has no topic {name!r}; its topics are: "
                              + ", ".join(sorted(topics)))
        return topics[name]

    async def _start(self) -> None:
        await self.transport.start()
        # The user topics exist, as they would on a broker (even with auto_create_topics off).
        await self.transport.create_topics(TopicSpec(t.name, t.partitions, t.compacted)
                                           for t in self.plan.topics if not t.internal)
        await self.worker.start()
        # The driver runs the timers itself, for the driver's whole life: a worker runs them only
        # while run() runs, and the driver runs it once per call. One schedule keeps one grid.
        timers, self.worker.timers = self.worker.timers, []
        self._timers = [asyncio.ensure_future(timer.run()) for timer in timers]
        await self._timers_asleep()
        await self._producer.start()

    async def _send(self, topic: str, records: list[InputRecord]) -> None:
        plan = self._topic(topic)
        if plan.role not in ("source", "table-source"):
            inputs = sorted(t.name for t in self.plan.topics if t.role in ("source", "table-source"))
            raise DriverError(f"topic {topic!r} is not an input of pipeline {self.plan.name} (it is a {plan.role} "
                              f"topic); its input topics are: {', '.join(inputs) or 'none'}")
        codec = get_codec(plan.serializer)
        batch = [ProducerRecord(topic, _raw(r.key, orjson.dumps), _raw(r.value, codec.dumps), None, r.timestamp,
                                encode_headers(r.headers)) for r in records]
        if batch:
            await self._producer.send_batch(batch)
            await self._producer.flush()
        await self._settle()

    async def _settle(self) -> None:
        """Process until everything sent is consumed and every step is idle (input unbounded)."""
        await self.worker.run(until_idle=True, bounded=False)

    async def _advance(self, seconds: float) -> None:
        target = self.clock.now + seconds
        while (due := self.clock.next_deadline()) is not None and due <= target:
            self.clock.now = max(self.clock.now, due)
            if self.clock.wake_due():
                await self._timers_asleep()  # each woken timer has fired its tick
                await self._settle()
        self.clock.now = max(self.clock.now, target)

    async def _timers_asleep(self) -> None:
        """Wait until every timer waits for the clock again (its tick, if any, is done)."""
        spins = 0
        while self.clock.sleeping < sum(1 for task in self._timers if not task.done()):
            spins += 1
            await asyncio.sleep(0 if spins < 100 else 0.001)  # a tick may wait on real I/O (an agent call)

    async def _messages(self, topic: str) -> list[Message]:
        reader = self._readers.get(topic)
        if reader is None:
            self._topic(topic)
            if not await self.transport.describe_topics([topic]):
                return []  # a dead-letter topic before anything was dead-lettered
            reader = self._readers[topic] = self.transport.consumer(f"{self.plan.name}-test-driver-{topic}", [topic])
            await reader.start()
        out: list[Message] = []
        ends = await reader.end_offsets(reader.assignment())
        while any(reader.position(tp) < end for tp, end in ends.items()):
            batches = await reader.getmany(max_records=10_000, timeout=0)
            for tp in sorted(batches):
                out.extend(m for m in batches[tp] if not (m.headers and is_heartbeat(m)))
        out.sort(key=lambda m: (m.partition, m.offset))
        return out

    async def _stop(self) -> None:
        await stop_timers(self._timers)
        for reader in self._readers.values():
            await reader.stop()
        await self.worker.stop()
        await self._producer.stop()
        await self.transport.stop()


def _not_in_a_running_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise DriverError("the pipeline driver is synchronous and runs its own event loop; hint: use it from a plain "
                      "`def test_...`, not an `async def` one")


def _raw(obj: Any, dumps: Any) -> bytes | None:
    if obj is None or isinstance(obj, bytes):
        return obj
    return dumps(obj)


def _headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in headers}
