"""Table partitions: a write cache over a partition store, and changelog bookkeeping.

Reads and writes go to an in-memory cache of decoded values keyed by the *encoded* key
(bytes hash fast and never raise on unhashable JSON keys). Writes also mark the key
dirty. At a commit the runtime takes :meth:`TablePartition.changes` -- the last value of
every key changed since the previous commit, one changelog record per key however many
times it changed -- writes them to the changelog, and then :meth:`TablePartition.flush`
writes the same changes and the changelog offset they end at into the store in one
batch. The store therefore never runs ahead of its changelog; a store that is behind
(or lost) catches up by replaying the changelog from its recorded offset
(:meth:`TablePartition.restore`).

Windowed tables key their entries by ``(key, window_start)``; the store key starts with
the window start (8 bytes, big-endian) so that a range scan finds closed or expired
windows in time order.

>>> part = TablePartition(MemoryStore("counts", 0), PLAIN_KEYS)
>>> k = PLAIN_KEYS.encode("alice")
>>> part.put(k, 2); part.get(k)
2
>>> part.changes()
[(b'"alice"', b'2')]
>>> part.flush(part.changes(), changelog_offset=1); part.changes(), part.changelog_offset
([], 1)
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .stores import MemoryStore, PartitionStore

__all__ = ["ABSENT", "PLAIN_KEYS", "WINDOWED_KEYS", "KeyCodec", "TablePartition"]

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT", "__bool__": lambda self: False})()

_START = struct.Struct(">Q")
_BIAS = 1 << 63  # shifts signed window starts so that bytewise order is numeric order
_CHANGELOG_OFFSET = b"changelog_offset"
_STREAM_TIME = b"stream_time"
_WATERMARKS = b"watermarks"
#: What :meth:`TablePartition.advance` returns while a followed watermark is still unknown:
#: earlier than any event, so nothing is late and nothing closes.
EARLIEST = -(1 << 62)
_OFFSET = struct.Struct(">q")


def _compact(data: bytes) -> bytes:
    """A right-sized copy: orjson's output keeps its whole (about 4 KiB) working buffer,
    which adds up for keys and values that stay in memory."""
    return memoryview(data).tobytes()


class KeyCodec:
    """How a table's keys are written to its store and to its changelog.

    >>> PLAIN_KEYS.encode(["a", 1]), WINDOWED_KEYS.encode(("a", 60000))
    (b'["a",1]', b'\\x80\\x00\\x00\\x00\\x00\\x00\\xea`"a"')
    >>> WINDOWED_KEYS.decode(WINDOWED_KEYS.encode(("a", 60000)))
    ('a', 60000)
    >>> WINDOWED_KEYS.to_changelog(WINDOWED_KEYS.encode(("a", 60000)))
    b'["a",60000]'
    """

    def __init__(self, windowed: bool) -> None:
        self.windowed = windowed

    def encode(self, key: Any) -> bytes:
        if self.windowed:
            return _START.pack(key[1] + _BIAS) + orjson.dumps(key[0])
        return orjson.dumps(key)

    def decode(self, data: bytes) -> Any:
        if self.windowed:
            return orjson.loads(data[8:]), _START.unpack_from(data)[0] - _BIAS
        return orjson.loads(data)

    def window_start(self, data: bytes) -> int:
        return _START.unpack_from(data)[0] - _BIAS

    def start_bound(self, start: int) -> bytes:
        """The smallest store key of windows starting at ``start`` (for range scans)."""
        return _START.pack(start + _BIAS)

    def to_changelog(self, data: bytes) -> bytes:
        if self.windowed:
            return _compact(orjson.dumps([orjson.loads(data[8:]), _START.unpack_from(data)[0] - _BIAS]))
        return data

    def from_changelog(self, data: bytes) -> bytes:
        if self.windowed:
            key, start = orjson.loads(data)
            return _START.pack(start + _BIAS) + orjson.dumps(key)  # concatenation makes a right-sized copy
        return data


PLAIN_KEYS = KeyCodec(windowed=False)
WINDOWED_KEYS = KeyCodec(windowed=True)


class TablePartition:
    """One partition of a table: cached, dirty-tracked, flushed with its changelog offset.

    ``stream_time`` (the highest event time the partition has seen, or None) is kept with
    the data, so window closing and lateness decide the same way after a restart.

    A partition fed from a repartition or through topic *follows* a watermark instead
    (``follows``, set by :mod:`dataflow.runtime.watermarks`): its stream time is the lowest
    of its upstream partitions' progress, moved by :meth:`follow`, and :meth:`advance`
    leaves it alone. Steps need not know which: they call ``advance(t)`` for each event
    and use what it returns (never None) to close windows and judge lateness, and compare
    ``stream_time`` across batches to see what closed.
    """

    def __init__(self, store: PartitionStore, keys: KeyCodec, cache_limit: int = 100_000) -> None:
        self.store = store
        self.keys = keys
        self.cache_limit = cache_limit
        self.cache: dict[bytes, Any] = {}
        self.dirty: dict[bytes, None] = {}
        raw_offset = store.get_meta(_CHANGELOG_OFFSET)
        self.changelog_offset = _OFFSET.unpack(raw_offset)[0] if raw_offset else 0
        raw_time = store.get_meta(_STREAM_TIME)
        self.stream_time: int | None = _OFFSET.unpack(raw_time)[0] if raw_time else None
        self._stream_time_changed = False
        self.follows = False
        #: while one out-of-order record is pushed: the time it is judged by (see runtime.watermarks)
        self.judge: int | None = None
        raw_marks = store.get_meta(_WATERMARKS)
        #: the per-origin watermarks a following partition judged by: {topic: {origin: time}}
        self.watermarks: dict[str, dict[str, int]] | None = orjson.loads(raw_marks) if raw_marks else None

    @property
    def partition(self) -> int:
        return self.store.partition

    # -- reads and writes ------------------------------------------------------------
    def get(self, key: bytes) -> Any:
        """The value under an encoded key, or :data:`ABSENT`."""
        value = self.cache.get(key, ABSENT)
        if value is ABSENT and key not in self.cache:
            raw = self.store.get(key)
            value = ABSENT if raw is None else orjson.loads(raw)
            self.cache[_compact(key)] = value
        return value

    def put(self, key: bytes, value: Any) -> None:
        if key not in self.dirty:  # the dirty key object outlives the batch: in the changelog
            key = _compact(key)
            self.dirty[key] = None
        self.cache[key] = value

    def delete(self, key: bytes) -> None:
        self.put(key, ABSENT)

    def advance(self, timestamp: int) -> int:
        """Move stream time forward to ``timestamp`` (never back); returns the new stream time.

        A following partition's stream time is its watermark: unchanged by ``timestamp``,
        and :data:`EARLIEST` while unknown. What it returns while a record that was out of
        order where it came from is pushed is the time that record would have been judged
        by there (``judge``), so lateness is decided as without the repartition.
        """
        if self.follows:
            now = EARLIEST if self.stream_time is None else self.stream_time
            judge = self.judge
            return now if judge is None or judge < now else judge
        if self.stream_time is None or timestamp > self.stream_time:
            self.stream_time = timestamp
            self._stream_time_changed = True
        return self.stream_time

    def follow(self, watermark: int | None, watermarks: dict[str, dict[str, int]]) -> None:
        """Take the watermark (never back) and the per-origin watermarks it came from."""
        if watermark is not None and (self.stream_time is None or watermark > self.stream_time):
            self.stream_time = watermark
            self._stream_time_changed = True
        if watermarks and watermarks != self.watermarks:
            self.watermarks = watermarks
            self._stream_time_changed = True

    def range(self, start: bytes | None = None, stop: bytes | None = None) -> Iterator[tuple[bytes, Any]]:
        """Decoded items with ``start <= key < stop``, in key order, unflushed writes included."""
        pending = {k: v for k, v in self.cache.items() if k in self.dirty
                   and (start is None or k >= start) and (stop is None or k < stop)}
        merged: dict[bytes, Any] = {}
        for key, raw in self.store.range(start, stop):
            if key not in pending:
                merged[key] = orjson.loads(raw)
        for key, value in pending.items():
            if value is not ABSENT:
                merged[key] = value
        for key in sorted(merged):
            yield key, merged[key]

    def __len__(self) -> int:
        return sum(1 for _ in self.range())

    # -- commits ---------------------------------------------------------------------
    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """``(store key, encoded value or None)`` for every key changed since the last flush."""
        cache, dumps = self.cache, orjson.dumps
        out = []
        for key in self.dirty:
            value = cache[key]
            out.append((key, None if value is ABSENT else _compact(dumps(value))))
        return out

    @property
    def stream_time_changed(self) -> bool:
        return self._stream_time_changed

    def flush(self, changes: list[tuple[bytes, bytes | None]], changelog_offset: int) -> None:
        """Write ``changes`` (from :meth:`changes`) and the offset they end at, atomically."""
        meta = {_CHANGELOG_OFFSET: _OFFSET.pack(changelog_offset)}
        if self.stream_time is not None:
            meta[_STREAM_TIME] = _OFFSET.pack(self.stream_time)
        if self.watermarks:
            meta[_WATERMARKS] = orjson.dumps(self.watermarks)
        self.store.apply(changes, meta)
        self.changelog_offset = changelog_offset
        self.dirty.clear()
        self._stream_time_changed = False
        if len(self.cache) > self.cache_limit:
            self.cache.clear()  # everything is in the store now; reads refill what is hot

    def restore(self, records: Iterable[tuple[bytes | None, bytes | None]], end_offset: int,
                stream_time: int | None = None, watermarks: dict[str, dict[str, int]] | None = None) -> int:
        """Apply changelog records ``(changelog key, value)`` read up to ``end_offset``.

        Returns how many records were applied. Unflushed writes must not exist (restore
        runs before the partition is consumed).
        """
        if self.dirty:
            raise RuntimeError(f"cannot restore {self.store.name}[{self.partition}] over unflushed writes")
        from_changelog = self.keys.from_changelog
        changes = [(from_changelog(key), value) for key, value in records if key is not None]
        if stream_time is not None and (self.stream_time is None or stream_time > self.stream_time):
            self.stream_time = stream_time
        if watermarks:
            self.watermarks = watermarks
        self.flush(changes, end_offset)
        self.cache.clear()
        return len(changes)


def memory_partition(name: str, partition: int, windowed: bool = False) -> TablePartition:
    """A table partition over a fresh :class:`MemoryStore` (for tests).

    >>> memory_partition("t", 0).partition
    0
    """
    return TablePartition(MemoryStore(name, partition), WINDOWED_KEYS if windowed else PLAIN_KEYS)
