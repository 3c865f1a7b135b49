"""Agents and actors (Faust's ``@app.agent``).

An :class:`Agent` wraps a user function ``async def fun(stream)`` that iterates a
:class:`~dataflow.runtime.streams.Stream`. It runs ``concurrency`` actors, each iterating
its own stream over its share of the agent's subscription (partition ``p`` goes to actor
``p % concurrency``, so per-partition order is kept); with ``isolated_partitions=True``
there is one actor per partition of the source topic. A function that ``yield``s values
is an async generator: each value is delivered to the agent's sinks (topics, channels,
other agents, callables) before its event is acked.

Each actor runs under a :class:`~dataflow.runtime.supervisor.Supervisor`: a crash is
logged, passed to ``on_error(agent, exc)``, and the actor is restarted with a fresh
stream, at most ``max_restarts`` times in ``restart_window`` seconds; then the agent is
stopped. As in Faust, the event whose step raised is acked (it is not redelivered).
A stopped agent's deliveries are never acked, so commits never pass what it missed.

Agents are also services (Faust's RPC): ``await agent.ask(value)`` sends ``value`` with
reply headers and returns what the agent yields for it; ``map``/``kvmap`` stream results
as they come, ``join``/``kvjoin`` return them in input order. If the agent raises while
processing an asked value, the asker gets an :class:`~dataflow.runtime.replies.AgentError`
naming the agent and the exception. See :mod:`dataflow.runtime.replies`.

>>> from dataflow.runtime.app import App
>>> app = App("rpc")
>>> @app.agent(concurrency=2)
... async def double(stream):
...     async for value in stream:
...         yield value * 2
>>> async def main():
...     await app.start()
...     try:
...         return await double.ask(21), await double.join([1, 2, 3])
...     finally:
...         await app.stop()
>>> asyncio.run(main())
(42, [2, 4, 6])
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from dataflow.runtime.channels import Channel, Subscription, Topic
from dataflow.runtime.events import Event, current_event, normalize_headers
from dataflow.runtime.replies import BarrierState, ReplyConsumer, ReplyPromise, request_headers
from dataflow.runtime.streams import Stream
from dataflow.runtime.supervisor import Supervisor
from dataflow.transport.base import TP, ProducerRecord

if TYPE_CHECKING:
    from dataflow.runtime.app import App
    from dataflow.runtime.testing import AgentTestContext

__all__ = ["Actor", "Agent"]

logger = logging.getLogger(__name__)

AgentFun = Callable[[Stream], Any]
OnError = Callable[["Agent", BaseException], Any]


class Actor:
    """One running instance of an agent's function over one stream."""

    def __init__(self, agent: Agent, index: int) -> None:
        self.agent = agent
        self.index = index
        self.ready = asyncio.Event()  # set once the actor first waits for an event
        self.streams: list[Stream] = []
        self.task: asyncio.Task[None] | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._crash: BaseException | None = None
        self.cancelled = False

    @property
    def active_partitions(self) -> set[TP] | None:
        """For isolated partitions, the one partition this actor owns."""
        if self.agent.isolated_partitions and isinstance(self.agent.channel, Topic):
            return {TP(self.agent.channel.name, self.index)}
        return None

    def add_pump(self, coro: Awaitable[None], derived: Stream) -> None:
        self.streams.append(derived)
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._pump_done)
        self._pumps.append(task)

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crash is None and self.task is not None:
            self._crash = exc
            self.task.cancel()

    async def run(self) -> None:
        stream = self.agent._stream_for(self)
        result: Any = None
        try:
            result = self.agent.fun(stream)
            if inspect.isasyncgen(result):
                async for value in result:
                    await self.agent._delegate(value)
            elif inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            if self._crash is not None:
                raise self._crash from None
            self.cancelled = True
            raise
        except Exception as exc:
            await self.agent._crashed(current_event(), exc)
            raise
        finally:
            if inspect.isasyncgen(result):
                try:
                    await result.aclose()
                except (RuntimeError, StopAsyncIteration):
                    pass
            for pump in self._pumps:
                pump.cancel()
            if self._pumps:
                await asyncio.gather(*self._pumps, return_exceptions=True)
            for s in self.streams:
                await s.close(cancelled=self.cancelled)
            self.ready.set()


class Agent:
    """A user agent: ``fun`` over a topic or channel, with sinks and a supervisor."""

    def __init__(
        self,
        fun: AgentFun,
        *,
        app: App,
        channel: Topic | Channel,
        name: str,
        concurrency: int = 1,
        sink: Iterable[Any] | None = None,
        isolated_partitions: bool = False,
        on_error: OnError | None = None,
        max_restarts: int = 10,
        restart_window: float = 60.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"agent {name!r}: concurrency must be >= 1, got {concurrency}")
        if isolated_partitions and not isinstance(channel, Topic):
            raise ValueError(f"agent {name!r}: isolated_partitions needs a topic, not a channel")
        self.fun = fun
        self.app = app
        self.channel = channel
        self.name = name
        self.concurrency = concurrency
        self.sinks: list[Any] = list(sink or ())
        self.isolated_partitions = isolated_partitions
        self.on_error = on_error
        self.supervisor = Supervisor(max_restarts, restart_window)
        self.subscription: Subscription | None = None
        self.actors: list[Actor] = []
        self.crashes = 0
        self.stopped = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Test contexts watching this agent's results and crashes.
        self._observers: list[AgentTestContext] = []
        self.__doc__ = getattr(fun, "__doc__", None)

    def __repr__(self) -> str:
        return f"<Agent {self.name} of {self.channel!r}>"

    def add_sink(self, sink: Any) -> None:
        if sink not in self.sinks:
            self.sinks.append(sink)

    # -- sending to the agent ------------------------------------------------------------

    async def send(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
    ) -> Any:
        """Send a value to the agent's topic or channel; with ``reply_to`` (a topic name,
        topic or topic-backed agent) and ``correlation_id``, the agent's result for it is
        sent there (nobody waits for it: see :meth:`ask_nowait` for that)."""
        if reply_to is not None:
            if not correlation_id:
                raise ValueError("send(reply_to=...) needs a correlation_id")
            headers = normalize_headers(headers) + request_headers(_topic_name(reply_to), correlation_id)
        return await self.channel.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)

    async def cast(
        self,
        value: Any = None,
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
    ) -> None:
        """Send without expecting a reply (Faust's ``cast``)."""
        await self.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)

    async def cast_many(self, items: Iterable[tuple[Any, Any]]) -> None:
        """Send many ``(key, value)`` pairs without expecting replies: to a topic, every
        value is encoded first (one that cannot be raises before anything is sent), then
        they go in one produce call per chunk of 500."""
        channel = self.channel
        if not isinstance(channel, Topic):
            for key, value in items:
                await channel.send(key=key, value=value)
            return
        records = [ProducerRecord(channel.name, channel.encode_key(key), channel.encode_value(value))
                   for key, value in items]
        for start in range(0, len(records), _SEND_CHUNK):
            await self.app._produce_many(records[start:start + _SEND_CHUNK])

    # -- RPC -----------------------------------------------------------------------------

    async def ask(
        self,
        value: Any = None,
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send ``value`` and return the agent's result for it: the first value the agent
        yields while processing it. Raises :class:`~dataflow.runtime.replies.AgentError`
        if the agent raised, and :class:`~dataflow.runtime.replies.AskTimeout` after
        ``timeout`` seconds (default: the app's ``reply_expires``) without a reply.
        ``reply_to`` defaults to the app's reply topic; ``correlation_id`` to a new UUID."""
        promise = await self.ask_nowait(
            value, key=key, partition=partition, timestamp=timestamp, headers=headers,
            reply_to=reply_to, correlation_id=correlation_id, timeout=timeout,
        )
        return await promise

    async def ask_nowait(
        self,
        value: Any = None,
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> ReplyPromise:
        """Like :meth:`ask`, but return once the request is sent, with a
        :class:`~dataflow.runtime.replies.ReplyPromise` to ``await`` for the result."""
        replies, topic = await self._prepare_ask(reply_to)
        promise = ReplyPromise(topic, correlation_id or "")
        replies.add(promise.correlation_id, promise, timeout=self._timeout(timeout), label=f"agent {self.name!r}")
        try:
            await self.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers,
                            reply_to=topic, correlation_id=promise.correlation_id)
        except BaseException:
            replies.discard([promise.correlation_id])
            raise
        return promise

    async def map(
        self,
        values: Iterable[Any] | AsyncIterable[Any],
        key: Any = None,
        *,
        reply_to: Any = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Ask for each of ``values`` (all with ``key``); yield the results as they
        arrive, which need not be the input order (see :meth:`join`)."""
        async for value in self.kvmap(_with_key(key, values), reply_to=reply_to, timeout=timeout):
            yield value

    async def kvmap(
        self,
        items: Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]],
        *,
        reply_to: Any = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """:meth:`map` over ``(key, value)`` pairs."""
        replies, topic = await self._prepare_ask(reply_to)
        barrier = BarrierState(topic)
        try:
            async for _ in self._barrier_send(barrier, replies, items, topic, timeout):
                try:
                    _, value = barrier.get_nowait()  # yield what has come while sending
                except asyncio.QueueEmpty:
                    continue
                yield value
            barrier.finalize()
            async for _, value in barrier.iterate():
                yield value
        finally:
            replies.discard(barrier.correlation_ids)

    async def join(
        self,
        values: Iterable[Any] | AsyncIterable[Any],
        key: Any = None,
        *,
        reply_to: Any = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
        allow_empty: bool = False,
    ) -> list[Any]:
        """Ask for each of ``values`` (all with ``key``); return the results in input
        order once all have come. The first failure raises; with ``return_exceptions``,
        a failed value's place holds its error instead (an
        :class:`~dataflow.runtime.replies.AgentError` or
        :class:`~dataflow.runtime.replies.AskTimeout`), as :func:`asyncio.gather` does.
        With ``allow_empty``, a value the agent yields nothing for gives ``None`` as soon
        as the agent has finished with it, rather than waiting for a reply until the timeout.
        """
        return await self.kvjoin(_with_key(key, values), reply_to=reply_to, timeout=timeout,
                                 return_exceptions=return_exceptions, allow_empty=allow_empty)

    async def kvjoin(
        self,
        items: Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]],
        *,
        reply_to: Any = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
        allow_empty: bool = False,
    ) -> list[Any]:
        """:meth:`join` over ``(key, value)`` pairs."""
        replies, topic = await self._prepare_ask(reply_to)
        barrier = BarrierState(topic)
        try:
            position: dict[str, int] = {}
            async for correlation_id in self._barrier_send(barrier, replies, items, topic, timeout, allow_empty):
                position[correlation_id] = len(position)
            barrier.finalize()
            results: list[Any] = [None] * barrier.total
            async for correlation_id, value in barrier.iterate(return_exceptions=return_exceptions):
                results[position[correlation_id]] = value
            return results
        finally:
            replies.discard(barrier.correlation_ids)

    async def _barrier_send(
        self,
        barrier: BarrierState,
        replies: ReplyConsumer,
        items: Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]],
        reply_to: str,
        timeout: float | None,
        always: bool = False,
    ) -> AsyncIterator[str]:
        expires = self._timeout(timeout)
        label = f"agent {self.name!r}"
        async for chunk in _chunks(items, _SEND_CHUNK):
            promises = [ReplyPromise(reply_to) for _ in chunk]
            for promise in promises:
                barrier.add(promise)
                replies.add(promise.correlation_id, barrier, timeout=expires, label=label)
            channel = self.channel
            if isinstance(channel, Topic):
                # One produce call per chunk: a join of thousands is not thousands of round trips.
                await self.app._produce_many([
                    ProducerRecord(channel.name, channel.encode_key(key), channel.encode_value(value),
                                   headers=request_headers(reply_to, promise.correlation_id, always=always))
                    for (key, value), promise in zip(chunk, promises)
                ])
            else:
                for (key, value), promise in zip(chunk, promises):
                    await channel.send(key=key, value=value,
                                       headers=request_headers(reply_to, promise.correlation_id, always=always))
            for promise in promises:
                yield promise.correlation_id

    def _timeout(self, timeout: float | None) -> float:
        return self.app.reply_expires if timeout is None else timeout

    async def _prepare_ask(self, reply_to: Any) -> tuple[ReplyConsumer, str]:
        if inspect.iscoroutinefunction(self.fun):
            raise TypeError(
                f"agent {self.name!r} cannot reply: its function does not yield results; "
                "hint: `yield` the result inside `async for`, or use cast() to send without a reply"
            )
        replies = await self.app.replies()
        topic = replies.topic if reply_to is None else _topic_name(reply_to)
        await replies.subscribe(topic)
        return replies, topic

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        if self.isolated_partitions:
            assert isinstance(self.channel, Topic) and self.channel.partitions
            return self.channel.partitions
        return self.concurrency

    def start(self) -> None:
        self.stopped = False
        self.subscription = self.app._subscribe(self.channel, self.name, self.size)
        self.actors = [Actor(self, i) for i in range(self.size)]
        self._tasks = [asyncio.ensure_future(self._supervise(i)) for i in range(self.size)]

    def _stream_for(self, actor: Actor) -> Stream:
        assert self.subscription is not None
        stream = Stream(self.app, self.channel, self.subscription, index=actor.index, actor=actor)
        actor.streams.append(stream)
        return stream

    async def wait_ready(self) -> None:
        """Return once every actor waits for its first event (or has ended)."""
        while True:
            actors = list(self.actors)
            await asyncio.gather(*(actor.ready.wait() for actor in actors))
            if actors == self.actors:
                return

    async def _supervise(self, index: int) -> None:
        while True:
            actor = self.actors[index] if not self.actors[index].task else Actor(self, index)
            self.actors[index] = actor
            actor.task = asyncio.ensure_future(actor.run())
            try:
                await actor.task
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the supervisor's whole purpose
                self.crashes += 1
                logger.error("agent %s actor %d crashed: %s: %s", self.name, index, type(exc).__name__, exc,
                             exc_info=exc)
                await self._call_on_error(exc)
                if not self.supervisor.allow_restart():
                    logger.error(
                        "agent %s stopped: more than %d restarts in %.0f s; its unprocessed messages "
                        "stay uncommitted", self.name, self.supervisor.max_restarts, self.supervisor.over,
                    )
                    self._give_up()
                    return
                logger.warning("agent %s actor %d restarting", self.name, index)

    async def _crashed(self, event: Event | None, exc: BaseException) -> None:
        """An actor raised while processing ``event``: answer its asker with the error."""
        if event is not None and event.headers:
            await self.app._reply(event, error=f"agent {self.name!r} failed: {type(exc).__name__}: {exc}",
                                  agent=self.name)
        for observer in self._observers:
            observer._on_crash(event, exc)

    async def _call_on_error(self, exc: BaseException) -> None:
        if self.on_error is None:
            return
        try:
            result = self.on_error(self, exc)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001
            logger.exception("on_error of agent %s failed", self.name)

    def _give_up(self) -> None:
        self.stopped = True
        for sub in self.app._subscriptions_of(self.name):
            sub.kill()
        for actor in self.actors:
            actor.ready.set()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self.app._agent_stopped(self)

    async def stop(self) -> None:
        """Cancel the actors (the app drains their work first on a clean stop)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- sinks ---------------------------------------------------------------------------

    async def _delegate(self, value: Any) -> None:
        """A value the agent yielded: to every sink, then (if the event asked) to the
        asker, so an answered ask means the sinks have it."""
        event = current_event()
        key = event.key if event is not None else None
        for sink in self.sinks:
            if isinstance(sink, (Agent, Topic, Channel)):
                await sink.send(key=key, value=value)
            elif isinstance(sink, str):
                await self.app.topic(sink).send(key=key, value=value)
            else:
                result = sink(value)
                if inspect.isawaitable(result):
                    await result
        if event is not None and event.headers:
            await self.app._reply(event, value, agent=self.name)
        for observer in self._observers:
            observer._on_result(event, value)

    # -- testing -------------------------------------------------------------------------

    def test_context(self) -> AgentTestContext:
        """Run this agent alone, in-process, on a private ``memory://`` log, to test it:
        ``async with agent.test_context() as ctx: await ctx.put(value)``. See
        :class:`~dataflow.runtime.testing.AgentTestContext`."""
        from dataflow.runtime.testing import AgentTestContext

        return AgentTestContext(self)


def _topic_name(target: Any) -> str:
    """The topic a reply goes to: a name, a topic, or an agent reading a topic."""
    channel = target.channel if isinstance(target, Agent) else target
    if isinstance(channel, str):
        return channel
    if isinstance(channel, Topic):
        return channel.name
    raise TypeError(f"cannot send replies to {target!r}; hint: reply_to takes a topic name, a topic, "
                    "or an agent that reads a topic")


_SEND_CHUNK = 500


async def _chunks(items: Iterable[Any] | AsyncIterable[Any], size: int) -> AsyncIterator[list[Any]]:
    """Lists of up to ``size`` items of a plain iterable; one item at a time of an async
    one (its items may come slowly, and each should be sent as soon as it comes)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield [item]
        return
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _with_key(key: Any, values: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[tuple[Any, Any]]:
    async for value in _aiter(values):
        yield key, value
