"""Channels and topics: where agents read from and send to.

* :class:`Topic` -- a named, partitioned topic of the app's transport, with the codecs
  (and optional :class:`~dataflow.ir.records.Record` types) of its keys and values.
* :class:`Channel` -- an in-memory channel: values sent to it go straight to the
  streams reading it, without serialisation or offsets.

Readers attach through a :class:`Subscription`: one logical reader (an agent, or a
stream an agent derived with ``through``/``group_by``) with one queue per actor. A
delivery to a subscription holds one reference on the message; it is routed to the
actor owning the message's partition (``partition % actors``), or round-robin for
channel events that have no partition.

>>> topic = Topic(None, "orders", partitions=4)
>>> topic.encode_key("k1"), topic.encode_value({"amount": 5})
(b'"k1"', b'{"amount":5}')
>>> topic.decode_key(b"plain-text"), topic.decode_value(b'{"amount":5}')
('plain-text', {'amount': 5})
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dataflow.ir.records import Record
from dataflow.runtime.codecs import Codec, CodecError, get_codec
from dataflow.runtime.events import Event, normalize_headers
from dataflow.runtime.records import validator
from dataflow.runtime.replies import wants_reply_always
from dataflow.transport.base import ProducerRecord

if TYPE_CHECKING:
    from dataflow.runtime.app import App

__all__ = ["Channel", "DecodeError", "Subscription", "Topic"]


class DecodeError(ValueError):
    """A message could not be turned into a value: ``stage`` is ``decode`` (codec) or
    ``validate`` (the value does not fit the topic's ``value_type``)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


class Subscription:
    """One logical reader: ``size`` actor queues, and a count of deliveries not yet acked.

    >>> sub = Subscription("agent", size=2)
    >>> sub.queue_for(None) is sub.queues[0], sub.queue_for(None) is sub.queues[1]
    (True, True)
    >>> sub.queue_for(5) is sub.queues[1]
    True
    """

    def __init__(self, name: str, size: int = 1, maxsize: int = 0) -> None:
        self.name = name
        self.size = size
        self.queues: list[asyncio.Queue[Event]] = [asyncio.Queue(maxsize) for _ in range(size)]
        self.in_flight = 0
        self.dead = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._rotation = itertools.count()
        #: Called with the number of events delivered, for the monitor.
        self.on_event: Callable[[int], None] | None = None
        #: Called with every event put here (test contexts find the event of a put).
        self.observer: Callable[[Event], None] | None = None

    def queue_for(self, partition: int | None) -> asyncio.Queue[Event]:
        if partition is None:
            return self.queues[next(self._rotation) % self.size]
        return self.queues[partition % self.size]

    async def put(self, event: Event) -> None:
        """Hand ``event`` to its actor; it counts as in flight until acked. A dead
        subscription (its agent gave up) keeps the reference forever, so commits never
        pass what it did not process."""
        self.in_flight += 1
        self._idle.clear()
        _wrap_ack(event, self)
        if self.observer is not None:
            self.observer(event)
        if self.dead:
            return
        partition = event.message.partition if event.message is not None else None
        await self.queue_for(partition).put(event)

    def _done(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def drop(self, unwanted: Callable[[Event], bool]) -> list[Event]:
        """Take the queued events ``unwanted`` picks out of the queues, unacked (their
        partitions were revoked: the next owner reads them again); returns them."""
        dropped = []
        for queue in self.queues:
            kept = []
            while not queue.empty():
                event = queue.get_nowait()
                if unwanted(event):
                    dropped.append(event)
                    self._done()
                else:
                    kept.append(event)
                queue.task_done()
            for event in kept:
                queue.put_nowait(event)
        return dropped

    def kill(self) -> None:
        """Stop delivering: queued events are dropped *unacked* (see :meth:`put`)."""
        self.dead = True
        for queue in self.queues:
            while not queue.empty():
                queue.get_nowait()


class Channel:
    """An in-memory channel (Faust's ``app.channel()``): no codecs, no offsets.

    Values sent before anyone reads are buffered and handed to the first subscription.
    """

    def __init__(self, app: App | None, name: str | None = None, maxsize: int = 0) -> None:
        self.app = app
        self.name = name or f"channel-{id(self):x}"
        self.maxsize = maxsize
        self.subscriptions: dict[str, Subscription] = {}
        self._buffer: list[Event] = []

    def subscribe(self, name: str, size: int = 1) -> Subscription:
        sub = self.subscriptions.get(name)
        if sub is None:
            sub = self.subscriptions[name] = Subscription(name, size, self.maxsize)
            buffered, self._buffer = self._buffer, []
            for event in buffered:
                sub.in_flight += 1
                sub._idle.clear()
                _wrap_ack(event, sub)
                sub.queue_for(None).put_nowait(event)
        return sub

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def send(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
    ) -> None:
        """Deliver ``value`` to every subscription of this channel."""
        live = [sub for sub in self.subscriptions.values()]
        headers = normalize_headers(headers)
        on_ack = None
        if self.app is not None and headers:
            # A request (or one going on from the event being processed) that wants a reply
            # whatever happens: answered null once every reader is done with it, if nobody did.
            if self.app._open_asks:
                self.app._answering([headers])
            if wants_reply_always(headers):
                on_ack = self.app._answer_when_done(headers, None, max(len(live), 1))
        if not live:
            self._buffer.append(Event(self.app, key, value, headers, None, on_ack=on_ack))
            return
        for sub in live:
            await sub.put(Event(self.app, key, value, headers, None, on_ack=on_ack))
        if self.app is not None:
            self.app.monitor.on_sent(self.name, 1)

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"


def _wrap_ack(event: Event, sub: Subscription) -> None:
    outer = event._on_ack

    def on_ack() -> None:
        sub._done()
        if outer is not None:
            outer()

    event._on_ack = on_ack


def _codec(spec: str | Codec) -> Codec:
    return spec if isinstance(spec, Codec) else get_codec(spec)


class Topic:
    """A topic of the app's transport with its key/value codecs and types.

    ``value_type`` may be a :class:`Record` subclass: values are then checked against
    its schema and turned into instances; a value that does not fit is a malformed
    message (dead-lettered by the app, stage ``validate``). Keys are decoded with the
    key codec, falling back to UTF-8 text for keys written by plain producers (as the
    compiled worker does); ``bytes`` keys are sent as they are.
    """

    def __init__(
        self,
        app: App | None,
        name: str,
        *,
        key_type: type | None = None,
        value_type: type | None = None,
        key_serializer: str | Codec = "json",
        value_serializer: str | Codec = "json",
        partitions: int | None = None,
        internal: bool = False,
    ) -> None:
        self.app = app
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self.key_codec = _codec(key_serializer)
        self.value_codec = _codec(value_serializer)
        self.partitions = partitions
        self.internal = internal
        self._check_value = (
            validator(value_type.__dataflow_schema__)
            if isinstance(value_type, type) and issubclass(value_type, Record)
            else None
        )
        self._check_key = (
            validator(key_type.__dataflow_schema__)
            if isinstance(key_type, type) and issubclass(key_type, Record)
            else None
        )

    # -- codecs --------------------------------------------------------------------------

    def encode_key(self, key: Any) -> bytes | None:
        if key is None or isinstance(key, bytes):
            return key
        if isinstance(key, Record):
            key = key.to_dict()
        return self.key_codec.dumps(key)

    def encode_value(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, Record):
            value = value.to_dict()
        return self.value_codec.dumps(value)

    def decode_key(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if self.key_type is bytes:
            return data
        try:
            key = self.key_codec.loads(data)
        except CodecError:
            return data.decode("utf-8", "replace")
        if self._check_key is not None:
            try:
                return self.key_type.from_dict(self._check_key(key))  # type: ignore[union-attr]
            except (ValueError, TypeError) as exc:
                raise DecodeError("validate", f"key: {exc}") from None
        return key

    def decode_value(self, data: bytes | None) -> Any:
        try:
            value = self.value_codec.loads(data)  # type: ignore[arg-type]
        except CodecError as exc:
            raise DecodeError("decode", str(exc)) from None
        if self._check_value is not None:
            try:
                return self.value_type.from_dict(self._check_value(value))  # type: ignore[union-attr]
            except (ValueError, TypeError) as exc:
                raise DecodeError("validate", str(exc)) from None
        return value

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Any = None,
    ) -> tuple[int, int]:
        """Encode and append one record; returns ``(partition, offset)``."""
        return await self.send_raw(
            self.encode_key(key), self.encode_value(value), partition=partition,
            timestamp=timestamp, headers=normalize_headers(headers),
        )

    async def send_raw(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> tuple[int, int]:
        if self.app is None:
            raise RuntimeError(f"topic {self.name!r} belongs to no app; hint: create it with app.topic()")
        return await self.app._produce([ProducerRecord(self.name, key, value, partition, timestamp, headers)])

    async def send_many(self, items: list[tuple[Any, Any]]) -> list[tuple[int, int]]:
        """Encode and append many ``(key, value)`` pairs in one batch."""
        if self.app is None:
            raise RuntimeError(f"topic {self.name!r} belongs to no app; hint: create it with app.topic()")
        records = [ProducerRecord(self.name, self.encode_key(k), self.encode_value(v)) for k, v in items]
        return await self.app._produce_many(records)

    def __repr__(self) -> str:
        return f"<Topic {self.name}>"
