"""Streams: async iterators over the events an actor receives (Faust's ``Stream``).

Each iteration step takes one event from the actor's queue, makes it the
:func:`~dataflow.runtime.events.current_event`, runs the stream's processors on its value
and hands the value to the agent; when the agent asks for the next value (or leaves the
loop) the step's ``finally`` acks the event. So an offset becomes committable only once
the code that received it has finished with it.

Derived streams (``through``, ``group_by``) read another topic; a background *pump*
owned by the actor iterates this stream and sends each value there, with the event's
headers (so an agent that repartitions still answers asks), acking the source event
once the send is in the log.
"""
from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dataflow.planner.naming import repartition_topic
from dataflow.runtime.channels import Channel, Subscription, Topic
from dataflow.runtime.events import Event, _set_current, current_event

if TYPE_CHECKING:
    from dataflow.runtime.agents import Actor
    from dataflow.runtime.app import App

__all__ = ["Skip", "Stream", "current_event"]

Processor = Callable[[Any], Any]


class Skip(Exception):
    """Raise from a processor to drop the current value (the event is acked)."""


class Stream:
    """Values of one actor's share of a subscription."""

    def __init__(
        self,
        app: App,
        channel: Topic | Channel,
        subscription: Subscription,
        *,
        index: int = 0,
        actor: Actor | None = None,
        processors: list[Processor] | None = None,
        enable_acks: bool = True,
        root: Stream | None = None,
    ) -> None:
        self.app = app
        self.channel = channel
        self.subscription = subscription
        self.index = index
        self.actor = actor
        self.processors: list[Processor] = processors if processors is not None else []
        self.enable_acks = enable_acks
        self._root = root or self
        self._iterators: weakref.WeakSet[Any] = weakref.WeakSet()
        self._cancelled = False

    @property
    def queue(self) -> asyncio.Queue[Event]:
        return self.subscription.queues[self.index]

    @property
    def agent_name(self) -> str:
        return self.actor.agent.name if self.actor is not None else self.subscription.name

    # -- iteration -----------------------------------------------------------------------

    async def _next_event(self) -> Event:
        if self.actor is not None:
            self.actor.ready.set()
        return await self.queue.get()

    async def _process(self, event: Event) -> Any:
        value = event.value
        for processor in self.processors:
            value = processor(value)
            if inspect.isawaitable(value):
                value = await value
        return value

    def _ack(self, event: Event) -> None:
        if self.enable_acks and not self._root._cancelled:
            event.ack()

    async def _steps(self, kind: str) -> AsyncIterator[Any]:
        count = 0
        while True:
            event = await self._next_event()
            try:
                _set_current(event)
                try:
                    value = await self._process(event)
                except Skip:
                    continue
                self.app.monitor.on_events(self.agent_name, 1)
                if kind == "value":
                    yield value
                elif kind == "item":
                    yield event.key, value
                elif kind == "event":
                    yield event
                else:
                    yield count, value
                    count += 1
            finally:
                self._ack(event)

    def _track(self, iterator: Any) -> Any:
        self._iterators.add(iterator)
        return iterator

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._track(self._steps("value"))

    def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """``(key, value)`` pairs."""
        return self._track(self._steps("item"))

    def events(self) -> AsyncIterator[Event]:
        """The :class:`Event` objects themselves (processors are not applied)."""
        return self._track(self._events_raw())

    async def _events_raw(self) -> AsyncIterator[Event]:
        while True:
            event = await self._next_event()
            try:
                _set_current(event)
                self.app.monitor.on_events(self.agent_name, 1)
                yield event
            finally:
                self._ack(event)

    def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, Any]]:
        """``(n, value)`` pairs counting from ``start``."""
        return self._track(self._enumerate(start))

    async def _enumerate(self, start: int) -> AsyncIterator[tuple[int, Any]]:
        async for n, value in self._steps("enumerate"):
            yield start + n, value

    def take(self, max_: int, within: float | None) -> AsyncIterator[list[Any]]:
        """Lists of up to ``max_`` values: a list is yielded when full, or ``within``
        seconds after its first value arrived. Its events are acked after the step that
        received the list finishes."""
        if max_ < 1:
            raise ValueError(f"take() needs max_ >= 1, got {max_}")
        return self._track(self._take(max_, within))

    async def _take(self, max_: int, within: float | None) -> AsyncIterator[list[Any]]:
        loop = asyncio.get_running_loop()
        getter: asyncio.Task[Event] | None = None
        events: list[Event] = []
        values: list[Any] = []
        deadline = 0.0
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._next_event())
                timeout = None if not events or within is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({getter}, timeout=timeout)
                if done:
                    event = getter.result()
                    getter = None
                    _set_current(event)
                    try:
                        value = await self._process(event)
                    except Skip:
                        self._ack(event)
                        continue
                    if not events:
                        deadline = loop.time() + (within or 0.0)
                    events.append(event)
                    values.append(value)
                    self.app.monitor.on_events(self.agent_name, 1)
                    if len(values) < max_:
                        continue
                batch, acks = values, events
                events, values = [], []
                try:
                    yield batch
                finally:
                    for event in acks:
                        self._ack(event)
        finally:
            if getter is not None:
                if getter.done() and not getter.cancelled() and getter.exception() is None:
                    # Taken from the queue but never processed: keep it for the next reader.
                    self.queue.put_nowait(getter.result())
                else:
                    getter.cancel()
            for event in events:
                self._ack(event)

    # -- derived streams -----------------------------------------------------------------

    def _clone(self, **overrides: Any) -> Stream:
        kwargs: dict[str, Any] = dict(
            index=self.index, actor=self.actor, processors=list(self.processors),
            enable_acks=self.enable_acks, root=self._root,
        )
        kwargs.update(overrides)
        return Stream(self.app, self.channel, self.subscription, **kwargs)

    def add_processor(self, processor: Processor) -> None:
        """Run ``processor(value)`` (sync or async) on every value; it returns the value
        to pass on, or raises :class:`Skip` to drop it."""
        self.processors.append(processor)

    def noack(self) -> Stream:
        """The same stream, without automatic acks: call ``event.ack()`` yourself."""
        return self._clone(enable_acks=False)

    def echo(self, *channels: Any) -> Stream:
        """The same stream, also sending every value (with its key) to ``channels``."""
        targets = [self.app._resolve_channel(c) for c in channels]

        async def echo(value: Any) -> Any:
            event = current_event()
            key = event.key if event is not None else None
            for target in targets:
                await target.send(key=key, value=value)
            return value

        clone = self._clone()
        clone.add_processor(echo)
        return clone

    def through(self, channel: Topic | Channel | str) -> Stream:
        """Send every value (with its key) to ``channel`` and return a stream reading it."""
        target = self.app._resolve_channel(channel)

        async def forward(stream: Stream) -> None:
            async for value in stream:
                event = current_event()
                if event is None:
                    await target.send(value=value)
                else:  # headers go along (as Faust's forward does), so an ask is answered downstream
                    await target.send(key=event.key, value=value, headers=event.headers)

        return self._derive(target, forward)

    def group_by(
        self,
        key: str | Callable[[Any], Any],
        *,
        name: str | None = None,
        partitions: int | None = None,
    ) -> Stream:
        """Repartition by a new key through the topic ``{app}-{name}-repartition``.

        ``key`` is a field name (of a Record or a dict value) or a (sync or async)
        callable of the value; ``name`` is required for a callable.
        """
        if callable(key):
            if name is None:
                raise ValueError("group_by() with a callable key needs name=...; hint: name the repartition")
            get_key: Callable[[Any], Any] = key
        else:
            field = key
            name = name or field

            def get_key(value: Any) -> Any:
                return value[field] if isinstance(value, dict) else getattr(value, field)

        if partitions is None and isinstance(self.channel, Topic):
            partitions = self.channel.partitions
        source = self.channel
        topic = self.app.topic(
            repartition_topic(self.app.name, name),
            key_type=None,
            value_type=source.value_type if isinstance(source, Topic) else None,
            value_serializer=source.value_codec if isinstance(source, Topic) else "json",
            partitions=partitions,
            internal=True,
        )

        async def repartition(stream: Stream) -> None:
            async for value in stream:
                new_key = get_key(value)
                if inspect.isawaitable(new_key):
                    new_key = await new_key
                event = current_event()
                await topic.send(key=new_key, value=value, headers=event.headers if event is not None else None)

        return self._derive(topic, repartition)

    def _derive(self, target: Topic | Channel, pump: Callable[[Stream], Awaitable[None]]) -> Stream:
        size = self.subscription.size
        sub_name = f"{self.subscription.name}->{target.name}"
        subscription = self.app._subscribe(target, sub_name, size)
        derived = Stream(self.app, target, subscription, index=self.index, actor=self.actor, root=self._root)
        if self.actor is None:
            raise RuntimeError("derived streams need an actor; hint: use them inside an @app.agent")
        self.actor.add_pump(pump(self), derived)
        return derived

    async def close(self, *, cancelled: bool = False) -> None:
        """Close open iterators; their ``finally`` acks the event of the unfinished step
        unless ``cancelled`` (a shutdown that interrupted the work)."""
        if cancelled:
            self._root._cancelled = True
        for iterator in list(self._iterators):
            try:
                await iterator.aclose()
            except (RuntimeError, StopAsyncIteration):
                pass  # already running or finished

    def __repr__(self) -> str:
        return f"<Stream {self.subscription.name}[{self.index}] of {self.channel!r}>"
