"""Events: a value as delivered to one stream, with its key, headers and source message.

An :class:`Event` holds exactly one reference to its message in the app's offset
tracker. The stream that delivered it acks it when the iteration step that took it
finishes (or the user calls :meth:`Event.ack` on a ``noack()`` stream); acking twice is
harmless. :func:`current_event` returns the event the running actor is processing.

>>> acks = []
>>> event = Event(None, "k", {"n": 1}, (), None, on_ack=lambda: acks.append(1))
>>> event.ack(), event.ack(), acks
(True, False, [1])
>>> current_event() is None
True
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dataflow.transport.base import Message

if TYPE_CHECKING:
    from dataflow.runtime.app import App

__all__ = ["Event", "current_event", "USE_EXISTING"]


class _UseExisting:
    def __repr__(self) -> str:
        return "USE_EXISTING"


#: Default of ``Event.send``/``forward`` arguments: keep the event's own key/value/headers.
USE_EXISTING: Any = _UseExisting()

_current: contextvars.ContextVar[Event | None] = contextvars.ContextVar("dataflow_current_event", default=None)


def current_event() -> Event | None:
    """The event being processed by the running actor, or ``None`` outside an agent."""
    return _current.get()


def _set_current(event: Event | None) -> None:
    _current.set(event)


def normalize_headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Headers as the transport wants them: a tuple of ``(name, bytes)`` pairs.

    >>> normalize_headers({"a": "x"}), normalize_headers(None)
    ((('a', b'x'),), ())
    """
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs)


class Event:
    """One delivery of a value to one stream (Faust's ``EventT``)."""

    __slots__ = ("app", "key", "value", "headers", "message", "acked", "_on_ack")

    def __init__(
        self,
        app: App | None,
        key: Any,
        value: Any,
        headers: tuple[tuple[str, bytes], ...],
        message: Message | None,
        *,
        on_ack: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.key = key
        self.value = value
        self.headers = headers
        #: The transport message it came from; ``None`` for events sent through a channel.
        self.message = message
        self.acked = False
        self._on_ack = on_ack

    def ack(self) -> bool:
        """Release this delivery's reference; ``False`` if it was already acked."""
        if self.acked:
            return False
        self.acked = True
        if self._on_ack is not None:
            self._on_ack()
        return True

    async def send(
        self,
        channel: Any,
        key: Any = USE_EXISTING,
        value: Any = USE_EXISTING,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = USE_EXISTING,
    ) -> Any:
        """Send (re-encoding) this event's key/value -- or the given ones -- to ``channel``
        (a topic, channel, agent or topic name)."""
        target = self._resolve(channel)
        return await target.send(
            key=self.key if key is USE_EXISTING else key,
            value=self.value if value is USE_EXISTING else value,
            partition=partition,
            timestamp=timestamp,
            headers=self.headers if headers is USE_EXISTING else headers,
        )

    async def forward(
        self,
        channel: Any,
        key: Any = USE_EXISTING,
        value: Any = USE_EXISTING,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = USE_EXISTING,
    ) -> Any:
        """Forward the original message: to a topic its bytes are sent unchanged (not
        re-serialised) unless a new key or value is given."""
        from dataflow.runtime.channels import Topic

        target = self._resolve(channel)
        if (
            isinstance(target, Topic)
            and self.message is not None
            and key is USE_EXISTING
            and value is USE_EXISTING
        ):
            return await target.send_raw(
                self.message.key,
                self.message.value,
                partition=partition,
                timestamp=self.message.timestamp if timestamp is None else timestamp,
                headers=self.headers if headers is USE_EXISTING else normalize_headers(headers),
            )
        return await self.send(channel, key, value, partition, timestamp, headers)

    def _resolve(self, channel: Any) -> Any:
        if isinstance(channel, str):
            if self.app is None:
                raise ValueError(f"cannot send to topic name {channel!r}: the event has no app")
            return self.app.topic(channel)
        return channel

    def __repr__(self) -> str:
        where = f" {self.message.topic}[{self.message.partition}]@{self.message.offset}" if self.message else ""
        return f"<Event{where} key={self.key!r} value={self.value!r}>"
