"""Unit-testing helpers: run one agent in-process, put values in, read results out.

:meth:`Agent.test_context() <dataflow.runtime.agents.Agent.test_context>` (Faust's
``agent.test_context()``) starts the agent's app with *only that agent*, on a private
``memory://`` log in this process -- whatever broker the app is configured with -- and
gives an :class:`AgentTestContext`:

>>> from dataflow.runtime.app import App
>>> app = App("shop", broker="local:///var/lib/shop")   # never opened by the test
>>> totals = app.topic("totals")
>>> @app.agent(sink=[totals])
... async def add_tax(stream):
...     async for amount in stream:
...         if amount < 0:
...             raise ValueError(f"negative amount {amount}")
...         yield round(amount * 1.25, 2)
>>> async def test_add_tax():
...     async with add_tax.test_context() as agent:
...         event = await agent.put(100, key="order-1")
...         assert agent.results_of(event) == [125.0]
...         assert await add_tax.ask(8) == 10.0          # RPC works too
...         try:
...             await agent.put(-1)
...         except ValueError as exc:
...             print("raised:", exc)
...         return agent.results, await agent.sent("totals")
>>> asyncio.run(test_add_tax())
raised: negative amount -1
([125.0, 10.0], [('order-1', 125.0), (None, 10.0)])

:class:`FakeClock` drives timers without waiting (see :mod:`dataflow.runtime.timers`).
"""
from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from dataflow.runtime.channels import Topic
from dataflow.runtime.events import Event

if TYPE_CHECKING:
    from dataflow.runtime.agents import Agent

__all__ = ["AgentTestContext", "FakeClock"]


class AgentTestContext:
    """One agent running alone on a private in-memory log (``async with``).

    * ``await put(value, key=None, ...)`` sends a value to the agent, waits until it and
      everything it caused (sinks, repartitions, replies) is processed, and returns the
      :class:`~dataflow.runtime.events.Event` the agent received. If the agent raised on
      it, ``put`` raises that exception (the actor is restarted, as in production).
    * ``results`` -- every value the agent yielded, in order; ``results_of(event)`` --
      those yielded while it processed ``event``; ``errors`` -- what it raised.
    * ``await sent(topic)`` -- the ``(key, value)`` pairs written to a topic so far.
    * The agent is really running: ``await agent.ask(...)``, ``join``, ``map`` work.

    Unlike Faust, results are not keyed by offset: offsets repeat across partitions.
    The app's other agents and its timers do not run; the app's broker is restored on exit.
    """

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.app = agent.app
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self._by_event: dict[int, list[Any]] = {}
        self._crashes: dict[int, BaseException] = {}
        self._delivered: list[Event] = []
        self._saved: tuple[Any, ...] | None = None

    async def __aenter__(self) -> AgentTestContext:
        app = self.app
        if app.started:
            raise RuntimeError(f"app {app.name!r} is running; hint: stop it before opening a test context")
        self._saved = (app.transport, app._owns_transport, app._only_agents)
        app.set_broker("memory://")
        app._only_agents = {self.agent.name}
        self.agent._observers.append(self)
        try:
            await app.start()
        except BaseException:
            self._restore()
            raise
        assert self.agent.subscription is not None
        self.agent.subscription.observer = self._delivered.append
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.app.stop()
        finally:
            self._restore()

    def _restore(self) -> None:
        if self.agent.subscription is not None:
            self.agent.subscription.observer = None
        if self in self.agent._observers:
            self.agent._observers.remove(self)
        if self._saved is not None:
            self.app.transport, self.app._owns_transport, self.app._only_agents = self._saved
            self._saved = None

    # -- observing the agent -------------------------------------------------------------

    def _on_result(self, event: Event | None, value: Any) -> None:
        self.results.append(value)
        if event is not None:
            self._by_event.setdefault(id(event), []).append(value)

    def _on_crash(self, event: Event | None, exc: BaseException) -> None:
        self.errors.append(exc)
        if event is not None:
            self._crashes[id(event)] = exc

    # -- the API -------------------------------------------------------------------------

    async def put(
        self,
        value: Any = None,
        key: Any = None,
        *,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
    ) -> Event:
        """Send ``value`` to the agent and wait until it is processed; the event it got."""
        seen = len(self._delivered)
        channel = self.agent.channel
        where = await channel.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)
        await self.app.run_until_idle(stop=False)
        event = self._find(seen, where if isinstance(channel, Topic) else None)
        exc = self._crashes.pop(id(event), None)
        if exc is not None:
            raise exc
        return event

    def _find(self, seen: int, where: tuple[int, int] | None) -> Event:
        for event in self._delivered[seen:]:
            message = event.message
            if where is None or (message is not None and (message.partition, message.offset) == where):
                return event
        raise RuntimeError(f"agent {self.agent.name!r} never received the value; hint: has it stopped? "
                           f"errors so far: {self.errors!r}")

    def results_of(self, event: Event) -> list[Any]:
        """The values the agent yielded while processing ``event``."""
        return list(self._by_event.get(id(event), ()))

    async def sent(self, topic: str) -> list[tuple[Any, Any]]:
        """The ``(key, value)`` pairs in ``topic`` so far, decoded with the topic's codecs."""
        described = self.app.topic(topic)
        transport = self.app.transport
        if not await transport.describe_topics([topic]):
            return []
        out: list[tuple[Any, Any]] = []
        async with transport.consumer(f"test-context-{uuid.uuid4().hex}", [topic]) as consumer:
            ends = await consumer.end_offsets(consumer.assignment())
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                batch = await consumer.getmany(max_records=1000, timeout=0)
                for tp in sorted(batch):
                    out.extend((described.decode_key(m.key), described.decode_value(m.value)) for m in batch[tp])
        return out


class FakeClock:
    """A clock and a ``sleep`` for timers that move time forward instead of waiting.

    ``sleep(seconds)`` records the request, advances the clock by it plus ``lateness``
    (a loop that wakes up late), and yields to the event loop once. ``advance(seconds)``
    moves time, e.g. from inside a timer function to play a slow run.

    >>> clock = FakeClock(start=100.0, lateness=0.01)
    >>> asyncio.run(clock.sleep(2.0)); clock(), clock.sleeps
    (102.01, [2.0])
    """

    def __init__(self, start: float = 0.0, *, lateness: float = 0.0) -> None:
        self.now = start
        self.lateness = lateness
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds + self.lateness
        await asyncio.sleep(0)
