"""Partition stores: one key-value store per table partition.

A store holds a table partition's data and a little metadata (the changelog offset it has
applied up to, the partition's stream time). :meth:`PartitionStore.apply` writes data and
metadata together, in one LevelDB ``WriteBatch``, so a store never claims an offset its
data does not reflect.

* :class:`MemoryStore` -- a dict, for tests and the ``memory://`` transport;
* :class:`LevelDBStore` -- one LevelDB (plyvel) database per table partition, in
  ``<data_dir>/state/<store>/<partition>``.

>>> store = MemoryStore("counts", 0)
>>> store.apply([(b"alice", b"3"), (b"bob", b"1")], {b"changelog_offset": b"2"})
>>> store.get(b"alice"), store.get_meta(b"changelog_offset"), list(store.range(stop=b"b"))
(b'3', b'2', [(b'alice', b'3')])
"""
from __future__ import annotations

import bisect
import logging
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

import plyvel

from .faults import StorageError, claim, classify, release, storage_error

__all__ = ["LevelDBStore", "MemoryStore", "PartitionStore", "StoreLockedError", "open_store", "store_path"]

logger = logging.getLogger(__name__)

_DATA = b"d"  # data keys: b"d" + key
_META = b"m"  # metadata keys: b"m" + name


class StoreLockedError(StorageError):
    """Another process holds the store's LevelDB LOCK."""


def _store_fault(exc: BaseException, path: Path) -> StorageError:
    return storage_error(exc, "state store", path,
                         corrupt_hint="delete that directory; it is rebuilt from its changelog on the next run")


class PartitionStore(ABC):
    """The data of one partition of one table."""

    def __init__(self, name: str, partition: int) -> None:
        self.name = name
        self.partition = partition

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""

    @abstractmethod
    def range(self, start: bytes | None = None, stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < stop`` in key order (bytewise)."""

    @abstractmethod
    def get_meta(self, name: bytes) -> bytes | None:
        """A metadata value written by :meth:`apply`."""

    @abstractmethod
    def apply(self, changes: Iterable[tuple[bytes, bytes | None]], meta: dict[bytes, bytes]) -> None:
        """Write ``changes`` (a None value deletes) and ``meta`` atomically."""

    @abstractmethod
    def close(self) -> None:
        """Release the store (and its LOCK)."""


class MemoryStore(PartitionStore):
    """A partition store in a dict; iteration sorts its keys on demand."""

    def __init__(self, name: str, partition: int) -> None:
        super().__init__(name, partition)
        self._data: dict[bytes, bytes] = {}
        self._meta: dict[bytes, bytes] = {}
        self._sorted: list[bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def range(self, start: bytes | None = None, stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        keys = self._sorted
        lo = 0 if start is None else bisect.bisect_left(keys, start)
        hi = len(keys) if stop is None else bisect.bisect_left(keys, stop)
        data = self._data
        return iter([(k, data[k]) for k in keys[lo:hi]])

    def get_meta(self, name: bytes) -> bytes | None:
        return self._meta.get(name)

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]], meta: dict[bytes, bytes]) -> None:
        data = self._data
        for key, value in changes:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self._meta.update(meta)
        self._sorted = None

    def close(self) -> None:
        """Nothing to release: the data lives as long as the object."""


class LevelDBStore(PartitionStore):
    """A partition store in its own LevelDB directory.

    LevelDB allows one process per directory: opening retries a held LOCK a few times
    with doubling backoff (a previous run may still be closing), then raises
    :class:`StoreLockedError`. Open it from an executor: it blocks.
    """

    def __init__(self, name: str, partition: int, path: str | Path, *, attempts: int = 5,
                 backoff: float = 0.1) -> None:
        super().__init__(name, partition)
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        error: Exception | None = None
        for attempt in range(max(1, attempts)):
            try:
                # paranoid: a damaged block is an error (then a rebuild), never silently dropped
                self._db = plyvel.DB(str(self.path), create_if_missing=True, paranoid_checks=True)
                break
            except plyvel.Error as exc:
                if classify(exc) != "locked":  # corrupt, read-only, disk full: waiting will not help
                    raise _store_fault(exc, self.path) from None
                error = exc
                if attempt + 1 < attempts:
                    time.sleep(backoff * 2**attempt)
        else:
            assert error is not None
            fault = _store_fault(error, self.path)
            raise StoreLockedError(str(fault), fault.kind, fault.path) from None
        claim(self.path)
        self._data = self._db.prefixed_db(_DATA)
        self._meta = self._db.prefixed_db(_META)

    def get(self, key: bytes) -> bytes | None:
        try:
            return self._data.get(key)
        except plyvel.Error as exc:
            raise _store_fault(exc, self.path) from None

    def range(self, start: bytes | None = None, stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return self._data.iterator(start=start, stop=stop)

    def get_meta(self, name: bytes) -> bytes | None:
        return self._meta.get(name)

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]], meta: dict[bytes, bytes]) -> None:
        # No fsync: the changelog, not the store, is what a crash is recovered from.
        batch = self._db.write_batch()
        for key, value in changes:
            if value is None:
                batch.delete(_DATA + key)
            else:
                batch.put(_DATA + key, value)
        for name, value in meta.items():
            batch.put(_META + name, value)
        try:
            batch.write()
        except (plyvel.Error, OSError) as exc:
            raise _store_fault(exc, self.path) from None

    def close(self) -> None:
        self._db.close()
        release(self.path)


def store_path(data_dir: str | Path, store: str, partition: int) -> Path:
    """Where a LevelDB partition store lives: ``<data_dir>/state/<store>/<partition>``."""
    return Path(data_dir) / "state" / store / str(partition)


def open_store(backend: str, name: str, partition: int, data_dir: str | Path | None = None) -> PartitionStore:
    """Open a partition store: ``backend`` is ``memory`` or ``leveldb`` (needs ``data_dir``).

    >>> open_store("memory", "counts", 3).partition
    3
    """
    if backend == "memory":
        return MemoryStore(name, partition)
    if backend == "leveldb":
        if data_dir is None:
            raise ValueError("a leveldb store needs a data directory")
        path = store_path(data_dir, name, partition)
        try:
            return LevelDBStore(name, partition, path)
        except StorageError as e:
            if e.kind != "corrupt":
                raise
            # The changelog is the truth and the store a cache of it: start the cache again.
            logger.warning("%s; rebuilding it from its changelog", str(e).split("; hint:")[0])
            drop_store(data_dir, name, partition)
            return LevelDBStore(name, partition, path)
    raise ValueError(f"unknown store backend {backend!r}; hint: memory or leveldb")


def drop_store(data_dir: str | Path, name: str, partition: int) -> None:
    """Delete a LevelDB partition store's directory (it is rebuilt from the changelog)."""
    shutil.rmtree(store_path(data_dir, name, partition), ignore_errors=True)
