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
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from dataflow.runtime.channels import Channel, Subscription, Topic
from dataflow.runtime.events import current_event
from dataflow.runtime.streams import Stream
from dataflow.runtime.supervisor import Supervisor
from dataflow.transport.base import TP

if TYPE_CHECKING:
    from dataflow.runtime.app import App

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
    ) -> Any:
        """Send a value to the agent's topic or channel."""
        return await self.channel.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)

    async def cast(self, value: Any = None, *, key: Any = None, partition: int | None = None, headers: Any = None) -> None:
        """Send without expecting a reply (Faust's ``cast``)."""
        await self.send(key=key, value=value, partition=partition, headers=headers)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        if self.isolated_partitions:
            assert isinstance(self.channel, Topic) and self.channel.partitions
            return self.channel.partitions
        return self.concurrency

    def start(self) -> None:
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
