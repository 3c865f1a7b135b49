"""The user-facing App: topics, channels and Faust-style agents on one transport.

>>> import asyncio
>>> app = App("demo", broker="memory://")
>>> numbers = app.topic("numbers", partitions=2)
>>> seen = []
>>> @app.agent(numbers, concurrency=2)
... async def double(stream):
...     async for value in stream:
...         seen.append(value * 2)
>>> async def run():
...     await app.start()
...     await numbers.send_many([(i, i) for i in range(4)])
...     await app.run_until_idle()
>>> asyncio.run(run()); sorted(seen)
[0, 2, 4, 6]

One consumer per App (group = the app name) feeds a conductor that hands each message
to every subscription of its topic and tracks it in a :class:`~dataflow.runtime.offsets.Tracker`
with one reference per subscription. Streams ack when the step that took an event
finishes; commits take :meth:`Tracker.committable` every ``commit_every`` acks,
every ``commit_interval`` seconds, on revocation and on stop, so a committed offset never
passes a message still being processed, whatever the concurrency.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from dataflow.planner.naming import dead_letter_topic
from dataflow.runtime.agents import Agent, OnError
from dataflow.runtime.channels import Channel, DecodeError, Subscription, Topic
from dataflow.runtime.codecs import Codec
from dataflow.runtime.events import Event, current_event
from dataflow.runtime.monitor import Monitor
from dataflow.runtime.offsets import Tracker
from dataflow.runtime.replies import (
    CORRELATION_ID,
    ReplyConsumer,
    encode_reply_value,
    reply_address,
    reply_to_record,
    wants_reply_always,
)
from dataflow.runtime.timers import Crontab, Task, Timer
from dataflow.runtime import user_tables
from dataflow.runtime.user_tables import TableManager
from dataflow.transport.base import (
    TP,
    Consumer,
    Message,
    Producer,
    ProducerRecord,
    TopicSpec,
    Transport,
    TransportError,
    open_transport,
)

__all__ = ["App"]

logger = logging.getLogger(__name__)

_DEFAULT = object()


class App:
    """A stream-processing application (Faust's ``faust.App``).

    ``broker``: ``"memory://"`` (default), ``memory://NAME``, ``local://PATH``, ``None``
    for the embedded local log under ``data_dir`` (default ``./.dataflow/<name>``), or a
    :class:`Transport` instance (which the app starts but does not stop).

    RPC settings (see :meth:`Agent.ask <dataflow.runtime.agents.Agent.ask>`): replies to
    this app's asks go to the topic ``reply_to`` (default ``{reply_to_prefix}{name}``,
    one partition); an ask without a reply after ``reply_expires`` seconds fails with
    :class:`~dataflow.runtime.replies.AskTimeout`. ``client_only=True`` starts only what
    asking needs (a producer and the reply consumer): no agents, timers or consumer group.

    Rebalances: when partitions are revoked, their queued events are dropped and the
    actors get up to ``revoke_wait`` seconds to finish the events they hold before the
    commit; the next owner reads the rest again from that commit.
    """

    def __init__(
        self,
        name: str,
        *,
        broker: str | Transport | None = "memory://",
        data_dir: str | Path | None = None,
        commit_every: int = 10_000,
        commit_interval: float = 2.8,
        topic_partitions: int = 8,
        stream_buffer_maxsize: int = 4096,
        max_poll_records: int = 500,
        poll_timeout: float = 0.05,
        startup_timeout: float = 1.0,
        shutdown_timeout: float = 30.0,
        revoke_wait: float = 10.0,
        max_restarts: int = 10,
        restart_window: float = 60.0,
        reply_to: str | None = None,
        reply_to_prefix: str = "dataflow-reply-",
        reply_expires: float = 30.0,
        client_only: bool = False,
        monitor: Monitor | None = None,
    ) -> None:
        TopicSpec(name, 1)  # the app name prefixes internal topics: check it once, here
        self.name = name
        self.data_dir = Path(data_dir) if data_dir is not None else Path(".dataflow") / name
        self.transport: Transport
        self._owns_transport = True
        self.started = False
        self.set_broker(broker)
        self.commit_every = commit_every
        self.commit_interval = commit_interval
        self.topic_partitions = topic_partitions
        self.stream_buffer_maxsize = stream_buffer_maxsize
        self.max_poll_records = max_poll_records
        self.poll_timeout = poll_timeout
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.revoke_wait = revoke_wait
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.reply_to = reply_to or f"{reply_to_prefix}{name}"
        TopicSpec(self.reply_to, 1)
        self.reply_expires = reply_expires
        self.client_only = client_only
        self.monitor = monitor or Monitor()
        self.dead_letter_topic = dead_letter_topic(name)

        self.agents: dict[str, Agent] = {}
        #: ``@app.task``, ``@app.timer`` and ``@app.crontab`` functions, in declaration order.
        self.tasks: list[Task] = []
        self._topics: dict[str, list[Topic]] = {}
        self._channels: list[Channel] = []
        #: Tables declared with :meth:`Table` and :meth:`SetTable`, by name (Faust's ``app.tables``).
        self.tables = TableManager(self)
        self._only_agents: set[str] | None = None
        self.started = False
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        """Fresh run-time state for a start: subscriptions, offsets and asyncio objects
        belong to one run (and one event loop), so an app can be started again, e.g. by
        one test after another."""
        self._topic_subs: dict[str, list[tuple[Topic, Subscription]]] = {}
        self._subs: dict[str, Subscription] = {}
        for channel in self._channels:
            channel.subscriptions.clear()
        self._created: set[str] = set()
        self._tracker = Tracker()
        # Assigned partitions whose tables are open: a transport may hand out records of a
        # partition while on_assigned still restores them (those are read again later).
        self._ready: set[TP] = set()
        # Bumped when a partition is revoked, so a late ack of an event delivered before
        # cannot ack the same offset delivered again after it comes back.
        self._epochs: dict[TP, int] = {}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._consumer_topics: set[str] = set()
        self._resubscribe_needed = False
        self._resubscribing = False
        self._delivering = False
        self._acks_since_commit = 0
        self._commit_wakeup = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._fetch_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._stopped_agents: list[Agent] = []
        self._background: list[asyncio.Task[None]] = []
        self._busy_tasks = 0
        self._reply_consumer: ReplyConsumer | None = None
        self._reply_lock = asyncio.Lock()
        #: Requests being processed that want a reply whatever happens (``dataflow.reply-always``),
        #: by ``id()`` of their headers (shared by every event of one delivery).
        self._open_asks: dict[int, _OpenAsk] = {}
        self._null_replies: set[asyncio.Future[None]] = set()

    def set_broker(self, broker: str | Transport | None, data_dir: str | Path | None = None) -> None:
        """Point the app at another broker before it starts (what ``dataflow ask
        --broker`` and test contexts do); same values as the ``broker`` argument.

        >>> app = App("shop")
        >>> app.set_broker("memory://other"); app.transport.url
        'memory://other'
        """
        if self.started:
            raise RuntimeError(f"app {self.name!r} is running; hint: stop it before changing its broker")
        if data_dir is not None:
            self.data_dir = Path(data_dir)
        if isinstance(broker, Transport):
            self.transport, self._owns_transport = broker, False
        else:
            self.transport, self._owns_transport = open_transport(broker, str(self.data_dir)), True

    def __repr__(self) -> str:
        return f"<App {self.name} on {self.transport.url}>"

    # -- declarations ----------------------------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        key_type: type | None = None,
        value_type: type | None = None,
        key_serializer: str | Codec = "json",
        value_serializer: str | Codec = "json",
        partitions: int | None = None,
        internal: bool = False,
    ) -> Topic:
        """Describe a topic. Asking again for a name with no other argument returns the
        first description; with arguments, a new description of the same topic (its own
        codecs and types) is returned."""
        TopicSpec(name, 1)
        existing = self._topics.get(name)
        plain = (key_type, value_type, key_serializer, value_serializer, partitions) == (None, None, "json", "json", None)
        if existing and plain:
            return existing[0]
        topic = Topic(
            self, name, key_type=key_type, value_type=value_type, key_serializer=key_serializer,
            value_serializer=value_serializer, partitions=partitions, internal=internal,
        )
        if existing:
            known = next((t.partitions for t in existing if t.partitions), None)
            if topic.partitions is None:
                topic.partitions = known
        self._topics.setdefault(name, []).append(topic)
        return topic

    def channel(self, name: str | None = None, *, maxsize: int | None = None) -> Channel:
        """An in-memory channel; ``maxsize`` bounds each reader's queue (default: the
        app's ``stream_buffer_maxsize``)."""
        channel = Channel(self, name, self.stream_buffer_maxsize if maxsize is None else maxsize)
        self._channels.append(channel)
        return channel

    def Table(  # noqa: N802 - Faust's name
        self,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        partitions: int | None = None,
        help: str = "",  # noqa: A002 - Faust's name
    ) -> user_tables.Table:
        """A partitioned, changelogged dict for agents (Faust's ``app.Table``); see
        :mod:`dataflow.runtime.user_tables`. Missing keys read as ``default()`` when given;
        ``partitions`` defaults to the app's ``topic_partitions``. Window it with
        ``.tumbling(size)``, ``.hopping(size, step)`` or ``.sliding(before, after)``.

        >>> app = App("shop")
        >>> totals = app.Table("totals", default=int)
        >>> totals.changelog_topic, app.tables["totals"] is totals
        ('shop-totals-changelog', True)
        """
        table = user_tables.Table(self, name, default=default, partitions=partitions, help=help)
        self.tables.add(table)
        return table

    def SetTable(  # noqa: N802 - Faust's name
        self,
        name: str,
        *,
        partitions: int | None = None,
        help: str = "",  # noqa: A002 - Faust's name
    ) -> user_tables.SetTable:
        """A table of sets (Faust's ``app.SetTable``): ``t[k].add(x)``, ``t[k].discard(x)``.

        >>> app = App("visits")
        >>> app.SetTable("pages", partitions=4).partitions
        4
        """
        table = user_tables.SetTable(self, name, partitions=partitions, help=help)
        self.tables.add(table)
        return table

    def agent(
        self,
        channel: Topic | Channel | str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: Iterable[Any] | None = None,
        isolated_partitions: bool = False,
        on_error: OnError | None = None,
        max_restarts: int | None = None,
        restart_window: float | None = None,
    ) -> Callable[[Callable[..., Any]], Agent]:
        """Decorate ``async def fun(stream)`` (or an async generator) as an agent reading
        ``channel`` (default: the topic ``{app}-{name}``)."""

        def decorate(fun: Callable[..., Any]) -> Agent:
            agent_name = name or fun.__name__
            if agent_name in self.agents:
                raise ValueError(f"agent {agent_name!r} is already defined; hint: pass name=...")
            if self.started:
                raise RuntimeError(f"agent {agent_name!r} declared after the app started")
            source = channel
            if source is None:
                source = self.topic(f"{self.name}-{agent_name}")
            elif isinstance(source, str):
                source = self.topic(source)
            agent = Agent(
                fun, app=self, channel=source, name=agent_name, concurrency=concurrency, sink=sink,
                isolated_partitions=isolated_partitions, on_error=on_error,
                max_restarts=self.max_restarts if max_restarts is None else max_restarts,
                restart_window=self.restart_window if restart_window is None else restart_window,
            )
            self.agents[agent_name] = agent
            return agent

        return decorate

    def task(self, fun: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Run an ``async def`` once the app has started: its agents wait for their
        streams and the consumer has joined its group (Faust's ``@app.task``). The function
        takes no argument, or the app. :meth:`run_until_idle` waits for tasks to finish.

        >>> app = App("tasks")
        >>> @app.task
        ... async def hello(app):
        ...     print("started", app.name)
        >>> asyncio.run(app.run_until_idle())
        started tasks
        """
        def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
            self._add_task(Task(fun, name=name))
            return fun

        return decorate(fun) if fun is not None else decorate

    def timer(self, interval: float, *, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run an ``async def`` every ``interval`` seconds while the app runs, the first
        time one interval after start (Faust's ``@app.timer``). Runs keep to a fixed grid
        (start + n × interval): a slow run or a late wake-up shortens the next sleep, and a
        run longer than an interval skips the ticks it missed (see
        :class:`~dataflow.runtime.timers.Timer`).

        >>> app = App("timers")
        >>> @app.timer(interval=60.0)
        ... async def report():
        ...     pass
        >>> app.tasks
        [<Timer report>]
        """
        def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
            self._add_task(Timer(fun, interval, name=name))
            return fun

        return decorate

    def crontab(self, cron_format: str, *, timezone: Any = None, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Run an ``async def`` at the times of a cron spec, in ``timezone`` (a
        ``tzinfo``; default UTC), while the app runs (Faust's ``@app.crontab``).

        >>> app = App("cron")
        >>> @app.crontab("30 18 * * mon-fri")
        ... async def evening_report():
        ...     pass
        >>> app.tasks
        [<Crontab evening_report>]
        """
        def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
            self._add_task(Crontab(fun, cron_format, tz=timezone, name=name))
            return fun

        return decorate

    def _add_task(self, task: Task) -> None:
        if self.started:
            raise RuntimeError(f"{task!r} declared after app {self.name!r} started")
        self.tasks.append(task)

    def _start_background(self) -> None:
        for task in self.tasks:
            if type(task) is Task:
                self._busy_tasks += 1
            future = asyncio.ensure_future(task.run(self))
            future.add_done_callback(partial(self._background_done, type(task) is Task))
            self._background.append(future)

    def _background_done(self, one_shot: bool, future: asyncio.Task[None]) -> None:
        if one_shot:
            self._busy_tasks -= 1

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create topics, start the agents, then the consumer (once every actor waits for
        its first event, so topics its streams derive are subscribed from the start)."""
        if self.started:
            return
        self._reset_runtime()
        self.started = True
        self._stopping = False
        await self.transport.start()
        self._producer = self.transport.producer()
        await self._producer.start()
        if self.client_only:
            return
        await self._ensure_topics(sorted(self._topics))
        await self.tables.start()
        agents = [agent for name, agent in self.agents.items() if self._only_agents is None or name in self._only_agents]
        for agent in agents:
            agent.start()
        waiting = [agent.wait_ready() for agent in agents]
        if waiting:
            try:
                await asyncio.wait_for(asyncio.gather(*waiting), self.startup_timeout)
            except TimeoutError:
                logger.warning("app %s: some actors did not reach their stream in %.1f s", self.name, self.startup_timeout)
        self._resubscribe_needed = False
        await self._start_consumer({})
        try:
            if self._consumer is None:
                await self.tables.open_all()  # no topic to be assigned: this app holds every partition
            self.tables.check()
        except BaseException:
            await self.stop()
            raise
        self._fetch_task = asyncio.ensure_future(self._fetch_loop())
        self._commit_task = asyncio.ensure_future(self._commit_loop())
        if self._only_agents is None:
            self._start_background()

    async def stop(self) -> None:
        """Stop consuming, drain in-flight work, commit, and close."""
        if not self.started or self._stopping:
            return
        self._stopping = True
        try:
            for future in self._background:
                future.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self._fetch_task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._fetch_task), self.shutdown_timeout)
                except TimeoutError:
                    self._fetch_task.cancel()
                    await asyncio.gather(self._fetch_task, return_exceptions=True)
            try:
                await asyncio.wait_for(self._drained(), self.shutdown_timeout)
            except TimeoutError:
                logger.warning("app %s: work still in flight after %.1f s; stopping anyway", self.name, self.shutdown_timeout)
            for agent in self.agents.values():
                await agent.stop()
            if self._null_replies:
                await asyncio.gather(*self._null_replies, return_exceptions=True)
            if self._commit_task is not None:
                self._commit_task.cancel()
                await asyncio.gather(self._commit_task, return_exceptions=True)
            await self._commit()
            if self._consumer is not None:
                await self._consumer.stop()
            await self.tables.close()
            if self._reply_consumer is not None:
                await self._reply_consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
        finally:
            await self.tables.release()
            if self._owns_transport:
                await self.transport.stop()
            self.started = False

    def request_stop(self) -> None:
        """Ask :meth:`main` to stop gracefully (what SIGINT/SIGTERM do)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    def main(self) -> int:
        """Run until SIGINT/SIGTERM, then stop gracefully; returns an exit code."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._stop_requested.set)
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.stop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        return 0

    async def run_until_idle(self, *, stop: bool = True) -> None:
        """Start (if needed), wait until every input is consumed and every agent is
        idle, then stop (unless ``stop=False``). For tests and batch jobs."""
        await self.start()
        while True:
            if await self.is_idle():
                # Give callbacks scheduled by the last acks a turn, then look again.
                for _ in range(3):
                    await asyncio.sleep(0)
                if await self.is_idle():
                    break
            await asyncio.sleep(self.poll_timeout / 5)
        if stop:
            await self.stop()

    async def is_idle(self) -> bool:
        """No message fetched and unprocessed, nothing buffered, no consumer lag, no
        ``@app.task`` still running."""
        if self._resubscribe_needed or self._delivering or self._busy_tasks or self._null_replies:
            return False
        if any(not sub.dead and not sub.idle for sub in self._all_subscriptions()):
            return False
        if any(channel.pending for channel in self._channels):
            return False
        consumer = self._consumer
        if consumer is None:
            return True
        assigned = consumer.assignment()
        ends = await consumer.end_offsets(assigned)
        if consumer is not self._consumer or consumer.assignment() != assigned:
            return False  # a rebalance (or resubscribe) happened meanwhile: look again
        for tp, end in ends.items():
            self.monitor.end[f"{tp.topic}[{tp.partition}]"] = end
            if consumer.position(tp) < end:
                return False
        return not self._resubscribe_needed and not self._delivering

    async def _drained(self) -> None:
        while True:
            busy = [sub for sub in self._all_subscriptions() if not sub.dead and not sub.idle]
            if not busy:
                break
            await asyncio.gather(*(sub.wait_idle() for sub in busy))
        if not self._stopped_agents:
            await self._tracker.wait_empty()

    # -- subscriptions ---------------------------------------------------------------------

    def _subscribe(self, channel: Topic | Channel, name: str, size: int) -> Subscription:
        sub = self._subs.get(name)
        if sub is not None:
            return sub
        if isinstance(channel, Channel):
            sub = channel.subscribe(name, size)
        else:
            sub = Subscription(name, size, self.stream_buffer_maxsize)
            self._topic_subs.setdefault(channel.name, []).append((channel, sub))
            if self._consumer is not None and channel.name not in self._consumer_topics:
                self._resubscribe_needed = True
        self._subs[name] = sub
        return sub

    def _all_subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())

    def _subscriptions_of(self, agent_name: str) -> list[Subscription]:
        return [sub for name, sub in self._subs.items() if name == agent_name or name.startswith(f"{agent_name}->")]

    def _agent_stopped(self, agent: Agent) -> None:
        self._stopped_agents.append(agent)

    def _resolve_channel(self, channel: Any) -> Any:
        if isinstance(channel, str):
            return self.topic(channel)
        if isinstance(channel, (Topic, Channel, Agent)):
            return channel
        raise TypeError(f"cannot send to {channel!r}; hint: pass a topic, channel, agent or topic name")

    # -- topics and producing --------------------------------------------------------------

    async def _ensure_topics(self, names: Sequence[str]) -> None:
        missing = [name for name in names if name not in self._created]
        if not missing:
            return
        existing = await self.transport.describe_topics(missing)
        specs = []
        for name in missing:
            if name in existing:
                continue
            wanted = next((t.partitions for t in self._topics.get(name, []) if t.partitions), None)
            if name == self.dead_letter_topic and wanted is None:
                wanted = 1
            specs.append(TopicSpec(name, wanted or self.topic_partitions))
        if specs:
            await self.transport.create_topics(specs)
        counts = await self.transport.describe_topics(missing)
        for name in missing:
            for topic in self._topics.get(name, []):
                if topic.partitions is not None and topic.partitions != counts[name]:
                    raise TransportError(
                        f"topic {name!r} has {counts[name]} partitions, not {topic.partitions}; "
                        "hint: keep the partition count, or use a new topic name"
                    )
                topic.partitions = counts[name]
            self._created.add(name)

    async def _produce(self, records: list[ProducerRecord]) -> tuple[int, int]:
        return (await self._produce_many(records))[0]

    async def _produce_many(self, records: list[ProducerRecord]) -> list[tuple[int, int]]:
        if self._producer is None:
            raise RuntimeError(f"app {self.name!r} is not started; hint: await app.start() before sending")
        await self._ensure_topics(sorted({record.topic for record in records}))
        if self._open_asks:
            self._answering([record.headers for record in records])
        try:
            if len(records) == 1:
                # Single sends (one per ask, one per reply) go through the producer's
                # accumulator, so many concurrent ones share batches on Kafka instead of
                # queueing one closed batch each behind the partition's in-flight batch.
                results = [await self._producer.send(records[0])]
            else:
                results = await self._producer.send_batch(records)
        except Exception:
            self.monitor.send_errors += 1
            raise
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        for topic, count in counts.items():
            self.monitor.on_sent(topic, count)
        return results

    # -- replies ---------------------------------------------------------------------------

    async def replies(self) -> ReplyConsumer:
        """The app's :class:`~dataflow.runtime.replies.ReplyConsumer`, started on first use
        (it reads the reply topic ``reply_to`` from its end)."""
        if self._producer is None:
            raise RuntimeError(f"app {self.name!r} is not started; hint: await app.start() before asking")
        async with self._reply_lock:
            if self._reply_consumer is None:
                consumer = ReplyConsumer(self, self.reply_to)
                await consumer.start()
                self._reply_consumer = consumer
        return self._reply_consumer

    async def _reply(self, event: Event, value: Any = None, *, error: str | None = None, agent: str = "") -> None:
        """Answer ``event`` if it asked for a reply: with ``value``, or with ``error``."""
        if not event.headers or reply_address(event.headers) is None:
            return
        key = event.message.key if event.message is not None else None
        if error is None:
            try:
                data = encode_reply_value(value)
            except Exception as exc:  # noqa: BLE001 - any unencodable result
                error = f"agent {agent!r} returned a value that cannot be sent as a reply: {type(exc).__name__}: {exc}"
            else:
                record = reply_to_record(event.headers, value=data, key=key)
        if error is not None:
            record = reply_to_record(event.headers, error=error, key=key)
        assert record is not None
        await self._send_reply(record)

    async def _send_reply(self, record: ProducerRecord) -> None:
        try:
            await self._produce_many([record])
        except Exception as exc:  # noqa: BLE001 - the asker times out; the agent goes on
            logger.warning("app %s: could not send the reply to %s: %s", self.name, record.topic, exc)

    def _answer_when_done(self, headers: tuple[tuple[str, bytes], ...], key: Any, refs: int,
                          then: Callable[[], None] | None = None) -> Callable[[], None]:
        """The ack callback of a request that wants a reply whatever happens: once all
        ``refs`` streams that got it have acked it, it is answered ``null`` unless processing
        it sent a reply (a result or an error) or sent the request on (``through``,
        ``group_by``, ``forward``), whose next reader then answers."""
        ask = _OpenAsk(headers, key, refs)
        self._open_asks[id(headers)] = ask

        def on_ack() -> None:
            if then is not None:
                then()
            ask.refs -= 1
            if ask.refs > 0:
                return
            self._open_asks.pop(id(headers), None)
            if not ask.answered:
                record = reply_to_record(headers, value=b"null", key=key if isinstance(key, bytes) else None)
                if record is not None:
                    future = asyncio.ensure_future(self._send_reply(record))
                    self._null_replies.add(future)
                    future.add_done_callback(self._null_replies.discard)

        return on_ack

    def _answering(self, sent: Iterable[tuple[tuple[str, bytes], ...]]) -> None:
        """Records (their headers) sent while processing the current event: a reply to it,
        or its request going on, means it needs no ``null`` reply."""
        event = current_event()
        ask = self._open_asks.get(id(event.headers)) if event is not None else None
        if ask is None or ask.answered:
            return
        for headers in sent:
            if (CORRELATION_ID, ask.correlation_id) in headers:
                ask.answered = True
                return

    # -- the conductor ---------------------------------------------------------------------

    async def _start_consumer(self, positions: dict[TP, int]) -> None:
        topics = sorted(self._topic_subs)
        if not topics:
            self._consumer = None
            return
        await self._ensure_topics(topics)

        async def on_assigned(tps: set[TP]) -> None:
            for tp in tps:
                if tp in positions:
                    consumer.seek(tp, positions[tp])
            await self.tables.assigned(tps, consumer)  # opened and recovered before any is read
            self._ready |= tps

        async def on_revoked(tps: set[TP]) -> None:
            if self._resubscribing:
                # Not a real revocation: the next consumer resumes at this one's positions,
                # so what is queued and in flight stays as it is.
                self._ready -= tps
                await self._commit(tps)
                await self.tables.revoked(tps, consumer)
            else:
                await self._give_back(tps, consumer)

        consumer = self.transport.consumer(self.name, topics, on_assigned=on_assigned, on_revoked=on_revoked)
        self._consumer = consumer
        self._consumer_topics = set(topics)
        await consumer.start()

    async def _resubscribe(self) -> None:
        """A stream subscribed to a new topic: rejoin with it, resuming every partition
        where this app had read up to (in-flight bookkeeping is kept)."""
        self._resubscribe_needed = False
        old = self._consumer
        positions: dict[TP, int] = {}
        if old is not None:
            positions = {tp: old.position(tp) for tp in old.assignment()}
            await self._commit()
            self._resubscribing = True
            try:
                await old.stop()
            finally:
                self._resubscribing = False
        await self._start_consumer(positions)

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            if self._resubscribe_needed:
                await self._resubscribe()
            consumer = self._consumer
            if consumer is None:
                await asyncio.sleep(self.poll_timeout)
                continue
            batch = await consumer.getmany(max_records=self.max_poll_records, timeout=self.poll_timeout)
            if not batch:
                continue
            self._delivering = True
            try:
                for tp in sorted(batch):
                    if tp in self._ready:
                        await self._deliver(tp, batch[tp])
                    elif tp in consumer.assignment():  # still restoring its tables: read it again
                        consumer.seek(tp, batch[tp][0].offset)
                    # else revoked meanwhile: its next owner reads it from the last commit
            finally:
                self._delivering = False

    async def _give_back(self, tps: set[TP], consumer: Consumer) -> None:
        """Revoked partitions, as Faust does it: stop delivering them, drop their queued
        events, let the actors finish the ones they hold (up to ``revoke_wait`` seconds),
        commit, then close their tables. What was dropped or not finished is read again
        from the commit by the partitions' next owner."""
        self._ready -= tps
        dropped: set[tuple[TP, int]] = set()
        for subs in self._topic_subs.values():
            for _, sub in subs:
                for event in sub.drop(lambda event: event.message is not None and event.message.tp in tps):
                    dropped.add((event.message.tp, event.message.offset))  # type: ignore[union-attr]
        deadline = asyncio.get_running_loop().time() + self.revoke_wait
        # Wait for what actors hold (dropped events are never acked); when stopping, the
        # actors are gone already: stop() gave them shutdown_timeout.
        while (not self._stopping and self._tracker.in_flight_of(tps) - dropped
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.01)
        await self._commit(tps)
        self._tracker.forget(tps)
        for tp in tps:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
        await self.tables.revoked(tps, consumer)

    async def _deliver(self, tp: TP, messages: list[Message]) -> None:
        subs = self._topic_subs.get(tp.topic, [])
        self.monitor.on_received(tp.topic, len(messages))
        self.monitor.read[f"{tp.topic}[{tp.partition}]"] = messages[-1].offset + 1
        dead: list[ProducerRecord] = []
        plans: list[tuple[Message, list[tuple[Subscription, Any, Any]]]] = []
        for message in messages:
            targets: list[tuple[Subscription, Any, Any]] = []
            decoded: dict[int, tuple[Any, Any] | DecodeError] = {}
            error: DecodeError | None = None
            for topic, sub in subs:
                if sub.dead:
                    targets.append((sub, None, None))  # held unacked, see Subscription.put
                    continue
                result = decoded.get(id(topic))
                if result is None:
                    try:
                        result = (topic.decode_key(message.key), topic.decode_value(message.value))
                    except DecodeError as exc:
                        result = exc
                    decoded[id(topic)] = result
                if isinstance(result, DecodeError):
                    error = error or result
                    continue
                targets.append((sub, result[0], result[1]))
            if error is not None:
                dead.append(self._dead_letter(message, error.stage, error.reason))
                if message.headers:
                    # An asker waits for this one: tell it now rather than let it time out.
                    reply = reply_to_record(message.headers, key=message.key,
                                            error=f"{tp.topic}: value rejected ({error.stage}): {error.reason}")
                    if reply is not None:
                        dead.append(reply)
            plans.append((message, targets))
        if dead:
            # In the log before the bad messages are acked, so a commit never loses them.
            await self._produce_many(dead)
        for message, targets in plans:
            self._tracker.track(message, refs=len(targets))
            on_ack = partial(self._on_ack, message.tp, message.offset, self._epochs.get(message.tp, 0))
            if targets and message.headers and wants_reply_always(message.headers):
                on_ack = self._answer_when_done(message.headers, message.key, len(targets), on_ack)
            for sub, key, value in targets:
                await sub.put(Event(self, key, value, message.headers, message, on_ack=on_ack))

    def _dead_letter(self, message: Message, stage: str, reason: str) -> ProducerRecord:
        headers = (
            *message.headers,
            ("dataflow.stage", stage.encode()),
            ("dataflow.error", reason.encode()),
            ("dataflow.source", f"{message.topic}[{message.partition}]@{message.offset}".encode()),
        )
        self.monitor.on_dead_letter(stage)
        return ProducerRecord(self.dead_letter_topic, message.key, message.value, 0, message.timestamp, headers)

    def _on_ack(self, tp: TP, offset: int, epoch: int = 0) -> None:
        if self._epochs.get(tp, 0) != epoch:
            return  # delivered before the partition was revoked: it will be read again
        self._tracker.ack(tp, offset)
        self._acks_since_commit += 1
        if self._acks_since_commit >= self.commit_every:
            self._commit_wakeup.set()

    # -- commits ---------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._commit_wakeup.wait(), self.commit_interval)
            except TimeoutError:
                pass
            self._commit_wakeup.clear()
            await self._commit()

    async def commit(self) -> dict[TP, int]:
        """Commit now what is safe to commit (Faust's ``app.commit``); returns it."""
        return await self._commit()

    async def _commit(self, only: Iterable[TP] | None = None) -> dict[TP, int]:
        """Commit what the tracker says is safe, after the tables' changelog (see
        :meth:`TableManager.commit <dataflow.runtime.user_tables.TableManager.commit>`);
        returns the offsets committed."""
        async with self._commit_lock:
            consumer = self._consumer
            offsets: dict[TP, int] = {}
            if consumer is not None:
                self._acks_since_commit = 0
                owned = consumer.assignment()
                wanted = set(only) if only is not None else None
                offsets = {
                    tp: offset for tp, offset in self._tracker.committable().items()
                    if tp in owned and (wanted is None or tp in wanted)
                }
            if not offsets and not self.tables.dirty():
                return {}
            started = time.perf_counter()
            try:
                await self.tables.commit(consumer, offsets)
            except TransportError as exc:
                logger.warning("app %s: commit failed: %s", self.name, exc)
                return {}
            if not offsets:
                return {}
            self._tracker.mark_committed(offsets)
            self.monitor.on_commit(
                {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(offsets.items())},
                time.perf_counter() - started,
            )
            return offsets


class _OpenAsk:
    """A request that wants a reply whatever happens, while streams process it."""

    __slots__ = ("headers", "key", "refs", "answered", "correlation_id")

    def __init__(self, headers: tuple[tuple[str, bytes], ...], key: Any, refs: int) -> None:
        self.headers = headers
        self.key = key
        self.refs = refs
        self.answered = False
        self.correlation_id = next((value for name, value in headers if name == CORRELATION_ID), b"")
