"""Agent RPC: request and reply headers, reply promises, barriers and the reply consumer.

An *ask* is an ordinary record sent to an agent's topic (or channel) with two headers:

* ``dataflow.reply-to`` -- the topic the reply goes to (the asker's reply topic);
* ``dataflow.correlation-id`` -- an id the asker chose, unique among its pending asks;
* optionally ``dataflow.reply-always`` -- answer even when processing yields no result: with
  ``null`` once every stream that got the record has finished with it (what a compiled flow
  asks, so a value an agent filters out costs no timeout).

Whoever processes the record -- a user agent, or later a compiled flow's worker -- answers
with :func:`reply_to_record`: a record on the reply-to topic carrying the same
``dataflow.correlation-id`` header, whose value is the JSON of the result, or, when
processing failed, a ``dataflow.reply-error`` header with the reason (the value is the
reason too, as UTF-8 text: Kafka clients send no record without key and value). The
:class:`ReplyConsumer` of the asking app reads its reply topic and fulfils the
:class:`ReplyPromise` (or :class:`BarrierState`) registered for the correlation id.

>>> request = request_headers("dataflow-reply-shop", "c1")
>>> request
(('dataflow.reply-to', b'dataflow-reply-shop'), ('dataflow.correlation-id', b'c1'))
>>> record = reply_to_record(request, value=b'{"total":42}')
>>> record.topic, record.value, record.headers
('dataflow-reply-shop', b'{"total":42}', (('dataflow.correlation-id', b'c1'),))
>>> read_reply(record.headers, record.value)
('c1', {'total': 42})
>>> failed = reply_to_record(request, error="agent 'totals' failed: KeyError: 'amount'")
>>> read_reply(failed.headers, failed.value)
('c1', AgentError("agent 'totals' failed: KeyError: 'amount'"))
>>> reply_to_record((), value=b"1") is None     # nobody asked: no reply
True
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from dataflow.runtime.codecs import CodecError, get_codec
from dataflow.transport.base import TP, Consumer, ProducerRecord, TopicSpec

if TYPE_CHECKING:
    from dataflow.runtime.app import App

__all__ = [
    "CORRELATION_ID",
    "REPLY_ALWAYS",
    "REPLY_ERROR",
    "REPLY_TO",
    "AgentError",
    "AskTimeout",
    "BarrierState",
    "ReplyConsumer",
    "ReplyError",
    "ReplyPromise",
    "ReplyTuple",
    "encode_reply_value",
    "read_reply",
    "reply_address",
    "reply_to_record",
    "request_headers",
    "wants_reply_always",
]

logger = logging.getLogger(__name__)

#: Request header: the topic the reply goes to.
REPLY_TO = "dataflow.reply-to"
#: Request and reply header: the asker's id for this request.
CORRELATION_ID = "dataflow.correlation-id"
#: Reply header: why the request failed (the reply then has no value).
REPLY_ERROR = "dataflow.reply-error"
#: Request header: answer ``null`` if processing the value yields no result.
REPLY_ALWAYS = "dataflow.reply-always"

_JSON = get_codec("json")


class ReplyError(Exception):
    """An ask that did not produce a result."""


class AgentError(ReplyError):
    """The agent raised while processing the asked value (or could not reply with it).

    The message names the agent and the exception, e.g.
    ``agent 'double' failed: ZeroDivisionError: division by zero``.
    """

    def __repr__(self) -> str:
        return f"AgentError({str(self)!r})"


class AskTimeout(ReplyError, TimeoutError):
    """No reply came within the ask's timeout (``reply_expires`` by default)."""


class ReplyTuple(NamedTuple):
    """One reply of a barrier: its correlation id and the result."""

    correlation_id: str
    value: Any


def request_headers(reply_to: str, correlation_id: str, *, always: bool = False) -> tuple[tuple[str, bytes], ...]:
    """The headers that turn a record into a request for a reply; with ``always``, one
    that is answered ``null`` when processing it yields nothing.

    >>> request_headers("r", "c1", always=True)[2]
    ('dataflow.reply-always', b'1')
    """
    headers = ((REPLY_TO, reply_to.encode()), (CORRELATION_ID, correlation_id.encode()))
    return headers + ((REPLY_ALWAYS, b"1"),) if always else headers


def wants_reply_always(headers: Iterable[tuple[str, bytes]]) -> bool:
    """Whether a request asks to be answered even when it yields no result.

    >>> wants_reply_always(request_headers("r", "c1", always=True)), wants_reply_always(request_headers("r", "c1"))
    (True, False)
    """
    return any(name == REPLY_ALWAYS for name, _ in headers)


def reply_address(headers: Iterable[tuple[str, bytes]]) -> tuple[str, str] | None:
    """``(reply_to, correlation_id)`` if the record asks for a reply, else ``None``.

    >>> reply_address([("dataflow.correlation-id", b"7"), ("dataflow.reply-to", b"r")])
    ('r', '7')
    >>> reply_address([("trace", b"x")]) is None
    True
    """
    reply_to = correlation_id = None
    for name, value in headers:
        if name == REPLY_TO:
            reply_to = value.decode()
        elif name == CORRELATION_ID:
            correlation_id = value.decode()
    if reply_to is None or correlation_id is None:
        return None
    return reply_to, correlation_id


def encode_reply_value(value: Any) -> bytes:
    """A result as a reply value: JSON, with records as their dicts.

    >>> encode_reply_value({"n": 1}), encode_reply_value(None)
    (b'{"n":1}', b'null')
    """
    to_dict = getattr(value, "to_dict", None)
    return _JSON.dumps(to_dict() if callable(to_dict) else value)


def reply_to_record(
    request: Iterable[tuple[str, bytes]],
    *,
    value: bytes | None = None,
    error: str | None = None,
    key: bytes | None = None,
) -> ProducerRecord | None:
    """The reply to a request with headers ``request``: ``value`` (already encoded, see
    :func:`encode_reply_value`) or ``error`` (a one-line reason, which takes precedence
    and becomes the value too). ``None`` when the request
    asked for no reply, so a worker can call this for every record it processes."""
    address = reply_address(request)
    if address is None:
        return None
    reply_to, correlation_id = address
    headers: tuple[tuple[str, bytes], ...] = ((CORRELATION_ID, correlation_id.encode()),)
    if error is not None:
        headers += ((REPLY_ERROR, error.encode()),)
        value = error.encode()
    return ProducerRecord(reply_to, key, value, 0, None, headers)


def read_reply(headers: Iterable[tuple[str, bytes]], value: bytes | None) -> tuple[str, Any] | None:
    """``(correlation_id, result)`` of a reply record, where a failed request's result is
    an :class:`AgentError`; ``None`` for a record that is not a reply."""
    correlation_id = error = None
    for name, data in headers:
        if name == CORRELATION_ID:
            correlation_id = data.decode()
        elif name == REPLY_ERROR:
            error = data.decode("utf-8", "replace")
    if correlation_id is None:
        return None
    if error is not None:
        return correlation_id, AgentError(error)
    try:
        return correlation_id, _JSON.loads(value) if value is not None else None
    except CodecError as exc:
        return correlation_id, AgentError(f"the reply could not be decoded: {exc}")


class ReplyPromise(asyncio.Future):  # type: ignore[type-arg]
    """A result to come: ``await`` it. Fulfilled by the :class:`ReplyConsumer` when the
    reply with its correlation id arrives; it raises :class:`AgentError` if the agent
    failed on the value and :class:`AskTimeout` if no reply came in time.

    >>> async def demo():
    ...     promise = ReplyPromise("dataflow-reply-app", "c1")
    ...     promise.fulfill("c1", 42)
    ...     return await promise
    >>> asyncio.run(demo())
    42
    """

    def __init__(self, reply_to: str, correlation_id: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply_to = reply_to
        self.correlation_id = correlation_id or uuid.uuid4().hex

    def fulfill(self, correlation_id: str, value: Any) -> None:
        """A reply was received."""
        if correlation_id != self.correlation_id:
            raise ValueError(f"reply {correlation_id!r} is not for promise {self.correlation_id!r}")
        if not self.done():
            self.set_result(value)

    def fail(self, correlation_id: str, exc: BaseException) -> None:
        """The ask failed (an error reply, a timeout, or the app stopped)."""
        if correlation_id != self.correlation_id:
            raise ValueError(f"reply {correlation_id!r} is not for promise {self.correlation_id!r}")
        if not self.done():
            self.set_exception(exc)


class BarrierState(ReplyPromise):
    """Waits for a group of replies (what ``map`` and ``join`` use).

    Promises are :meth:`add`-ed while their requests are sent (``size`` grows), then
    :meth:`finalize` fixes ``total``; the barrier is done once ``fulfilled == total``.
    Results can be taken as they arrive with :meth:`get_nowait` or :meth:`iterate`.

    >>> async def demo():
    ...     barrier = BarrierState("replies")
    ...     for cid in ("a", "b"):
    ...         barrier.add(ReplyPromise("replies", cid))
    ...     barrier.fulfill("b", 2)
    ...     barrier.finalize()
    ...     barrier.fulfill("a", 1)
    ...     return [tuple(r) async for r in barrier.iterate()], barrier.done()
    >>> asyncio.run(demo())
    ([('b', 2), ('a', 1)], True)
    """

    def __init__(self, reply_to: str, correlation_id: str = "", **kwargs: Any) -> None:
        super().__init__(reply_to, correlation_id, **kwargs)
        #: The tentative total while requests are being sent.
        self.size = 0
        #: The final total, set by :meth:`finalize`.
        self.total = 0
        #: How many replies have arrived.
        self.fulfilled = 0
        #: The promises still waiting for their reply.
        self.pending: set[ReplyPromise] = set()
        self._by_id: dict[str, ReplyPromise] = {}
        self._finalized = False
        self._results: asyncio.Queue[ReplyTuple | None] = asyncio.Queue()

    def add(self, p: ReplyPromise) -> None:
        """Add a promise; only before :meth:`finalize`."""
        if self._finalized:
            raise RuntimeError("cannot add to a finalized barrier")
        self.pending.add(p)
        self._by_id[p.correlation_id] = p
        self.size += 1

    def finalize(self) -> None:
        """Every request is sent: the size is final."""
        self._finalized = True
        self.total = self.size
        if self.fulfilled >= self.total and not self.done():
            self.set_result(True)
            self._results.put_nowait(None)  # wake up a waiting iterate()

    def fulfill(self, correlation_id: str, value: Any) -> None:
        """One of the barrier's replies arrived."""
        p = self._by_id.pop(correlation_id, None)
        if p is None:
            return  # not ours, or a duplicate reply
        p.fulfill(correlation_id, value)
        self._arrived(p, ReplyTuple(correlation_id, value))

    def fail(self, correlation_id: str, exc: BaseException) -> None:
        """One of the barrier's requests failed: :meth:`iterate` and :meth:`get_nowait`
        raise ``exc`` when they come to it."""
        p = self._by_id.pop(correlation_id, None)
        if p is None:
            return
        p.fail(correlation_id, exc)
        p.exception()  # the barrier reports it; mark it retrieved so asyncio does not warn
        self._arrived(p, ReplyTuple(correlation_id, exc))

    def _arrived(self, p: ReplyPromise, result: ReplyTuple) -> None:
        self.pending.discard(p)
        self.fulfilled += 1
        self._results.put_nowait(result)
        if self._finalized and self.fulfilled >= self.total and not self.done():
            self.set_result(True)

    @staticmethod
    def _checked(result: ReplyTuple) -> ReplyTuple:
        if isinstance(result.value, ReplyError):
            raise result.value
        return result

    def get_nowait(self) -> ReplyTuple:
        """The next reply, or raise :class:`asyncio.QueueEmpty`."""
        while True:
            result = self._results.get_nowait()
            if result is not None:
                return self._checked(result)

    async def iterate(self, *, return_exceptions: bool = False) -> AsyncIterator[ReplyTuple]:
        """Replies as they arrive, until the finalized barrier is complete. A failed
        request raises its error, or with ``return_exceptions`` comes as a reply whose
        value is the error (an :class:`AgentError` or :class:`AskTimeout`)."""
        check = (lambda result: result) if return_exceptions else self._checked
        while not self.done():
            result = await self._results.get()
            if result is not None:
                yield check(result)
        while True:
            try:
                result = self._results.get_nowait()
            except asyncio.QueueEmpty:
                return
            if result is not None:
                yield check(result)

    @property
    def correlation_ids(self) -> list[str]:
        """Ids of the replies not yet arrived."""
        return list(self._by_id)


class ReplyConsumer:
    """Reads an app's reply topics and fulfils the promises waiting for them.

    One per app, started on the first ask. It reads with a consumer group of its own
    (unique per process) from the end of the topic, so several processes of one app can
    share a reply topic: each takes the replies it has promises for and skips the rest.
    A promise not fulfilled within its timeout fails with :class:`AskTimeout`.
    """

    def __init__(self, app: App, topic: str) -> None:
        self.app = app
        self.topic = topic
        self.group_id = f"{topic}-{uuid.uuid4().hex[:12]}"
        self._topics: set[str] = set()
        self._waiting: dict[str, tuple[ReplyPromise, asyncio.TimerHandle | None, str]] = {}
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.started = False

    def __repr__(self) -> str:
        return f"<ReplyConsumer {sorted(self._topics)} waiting={len(self._waiting)}>"

    @property
    def waiting(self) -> int:
        """How many replies are awaited."""
        return len(self._waiting)

    async def start(self) -> None:
        await self.subscribe(self.topic)
        self.started = True

    async def subscribe(self, topic: str) -> None:
        """Read ``topic`` too (created with one partition if missing)."""
        if topic in self._topics:
            return
        async with self._lock:
            if topic in self._topics:
                return
            transport = self.app.transport
            if not await transport.describe_topics([topic]):
                await transport.create_topics([TopicSpec(topic, 1)])
            positions: dict[TP, int] = {}
            old = self._consumer
            if old is not None:
                # Keep reading the other topics exactly where we were: nothing is committed.
                positions = {tp: old.position(tp) for tp in old.assignment()}
                if self._task is not None:
                    self._task.cancel()
                    await asyncio.gather(self._task, return_exceptions=True)
                await old.stop()
            self._topics.add(topic)

            async def on_assigned(tps: set[TP]) -> None:
                for tp in tps:
                    if tp in positions:
                        consumer.seek(tp, positions[tp])

            consumer = transport.consumer(self.group_id, sorted(self._topics), on_assigned=on_assigned,
                                          auto_offset_reset="latest")
            await consumer.start()
            self._consumer = consumer
            self._task = asyncio.ensure_future(self._run(consumer))

    def add(self, correlation_id: str, promise: ReplyPromise, *, timeout: float | None = None,
            label: str = "the agent") -> None:
        """Register ``promise`` for the reply ``correlation_id``; it fails with
        :class:`AskTimeout` after ``timeout`` seconds without one."""
        handle = None
        if timeout is not None:
            handle = asyncio.get_running_loop().call_later(timeout, self._expire, correlation_id, timeout)
        self._waiting[correlation_id] = (promise, handle, label)

    def discard(self, correlation_ids: Iterable[str]) -> None:
        """Stop waiting for these replies (an asker that gave up)."""
        for correlation_id in correlation_ids:
            entry = self._waiting.pop(correlation_id, None)
            if entry is not None and entry[1] is not None:
                entry[1].cancel()

    def _expire(self, correlation_id: str, timeout: float) -> None:
        entry = self._waiting.pop(correlation_id, None)
        if entry is None:
            return
        promise, _, label = entry
        promise.fail(correlation_id, AskTimeout(
            f"no reply from {label} within {timeout:g} s (correlation id {correlation_id}); "
            "hint: is a worker running the agent? raise reply_expires or the timeout"
        ))

    def deliver(self, correlation_id: str, result: Any) -> None:
        """Fulfil (or fail, for an :class:`AgentError`) the promise waiting for this reply."""
        entry = self._waiting.pop(correlation_id, None)
        if entry is None:
            return  # another process's reply, or one that came after its timeout
        promise, handle, _ = entry
        if handle is not None:
            handle.cancel()
        if isinstance(result, ReplyError):
            promise.fail(correlation_id, result)
        else:
            promise.fulfill(correlation_id, result)

    async def _run(self, consumer: Consumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(max_records=1000, timeout=1.0)
                for messages in batch.values():
                    for message in messages:
                        reply = read_reply(message.headers, message.value)
                        if reply is not None:
                            self.deliver(*reply)
        except Exception as exc:  # noqa: BLE001 - the askers must hear of it, not time out
            logger.error("app %s: reading replies from %s failed: %s", self.app.name, sorted(self._topics), exc)
            waiting, self._waiting = self._waiting, {}
            for correlation_id, (promise, handle, _) in waiting.items():
                if handle is not None:
                    handle.cancel()
                promise.fail(correlation_id, ReplyError(f"reading replies failed: {type(exc).__name__}: {exc}"))
            raise

    async def stop(self) -> None:
        """Stop reading; promises still waiting fail with a :class:`ReplyError`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        waiting, self._waiting = self._waiting, {}
        for correlation_id, (promise, handle, label) in waiting.items():
            if handle is not None:
                handle.cancel()
            promise.fail(correlation_id, ReplyError(f"app {self.app.name!r} stopped before {label} replied"))
        self.started = False
