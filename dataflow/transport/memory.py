"""The in-process broker: ``memory://`` and the machinery the embedded local log shares.

:class:`InProcessBroker` holds what does not depend on storage -- topic specs, consumer
groups and their rebalancing, new-data wake-ups -- and leaves five storage hooks to its
subclasses: :class:`MemoryBroker` (Python lists, gone with the process) here, and
``LocalLog`` (LevelDB) in :mod:`dataflow.transport.local`.

>>> import asyncio
>>> async def demo():
...     async with MemoryTransport() as t:
...         await t.create_topics([TopicSpec("clicks", 1)])
...         await t.producer().send_batch([ProducerRecord("clicks", None, b"a"), ProducerRecord("clicks", None, b"b")])
...         async with t.consumer("g", ["clicks"]) as c:
...             return [m.offset for m in (await c.getmany(timeout=0))[TP("clicks", 0)]]
>>> asyncio.run(demo())
[0, 1]
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence

from dataflow.transport.base import (
    TP,
    CommitFailedError,
    Consumer,
    Headers,
    Message,
    OffsetReset,
    OnPartitions,
    Producer,
    ProducerRecord,
    TopicMismatchError,
    TopicSpec,
    Transport,
    TransportError,
    UnknownTopicError,
    partition_for,
)

__all__ = [
    "InProcessBroker",
    "InProcessConsumer",
    "InProcessProducer",
    "InProcessTransport",
    "MemoryBroker",
    "MemoryTransport",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], int]
#: A record ready for storage: its partition and timestamp are resolved.
Entry = tuple[TP, bytes | None, bytes | None, int, Headers]


_PLACEMENT_CACHE = 100_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class InProcessBroker(ABC):
    """Topics, consumer groups and wake-ups for brokers living inside this process."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or wall_clock_ms
        self._specs: dict[str, TopicSpec] = {}
        self._groups: dict[str, _Group] = {}
        self._listeners: set[InProcessConsumer] = set()
        # (topic, key) -> partition: murmur2 is pure Python (~2 us a key), and a topic's
        # partition count never changes, so recent keys are placed from this cache.
        self._placement: dict[tuple[str, bytes], int] = {}

    # -- storage hooks -------------------------------------------------------------------

    @abstractmethod
    async def _store_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Persist new topic specs and prepare their partitions."""

    @abstractmethod
    async def _append(self, entries: Sequence[Entry]) -> list[int]:
        """Append entries in order; return the offset given to each."""

    @abstractmethod
    async def read(self, tp: TP, start: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages of ``tp`` with offsets >= ``start``, below the end."""

    @abstractmethod
    def end_offset(self, tp: TP) -> int:
        """One past the last offset readers may see."""

    @abstractmethod
    def committed(self, group_id: str, tp: TP) -> int | None: ...

    @abstractmethod
    async def _store_commits(self, group_id: str, offsets: Mapping[TP, int]) -> None: ...

    async def flush(self) -> None:
        """Make appended records durable; nothing to do for memory."""

    def start_offset(self, tp: TP) -> int:
        """The first offset still in the log (no retention yet, so always 0)."""
        self.spec(tp.topic)
        return 0

    # -- topics --------------------------------------------------------------------------

    def spec(self, topic: str) -> TopicSpec:
        try:
            return self._specs[topic]
        except KeyError:
            raise UnknownTopicError(
                f"unknown topic {topic!r}; hint: create it first with create_topics()"
            ) from None

    async def create_topics(self, specs: Iterable[TopicSpec]) -> None:
        new: dict[str, TopicSpec] = {}
        # Check every spec before creating any, so a mismatch leaves the broker unchanged.
        for spec in specs:
            existing = self._specs.get(spec.name) or new.get(spec.name)
            if existing is None:
                new[spec.name] = spec
            elif existing.partitions != spec.partitions:
                raise TopicMismatchError(
                    f"topic {spec.name!r} already exists with {existing.partitions} partitions, "
                    f"not {spec.partitions}; hint: keep the partition count, or use a new topic name"
                )
        if new:
            ordered = [new[name] for name in sorted(new)]
            await self._store_topics(ordered)
            for spec in ordered:
                self._specs[spec.name] = spec

    def describe_topics(self, names: Iterable[str]) -> dict[str, int]:
        return {name: self._specs[name].partitions for name in names if name in self._specs}

    def list_topics(self) -> list[str]:
        return sorted(self._specs)

    # -- producing -----------------------------------------------------------------------

    def _resolve(self, record: ProducerRecord) -> Entry:
        spec = self.spec(record.topic)
        partition = record.partition
        if partition is None:
            partition = partition_for(record.key, spec.partitions)
        elif not 0 <= partition < spec.partitions:
            raise TransportError(
                f"partition {partition} out of range for topic {spec.name!r} "
                f"with {spec.partitions} partitions"
            )
        timestamp = self.clock() if record.timestamp is None else record.timestamp
        return (TP(record.topic, partition), record.key, record.value, timestamp, record.headers)

    def _resolve_many(self, records: Sequence[ProducerRecord]) -> tuple[list[Entry], set[str], list[int]]:
        """:meth:`_resolve` for a batch: one spec lookup per topic, one clock reading, and
        one ``TP`` object per partition (the hot path of every produce)."""
        specs: dict[str, TopicSpec] = {}
        tps: dict[tuple[str, int], TP] = {}
        placed = self._placement
        now: int | None = None
        entries: list[Entry] = []
        partitions: list[int] = []
        append, placed_in = entries.append, partitions.append
        for record in records:
            topic = record.topic
            spec = specs.get(topic)
            if spec is None:
                spec = specs[topic] = self.spec(topic)
            partition = record.partition
            if partition is None:
                key = record.key
                if key is None:
                    partition = 0
                else:
                    partition = placed.get((topic, key))
                    if partition is None:
                        if len(placed) >= _PLACEMENT_CACHE:
                            placed.clear()
                        partition = placed[(topic, key)] = partition_for(key, spec.partitions)
            elif not 0 <= partition < spec.partitions:
                self._resolve(record)  # raises the out-of-range error
            timestamp = record.timestamp
            if timestamp is None:
                if now is None:
                    now = self.clock()
                timestamp = now
            tp = tps.get((topic, partition))
            if tp is None:
                tp = tps[(topic, partition)] = TP(topic, partition)
            append((tp, record.key, record.value, timestamp, record.headers))
            placed_in(partition)
        return entries, set(specs), partitions

    async def append(self, records: Sequence[ProducerRecord]) -> list[tuple[int, int]]:
        """Append records; returns ``(partition, offset)`` per record and wakes readers."""
        if not records:
            return []
        entries, topics, partitions = self._resolve_many(records)
        offsets = await self._append(entries)
        self.notify(topics)
        return list(zip(partitions, offsets, strict=True))

    def notify(self, topics: Iterable[str]) -> None:
        """Wake consumers waiting for data on any of ``topics``."""
        topics = set(topics)
        for consumer in self._listeners:
            if not consumer.topics.isdisjoint(topics):
                consumer.wakeup()

    # -- groups --------------------------------------------------------------------------

    def group(self, group_id: str) -> _Group:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = _Group(self, group_id)
        return group

    def _drop_group_if_empty(self, group: _Group) -> None:
        if not group.members and self._groups.get(group.group_id) is group:
            del self._groups[group.group_id]

    def listen(self, consumer: InProcessConsumer) -> None:
        self._listeners.add(consumer)

    def unlisten(self, consumer: InProcessConsumer) -> None:
        self._listeners.discard(consumer)


class _Group:
    """Members of one consumer group and the range assignment between them."""

    def __init__(self, broker: InProcessBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id
        self.members: list[InProcessConsumer] = []  # in join order
        # One rebalance at a time: revoke callbacks must finish before partitions move.
        self.lock = asyncio.Lock()

    async def join(self, member: InProcessConsumer) -> None:
        async with self.lock:
            self.members.append(member)
            await self._rebalance(leaving=None)

    async def leave(self, member: InProcessConsumer) -> None:
        async with self.lock:
            self.members.remove(member)
            await self._rebalance(leaving=member)
            self.broker._drop_group_if_empty(self)

    def target_assignment(self) -> dict[InProcessConsumer, set[TP]]:
        """Kafka's range assignor: per topic, contiguous partition ranges to subscribers
        in join order, the first ``partitions % members`` getting one extra."""
        target: dict[InProcessConsumer, set[TP]] = {member: set() for member in self.members}
        topics = sorted(set().union(*(member.topics for member in self.members)))
        for topic in topics:
            subscribers = [member for member in self.members if topic in member.topics]
            count = self.broker.spec(topic).partitions
            share, extra = divmod(count, len(subscribers))
            start = 0
            for index, member in enumerate(subscribers):
                size = share + (1 if index < extra else 0)
                target[member].update(TP(topic, p) for p in range(start, start + size))
                start += size
        return target

    async def _rebalance(self, leaving: InProcessConsumer | None) -> None:
        target = self.target_assignment()
        everyone = [*self.members, *([leaving] if leaving is not None else [])]
        for member in everyone:
            lost = member.assigned_set - target.get(member, set())
            if lost:
                await member._revoke(lost)
        for member in self.members:
            gained = target[member] - member.assigned_set
            if gained:
                await member._assign(gained)


class InProcessConsumer(Consumer):
    """A consumer group member of an :class:`InProcessBroker`."""

    def __init__(
        self,
        broker: InProcessBroker,
        group_id: str,
        topics: Iterable[str],
        *,
        on_assigned: OnPartitions | None = None,
        on_revoked: OnPartitions | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> None:
        self.topics = frozenset(topics)
        if not self.topics:
            raise ValueError(f"consumer of group {group_id!r} subscribes to no topic")
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r}")
        self._broker = broker
        self._group_id = group_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._reset: OffsetReset = auto_offset_reset
        self.assigned_set: set[TP] = set()
        self._positions: dict[TP, int] = {}
        self._paused: set[TP] = set()
        self._wakeup = asyncio.Event()
        self._state = "new"
        self._rotation = itertools.count()

    @property
    def group_id(self) -> str:
        return self._group_id

    def wakeup(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        if self._state != "new":
            raise TransportError(f"consumer of group {self._group_id!r} was already started")
        for topic in sorted(self.topics):
            self._broker.spec(topic)
        self._state = "started"
        self._broker.listen(self)
        await self._broker.group(self._group_id).join(self)

    async def stop(self) -> None:
        if self._state != "started":
            return
        self._state = "stopping"
        self.wakeup()
        try:
            await self._broker.group(self._group_id).leave(self)
        finally:
            self._broker.unlisten(self)
            self._state = "stopped"

    async def _assign(self, tps: set[TP]) -> None:
        for tp in tps:
            committed = self._broker.committed(self._group_id, tp)
            if committed is not None:
                self._positions[tp] = committed
            elif self._reset == "earliest":
                self._positions[tp] = self._broker.start_offset(tp)
            else:
                self._positions[tp] = self._broker.end_offset(tp)
        self.assigned_set |= tps
        self.wakeup()
        await _call(self._on_assigned, tps, "on_assigned", self._group_id)

    async def _revoke(self, tps: set[TP]) -> None:
        # The callback runs while the partitions are still ours, so it can commit them.
        await _call(self._on_revoked, tps, "on_revoked", self._group_id)
        self.assigned_set -= tps
        self._paused -= tps
        for tp in tps:
            self._positions.pop(tp, None)

    def assignment(self) -> set[TP]:
        return set(self.assigned_set)

    def _check_owned(self, tps: Iterable[TP], action: str) -> None:
        foreign = sorted(set(tps) - self.assigned_set)
        if foreign:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in foreign)
            raise TransportError(f"cannot {action} {names}: not assigned to this consumer of group {self._group_id!r}")

    async def getmany(self, max_records: int = 1000, timeout: float = 1.0) -> dict[TP, list[Message]]:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        if self._state == "new":
            raise TransportError(f"consumer of group {self._group_id!r} is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._state == "started":
            # Cleared before looking, so data appended after the look sets it again.
            self._wakeup.clear()
            batch = await self._fetch(max_records)
            if batch:
                return batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return {}

    async def _fetch(self, max_records: int) -> dict[TP, list[Message]]:
        ready = sorted(self.assigned_set - self._paused)
        if not ready:
            return {}
        # Start at a different partition each call so one busy partition cannot starve the rest.
        shift = next(self._rotation) % len(ready)
        batch: dict[TP, list[Message]] = {}
        budget = max_records
        for tp in ready[shift:] + ready[:shift]:
            if budget == 0:
                break
            position = self._positions.get(tp)
            if position is None:
                continue
            end = self._broker.end_offset(tp)
            if position >= end:
                continue
            messages = await self._broker.read(tp, position, budget)
            # A seek or revoke may have happened while the read awaited: drop stale data.
            if tp not in self.assigned_set or tp in self._paused or self._positions.get(tp) != position:
                continue
            if messages:
                batch[tp] = messages
                budget -= len(messages)
                self._positions[tp] = messages[-1].offset + 1
            else:
                self._positions[tp] = end  # only gaps were left below the end
        return batch

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if not offsets:
            return
        foreign = sorted(set(offsets) - self.assigned_set)
        if foreign or self._state not in ("started", "stopping"):
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in (foreign or sorted(offsets)))
            raise CommitFailedError(
                f"group {self._group_id!r} cannot commit {names}: not assigned to this consumer; "
                "hint: the partitions were revoked by a rebalance, commit in on_revoked"
            )
        for tp, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"commit offset for {tp.topic}[{tp.partition}] must be >= 0, got {offset}")
        await self._broker._store_commits(self._group_id, dict(offsets))

    async def committed(self, tp: TP) -> int | None:
        return self._broker.committed(self._group_id, tp)

    def position(self, tp: TP) -> int:
        self._check_owned([tp], "get the position of")
        return self._positions[tp]

    def seek(self, tp: TP, offset: int) -> None:
        self._check_owned([tp], "seek")
        if offset < 0:
            raise ValueError(f"seek offset must be >= 0, got {offset}")
        self._positions[tp] = offset
        self.wakeup()

    def pause(self, *tps: TP) -> None:
        self._check_owned(tps, "pause")
        self._paused.update(tps)

    def resume(self, *tps: TP) -> None:
        self._check_owned(tps, "resume")
        self._paused.difference_update(tps)
        self.wakeup()

    def paused(self) -> set[TP]:
        return set(self._paused)

    def highwater(self, tp: TP) -> int | None:
        self._broker.spec(tp.topic)
        return self._broker.end_offset(tp)

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        result = {}
        for tp in tps:
            self._broker.spec(tp.topic)
            result[tp] = self._broker.end_offset(tp)
        return result


async def _call(callback: OnPartitions | None, tps: set[TP], name: str, group_id: str) -> None:
    if callback is None:
        return
    try:
        await callback(set(tps))
    except Exception:
        # As aiokafka does: a failing listener must not wedge the group's rebalance.
        logger.exception("%s callback of group %r failed for %s", name, group_id, sorted(tps))


class InProcessProducer(Producer):
    """Appends straight into an :class:`InProcessBroker`."""

    def __init__(self, broker: InProcessBroker) -> None:
        self._broker = broker

    async def send(self, record: ProducerRecord) -> tuple[int, int]:
        return (await self._broker.append([record]))[0]

    async def send_batch(self, records: Sequence[ProducerRecord]) -> list[tuple[int, int]]:
        return await self._broker.append(records)

    async def flush(self) -> None:
        await self._broker.flush()


class InProcessTransport(Transport):
    """A :class:`Transport` over an :class:`InProcessBroker`."""

    def __init__(self, broker: InProcessBroker) -> None:
        self._broker = broker
        self._consumers: list[InProcessConsumer] = []
        self._producers: list[InProcessProducer] = []

    @property
    def broker(self) -> InProcessBroker:
        return self._broker

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.stop()
        producers, self._producers = self._producers, []
        for producer in producers:
            await producer.stop()

    async def create_topics(self, specs: Iterable[TopicSpec]) -> None:
        await self._broker.create_topics(specs)

    async def describe_topics(self, names: Iterable[str]) -> dict[str, int]:
        return self._broker.describe_topics(names)

    async def list_topics(self) -> list[str]:
        return self._broker.list_topics()

    async def read_partition(self, tp: TP, start: int, limit: int) -> list[Message]:
        """Up to ``limit`` records of ``tp`` from ``start``, outside any consumer group
        (how table state is restored from a changelog)."""
        self._broker.spec(tp.topic)
        return await self._broker.read(tp, max(start, self._broker.start_offset(tp)), limit)

    async def end_offset(self, tp: TP) -> int:
        """The offset the next record appended to ``tp`` will get."""
        self._broker.spec(tp.topic)
        return self._broker.end_offset(tp)

    async def group_committed(self, group_id: str, tp: TP) -> int | None:
        """The offset ``group_id`` committed for ``tp``, read without joining the group."""
        return self._broker.committed(group_id, tp)

    def producer(self) -> InProcessProducer:
        producer = InProcessProducer(self._broker)
        self._producers.append(producer)
        return producer

    def consumer(
        self,
        group_id: str,
        topics: Iterable[str],
        *,
        on_assigned: OnPartitions | None = None,
        on_revoked: OnPartitions | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> InProcessConsumer:
        consumer = InProcessConsumer(
            self._broker,
            group_id,
            topics,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
            auto_offset_reset=auto_offset_reset,
        )
        self._consumers = [c for c in self._consumers if c._state != "stopped"]
        self._consumers.append(consumer)
        return consumer


class MemoryBroker(InProcessBroker):
    """Partitions as Python lists, committed offsets as a dict; nothing survives the process."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        # Each partition holds plain (key, value, timestamp, headers) tuples, its offsets
        # being list indexes. The cyclic GC stops tracking a tuple of bytes and ints, so a
        # log of millions of records costs it nothing; Message objects would be rescanned
        # by every full collection as the log grows (half the time of a 1M-record run).
        self._logs: dict[TP, list[tuple[bytes | None, bytes | None, int, Headers]]] = {}
        self._commits: dict[tuple[str, TP], int] = {}

    async def _store_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            for partition in range(spec.partitions):
                self._logs[TP(spec.name, partition)] = []

    async def _append(self, entries: Sequence[Entry]) -> list[int]:
        offsets = []
        last_tp: TP | None = None
        log: list[tuple[bytes | None, bytes | None, int, Headers]] = []
        for tp, key, value, timestamp, headers in entries:
            if tp is not last_tp:  # entries of one partition come in runs: skip the dict lookup
                log, last_tp = self._logs[tp], tp
            offsets.append(len(log))
            log.append((key, value, timestamp, headers))
        return offsets

    async def read(self, tp: TP, start: int, limit: int) -> list[Message]:
        topic, partition = tp.topic, tp.partition
        return [Message(topic, partition, offset, key, value, timestamp, headers)
                for offset, (key, value, timestamp, headers)
                in enumerate(self._logs[tp][start:start + limit], start)]

    def end_offset(self, tp: TP) -> int:
        return len(self._logs[tp])

    def committed(self, group_id: str, tp: TP) -> int | None:
        return self._commits.get((group_id, tp))

    async def _store_commits(self, group_id: str, offsets: Mapping[TP, int]) -> None:
        for tp, offset in offsets.items():
            self._commits[(group_id, tp)] = offset


# Named brokers live while some transport uses them, so tests do not leak into each other.
_named: weakref.WeakValueDictionary[str, MemoryBroker] = weakref.WeakValueDictionary()


class MemoryTransport(InProcessTransport):
    """``memory://`` (a private broker) or ``memory://NAME`` (shared within the process).

    ``clock`` (epoch ms) stamps records sent without a timestamp; for a named broker it
    applies only when this transport is the one that creates it.

    >>> a = MemoryTransport("shared")
    >>> a.broker is MemoryTransport("shared").broker, a.broker is MemoryTransport().broker
    (True, False)
    """

    def __init__(self, name: str | None = None, *, clock: Clock | None = None) -> None:
        broker: MemoryBroker | None = _named.get(name) if name else None
        if broker is None:
            broker = MemoryBroker(clock=clock)
            if name:
                _named[name] = broker
        super().__init__(broker)
        self._name = name

    @property
    def url(self) -> str:
        return f"memory://{self._name or ''}"
