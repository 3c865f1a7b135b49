"""Offset bookkeeping: which offset of each partition is safe to commit.

A message delivered to N streams is acked N times; when its reference count reaches
zero its offset is *acked*. The committable offset of a partition is one past the end of
the first run of consecutive acked offsets *among the delivered offsets* -- offsets the
log never delivered (compaction gaps) do not block it, and it never passes an offset
still in flight, however many tasks ack out of order. Offsets follow Kafka: the value
to commit is the next offset to read.

>>> committable_offset([0, 1, 2, 5, 6], acked={0, 1, 2, 5}, committed=None)
6
>>> committable_offset([0, 1, 2], acked={1, 2}, committed=None) is None  # 0 in flight
True
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from dataflow.transport.base import TP, Message

__all__ = ["OffsetTracker", "Tracker", "committable_offset"]


def committable_offset(delivered: Sequence[int], acked: set[int], committed: int | None) -> int | None:
    """The offset to commit next, or ``None`` when there is nothing new to commit.

    ``delivered`` is sorted ascending; offsets below ``committed`` are already done and
    ignored. The answer is one past the last offset of the leading run of acked offsets.

    >>> committable_offset([3, 4, 5], acked={3, 5}, committed=3)
    4
    >>> committable_offset([3, 4, 5], acked={3, 5}, committed=4) is None
    True
    """
    last: int | None = None
    for offset in delivered:
        if committed is not None and offset < committed:
            continue
        if offset not in acked:
            break
        last = offset
    if last is None or (committed is not None and last + 1 <= committed):
        return None
    return last + 1


class OffsetTracker:
    """Delivered/acked bookkeeping of one partition, O(1) amortised per ack.

    Offsets must be tracked in ascending order (the order a partition is read in); call
    :meth:`reset` after a seek. Duplicate acks and acks of untracked offsets are ignored.

    >>> t = OffsetTracker()
    >>> [t.track(offset) for offset in (10, 11, 14)]
    [True, True, True]
    >>> t.ack(11), t.ack(11), t.committable()
    (True, False, None)
    >>> t.ack(10), t.committable(), t.in_flight
    (True, 12, 1)
    """

    __slots__ = ("_pending", "_acked", "_in_flight", "_frontier", "_committed", "_last")

    def __init__(self, committed: int | None = None) -> None:
        self._pending: deque[int] = deque()  # delivered, not yet folded into the frontier
        self._acked: set[int] = set()  # acked members of _pending
        self._in_flight: set[int] = set()  # unacked members of _pending
        self._frontier: int | None = None  # one past the leading run of acked offsets
        self._committed = committed
        self._last: int | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def committed(self) -> int | None:
        return self._committed

    def track(self, offset: int) -> bool:
        """Record that ``offset`` was delivered; ``False`` (and not tracked) if it is below
        the committed offset, as that work is already done."""
        if self._last is not None and offset <= self._last:
            raise ValueError(
                f"offset {offset} tracked after {self._last}; offsets arrive in ascending order "
                "(hint: reset() the tracker after a seek)"
            )
        self._last = offset
        if self._committed is not None and offset < self._committed:
            return False
        self._pending.append(offset)
        self._in_flight.add(offset)
        return True

    def ack(self, offset: int) -> bool:
        """Mark ``offset`` done; ``False`` if it was not in flight (duplicate or unknown)."""
        if offset not in self._in_flight:
            return False
        self._in_flight.remove(offset)
        self._acked.add(offset)
        self._fold()
        return True

    def _fold(self) -> None:
        pending, acked = self._pending, self._acked
        while pending and pending[0] in acked:
            head = pending.popleft()
            acked.remove(head)
            self._frontier = head + 1

    def committable(self) -> int | None:
        """The offset to commit, or ``None`` if it would not move the committed offset."""
        frontier = self._frontier
        if frontier is None or (self._committed is not None and frontier <= self._committed):
            return None
        return frontier

    def mark_committed(self, offset: int) -> None:
        """Note a commit; forget offsets below it. Never moves the committed offset back."""
        if self._committed is not None and offset <= self._committed:
            return
        self._committed = offset
        pending = self._pending
        while pending and pending[0] < offset:
            head = pending.popleft()
            self._acked.discard(head)
            self._in_flight.discard(head)
        # Acked offsets just above the commit may now lead the queue.
        self._fold()

    def reset(self, committed: int | None = None) -> None:
        """Forget everything in flight (after a seek); optionally set the committed offset."""
        self._pending.clear()
        self._acked.clear()
        self._in_flight.clear()
        self._frontier = None
        self._last = None
        self._committed = committed


class Tracker:
    """Reference-counted acks over many partitions, as a consumer's runtime needs them.

    >>> from dataflow.transport.base import Message, TP
    >>> tracker = Tracker()
    >>> msg = Message("orders", 0, 5, None, b"{}", 0)
    >>> tracker.track(msg, refs=2)
    >>> tracker.ack(TP("orders", 0), 5), tracker.committable()
    (False, {})
    >>> tracker.ack(TP("orders", 0), 5), tracker.committable()
    (True, {TP(topic='orders', partition=0): 6})
    """

    def __init__(self) -> None:
        self._partitions: dict[TP, OffsetTracker] = {}
        self._refs: dict[TP, dict[int, int]] = {}
        self._in_flight = 0
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def in_flight(self) -> int:
        """Messages delivered and not yet fully acked, over all partitions."""
        return self._in_flight

    def partition(self, tp: TP) -> OffsetTracker:
        tracker = self._partitions.get(tp)
        if tracker is None:
            tracker = self._partitions[tp] = OffsetTracker()
            self._refs[tp] = {}
        return tracker

    def track(self, message: Message, refs: int = 1) -> None:
        """Record delivery of ``message`` to ``refs`` streams; ``refs=0`` acks it at once
        (a message nobody subscribes to must not hold back the commit)."""
        self.track_offset(message.tp, message.offset, refs)

    def track_many(self, messages: Iterable[Message], refs: int = 1) -> None:
        for message in messages:
            self.track_offset(message.tp, message.offset, refs)

    def track_offset(self, tp: TP, offset: int, refs: int = 1) -> None:
        if refs < 0:
            raise ValueError(f"refs must be >= 0, got {refs}")
        tracker = self.partition(tp)
        if not tracker.track(offset):
            return
        if refs == 0:
            tracker.ack(offset)
            return
        self._refs[tp][offset] = refs
        self._in_flight += 1
        self._empty.clear()

    def ack(self, tp: TP, offset: int) -> bool:
        """Drop one reference; ``True`` when this ack brought the count to zero.

        Acks beyond the reference count, and of untracked offsets, return ``False``.
        """
        refs = self._refs.get(tp)
        if refs is None:
            return False
        count = refs.get(offset)
        if count is None:
            return False
        if count > 1:
            refs[offset] = count - 1
            return False
        del refs[offset]
        self._partitions[tp].ack(offset)
        self._done(1)
        return True

    def ack_message(self, message: Message) -> bool:
        return self.ack(message.tp, message.offset)

    def ack_many(self, tp: TP, offsets: Iterable[int]) -> int:
        """Ack a batch of one partition; returns how many reached zero."""
        return sum(1 for offset in offsets if self.ack(tp, offset))

    def committable(self) -> dict[TP, int]:
        """Offsets worth committing now (partitions with nothing new are left out)."""
        result = {}
        for tp, tracker in self._partitions.items():
            offset = tracker.committable()
            if offset is not None:
                result[tp] = offset
        return result

    def mark_committed(self, offsets: Mapping[TP, int]) -> None:
        """Note a successful commit; bookkeeping below it is dropped."""
        for tp, offset in offsets.items():
            tracker = self.partition(tp)
            before = tracker.in_flight
            tracker.mark_committed(offset)
            dropped = before - tracker.in_flight
            if dropped:
                refs = self._refs[tp]
                for stale in [o for o in refs if o < offset]:
                    del refs[stale]
                self._done(dropped)

    def in_flight_of(self, tps: Iterable[TP]) -> set[tuple[TP, int]]:
        """The tracked offsets of these partitions not acked yet."""
        return {(tp, offset) for tp in tps if tp in self._partitions
                for offset in self._partitions[tp]._in_flight}

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions (revoked, or about to be re-read after a seek)."""
        for tp in tps:
            tracker = self._partitions.pop(tp, None)
            self._refs.pop(tp, None)
            if tracker is not None and tracker.in_flight:
                self._done(tracker.in_flight)

    async def wait_empty(self) -> None:
        """Return once no message is in flight (e.g. before a final commit)."""
        await self._empty.wait()

    def _done(self, count: int) -> None:
        self._in_flight -= count
        if self._in_flight == 0:
            self._empty.set()
