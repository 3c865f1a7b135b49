"""The embedded local log: partitioned topics and group offsets in one LevelDB.

The default transport of ``dataflow run``. It lives in ``<data_dir>/log`` and keeps, in a
single LevelDB (keys sort bytewise, so each partition is one contiguous key range):

* ``v`` -- the layout version
* ``t/<topic>`` -- topic metadata (msgpack ``{"partitions": n, "compacted": bool}``)
* ``m/<topic>/<partition>/<offset: 8 bytes big-endian>`` -- a record (msgpack
  ``[timestamp, key, value, headers]``)
* ``c/<topic>/<partition>/<group>`` -- a committed offset (8 bytes big-endian)
* ``s/<store>/<key>`` -- state-store data written through :meth:`LocalTransport.transaction`
  (e.g. the read positions of ``--input`` files, store ``dataflow.inputs``)

Durability: appends are written without fsync (they survive a crash of this process, as
the OS has them); every commit, transaction, ``flush()`` and clean stop is written with
``sync=True``, which also makes every earlier append durable. So after a restart the log
holds at least everything up to the last commit, and consumers resume from it.

>>> import asyncio, tempfile
>>> async def demo(path):
...     async with LocalTransport(path) as t:
...         await t.create_topics([TopicSpec("orders", 1)])
...         async with t.transaction() as txn:
...             txn.send(ProducerRecord("orders", b"k", b"v"))
...             txn.put("totals", b"k", b"1")
...         return txn.results, t.store_db("totals").get(b"k")
>>> asyncio.run(demo(tempfile.mkdtemp()))
([(0, 0)], b'1')
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack
import plyvel

from dataflow.state.faults import StorageError, claim, classify, release, storage_error
from dataflow.transport.base import (
    TP,
    LogLockedError,
    Message,
    ProducerRecord,
    TopicSpec,
    TransportError,
)
from dataflow.transport.memory import Clock, Entry, InProcessBroker, InProcessTransport

__all__ = ["LocalLog", "LocalTransaction", "LocalTransport", "LogStorageError"]

logger = logging.getLogger(__name__)

LAYOUT_VERSION = b"1"
_OFFSET = struct.Struct(">Q")
# Below these sizes a LevelDB call takes microseconds: cheaper inline than a thread hop.
_INLINE_WRITE = 256
_INLINE_READ = 128


def _message_prefix(tp: TP) -> bytes:
    return f"m/{tp.topic}/{tp.partition}/".encode()


def _commit_key(group_id: str, tp: TP) -> bytes:
    return f"c/{tp.topic}/{tp.partition}/{group_id}".encode()


def _store_prefix(store: str) -> bytes:
    if not store or "/" in store:
        raise ValueError(f"invalid store name {store!r}; hint: a non-empty name without '/'")
    return f"s/{store}/".encode()


def _encode(entry: Entry) -> bytes:
    _, key, value, timestamp, headers = entry
    return msgpack.packb((timestamp, key, value, headers), use_bin_type=True)


def _decode(tp: TP, offset: int, raw: bytes) -> Message:
    timestamp, key, value, headers = msgpack.unpackb(raw, raw=False)
    return Message(tp.topic, tp.partition, offset, key, value, timestamp,
                   tuple((h, v) for h, v in headers) if headers else ())


class LogStorageError(TransportError, StorageError):
    """A fault of the local log's storage (disk full, read-only, corrupt, ...), worded for the
    user by :func:`dataflow.state.faults.storage_error`; ``kind`` says which."""


def repair_hint(path: Path) -> str:
    """What to do about a corrupt local log in ``path`` (``<data_dir>/log``)."""
    return (f"stop every run using it, then `dataflow repair --data-dir {path.parent}` keeps the readable "
            "records and reports the lost offsets")


class LocalLog(InProcessBroker):
    """The LevelDB-backed broker behind :class:`LocalTransport`."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        open_attempts: int = 5,
        open_backoff: float = 0.1,
    ) -> None:
        super().__init__(clock=clock)
        self.path = Path(path)
        self._open_attempts = max(1, open_attempts)
        self._open_backoff = open_backoff
        self._db: plyvel.DB | None = None
        self._ends: dict[TP, int] = {}
        self._commits: dict[tuple[str, TP], int] = {}
        # Offsets are handed out and made visible in write order; one writer at a time.
        self._write_lock = asyncio.Lock()
        self._reads: set[asyncio.Future[list[Message]]] = set()

    @property
    def db(self) -> plyvel.DB:
        if self._db is None:
            raise TransportError(f"local log {self.path} is not open; hint: start the transport first")
        return self._db

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if missing) and recover topic ends and commits.

        LevelDB allows one process per directory; a held LOCK is retried with backoff a
        few times, since a previous run may still be shutting down.
        """
        if self._db is not None:
            return
        loop = asyncio.get_running_loop()
        self.path.mkdir(parents=True, exist_ok=True)
        error: Exception | None = None
        for attempt in range(self._open_attempts):
            try:
                self._db = await loop.run_in_executor(
                    None, functools.partial(plyvel.DB, str(self.path), create_if_missing=True, paranoid_checks=True)
                )
                break
            except plyvel.Error as exc:
                if classify(exc) != "locked":  # read-only, disk full, corrupt: waiting will not help
                    raise self._fault(exc) from None
                error = exc
                if attempt + 1 < self._open_attempts:
                    await asyncio.sleep(self._open_backoff * 2**attempt)
        else:
            assert error is not None
            raise LogLockedError(str(storage_error(error, "local log", self.path))) from None
        claim(self.path)
        try:
            with self._faults("reading its topics and commits"):
                await loop.run_in_executor(None, self._recover)
        except BaseException:
            db, self._db = self._db, None
            db.close()
            release(self.path)
            raise

    def _fault(self, exc: BaseException, where: str | None = None) -> LogStorageError:
        error = storage_error(exc, "local log", self.path, where=where, corrupt_hint=repair_hint(self.path))
        return LogStorageError(str(error), error.kind, error.path)

    @contextlib.contextmanager
    def _faults(self, where: str | None = None) -> Iterator[None]:
        """Turn LevelDB's and the OS's errors into one :class:`LogStorageError` line."""
        try:
            yield
        except (plyvel.Error, OSError) as exc:
            raise self._fault(exc, where) from None

    def _recover(self) -> None:
        db = self.db
        version = db.get(b"v")
        if version is None:
            db.put(b"v", LAYOUT_VERSION, sync=True)
        elif version != LAYOUT_VERSION:
            raise TransportError(
                f"local log {self.path} has layout version {version.decode()!r}, "
                f"this dataflow reads {LAYOUT_VERSION.decode()!r}"
            )
        for key, raw in db.iterator(prefix=b"t/"):
            meta = msgpack.unpackb(raw)
            spec = TopicSpec(key[2:].decode(), meta["partitions"], meta["compacted"])
            self._specs[spec.name] = spec
            for partition in range(spec.partitions):
                tp = TP(spec.name, partition)
                prefix = _message_prefix(tp)
                with self._faults(f"topic {spec.name} partition {partition}, finding its end"):
                    last = next(db.iterator(prefix=prefix, reverse=True, include_value=False), None)
                self._ends[tp] = 0 if last is None else _OFFSET.unpack(last[len(prefix) :])[0] + 1
        for key, raw in db.iterator(prefix=b"c/"):
            _, topic, partition, group_id = key.decode().split("/", 3)
            self._commits[(group_id, TP(topic, int(partition)))] = _OFFSET.unpack(raw)[0]
        for (_, tp), offset in self._commits.items():
            # Only after a repair that lost a partition's last records can a commit be past its
            # end: new records then start at the commit, so no consumer skips them.
            if tp in self._ends and offset > self._ends[tp]:
                self._ends[tp] = offset

    async def close(self) -> None:
        """Make everything durable and release the directory's LOCK."""
        if self._db is None:
            return
        async with self._write_lock:
            if self._reads:
                await asyncio.wait(set(self._reads))
            db, self._db = self._db, None
            try:
                with self._faults("writing its last changes"):
                    await asyncio.get_running_loop().run_in_executor(None, self._sync_and_close, db)
            finally:
                if not db.closed:
                    db.close()
                release(self.path)

    @staticmethod
    def _sync_and_close(db: plyvel.DB) -> None:
        db.put(b"v", LAYOUT_VERSION, sync=True)
        db.close()

    # -- storage hooks -------------------------------------------------------------------

    async def _store_topics(self, specs: Sequence[TopicSpec]) -> None:
        batch = self.db.write_batch(sync=True)
        for spec in specs:
            batch.put(f"t/{spec.name}".encode(), msgpack.packb({"partitions": spec.partitions, "compacted": spec.compacted}))
        async with self._write_lock:
            with self._faults("creating topics"):
                await asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch)
            for spec in specs:
                for partition in range(spec.partitions):
                    self._ends[TP(spec.name, partition)] = 0

    def _assign_offsets(self, entries: Sequence[Entry]) -> tuple[list[int], dict[TP, int]]:
        ends: dict[TP, int] = {}
        offsets = []
        for entry in entries:
            tp = entry[0]
            offset = ends.get(tp, self._ends[tp])
            offsets.append(offset)
            ends[tp] = offset + 1
        return offsets, ends

    @staticmethod
    def _write_batch(batch: Any) -> None:
        """Every batch of the log is written here: the one door a write fault comes through."""
        batch.write()

    async def _write(self, batch: Any, size: int) -> None:
        with self._faults("appending records"):
            if size <= _INLINE_WRITE:
                self._write_batch(batch)
            else:
                await asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch)

    async def _append(self, entries: Sequence[Entry]) -> list[int]:
        async with self._write_lock:
            offsets, ends = self._assign_offsets(entries)
            batch = self.db.write_batch()
            put, pack, last_tp, prefix = batch.put, _OFFSET.pack, None, b""
            for entry, offset in zip(entries, offsets, strict=True):
                if entry[0] is not last_tp:  # entries of one partition come in runs
                    last_tp = entry[0]
                    prefix = _message_prefix(last_tp)
                put(prefix + pack(offset), _encode(entry))
            await self._write(batch, len(entries))
            # Visible only once written, so a reader never asks for a missing record.
            self._ends.update(ends)
        return offsets

    async def read(self, tp: TP, start: int, limit: int) -> list[Message]:
        end = self._ends[tp]
        count = min(limit, end - start)
        if count <= 0:
            return []
        if count <= _INLINE_READ:
            return self._read(tp, start, end, limit)
        future = asyncio.get_running_loop().run_in_executor(None, self._read, tp, start, end, limit)
        # close() waits for these: closing LevelDB under a reading thread would crash.
        self._reads.add(future)
        try:
            return await asyncio.shield(future)
        finally:
            self._reads.discard(future)

    def _read(self, tp: TP, start: int, end: int, limit: int) -> list[Message]:
        try:
            return self._read_records(tp, start, end, limit)
        except (plyvel.Error, OSError, ValueError, TypeError) as exc:
            # ValueError/TypeError: msgpack cannot decode a record's bytes, which LevelDB did not
            # catch (block checksums are not verified on every read): the file is corrupt too.
            if not isinstance(exc, (plyvel.Error, OSError)):
                exc = plyvel.CorruptionError(f"Corruption: a record cannot be decoded ({exc})".encode())
            raise self._fault(exc, f"topic {tp.topic} partition {tp.partition}, reading from offset {start}") from None

    def _read_records(self, tp: TP, start: int, end: int, limit: int) -> list[Message]:
        prefix = _message_prefix(tp)
        size = len(prefix)
        unpack = _OFFSET.unpack_from
        messages = []
        # Iterating by key (not offset arithmetic) skips any gaps in the offsets.
        # Checksums verified: a damaged block is an error naming this partition, never garbled records.
        for key, raw in self.db.iterator(start=prefix + _OFFSET.pack(start), stop=prefix + _OFFSET.pack(end),
                                         verify_checksums=True):
            messages.append(_decode(tp, unpack(key, size)[0], raw))
            if len(messages) == limit:
                break
        return messages

    def end_offset(self, tp: TP) -> int:
        return self._ends[tp]

    def committed(self, group_id: str, tp: TP) -> int | None:
        return self._commits.get((group_id, tp))

    async def _store_commits(self, group_id: str, offsets: Mapping[TP, int]) -> None:
        async with self._write_lock:
            batch = self.db.write_batch(sync=True)
            for tp, offset in offsets.items():
                batch.put(_commit_key(group_id, tp), _OFFSET.pack(offset))
            with self._faults("committing offsets"):
                await asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch)
            for tp, offset in offsets.items():
                self._commits[(group_id, tp)] = offset

    async def flush(self) -> None:
        async with self._write_lock:
            with self._faults("flushing"):
                await asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(self.db.put, b"v", LAYOUT_VERSION, sync=True)
                )

    # -- atomic writes -------------------------------------------------------------------

    def transaction(self, *, sync: bool = True) -> LocalTransaction:
        return LocalTransaction(self, sync=sync)

    async def _write_transaction(self, txn: LocalTransaction) -> list[tuple[int, int]]:
        entries = [self._resolve(record) for record in txn.records]
        for commits in txn.commits.values():
            for tp in commits:
                self.spec(tp.topic)
        async with self._write_lock:
            offsets, ends = self._assign_offsets(entries)
            batch = self.db.write_batch(sync=txn.sync)
            for entry, offset in zip(entries, offsets, strict=True):
                batch.put(_message_prefix(entry[0]) + _OFFSET.pack(offset), _encode(entry))
            for group_id, commits in txn.commits.items():
                for tp, offset in commits.items():
                    batch.put(_commit_key(group_id, tp), _OFFSET.pack(offset))
            for key, value in txn.puts:
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            with self._faults("writing a transaction"):
                await asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch)
            self._ends.update(ends)
            for group_id, commits in txn.commits.items():
                for tp, offset in commits.items():
                    self._commits[(group_id, tp)] = offset
        self.notify({entry[0].topic for entry in entries})
        return [(entry[0].partition, offset) for entry, offset in zip(entries, offsets, strict=True)]


class LocalTransaction:
    """Output records, consumer offsets and state-store writes applied in ONE WriteBatch
    (``sync=True`` unless asked otherwise): after a crash either all of them are in the log or none is.

    Nothing is written until the ``async with`` block exits without an exception; then
    :attr:`results` holds ``(partition, offset)`` for each sent record, in order.

    >>> async def step(transport, consumer, out):
    ...     async with transport.transaction() as txn:
    ...         txn.send(ProducerRecord("totals", b"user-1", b"42"))
    ...         txn.commit_offsets(consumer.group_id, {TP("orders", 0): 11})
    ...         txn.put("totals", b"user-1", b"42")
    """

    def __init__(self, log: LocalLog, *, sync: bool = True) -> None:
        self._log = log
        self.sync = sync
        self.records: list[ProducerRecord] = []
        self.commits: dict[str, dict[TP, int]] = {}
        self.puts: list[tuple[bytes, bytes | None]] = []
        self.results: list[tuple[int, int]] = []
        self._done = False

    def send(self, record: ProducerRecord) -> None:
        self._check_open()
        self.records.append(record)

    def commit_offsets(self, group_id: str, offsets: Mapping[TP, int]) -> None:
        """Commit ``offsets`` (next offset to read) for ``group_id`` with this batch.

        Unlike :meth:`Consumer.commit` this does not check partition ownership: the
        caller commits only what it consumed.
        """
        self._check_open()
        for tp, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"commit offset for {tp.topic}[{tp.partition}] must be >= 0, got {offset}")
        self.commits.setdefault(group_id, {}).update(offsets)

    def put(self, store: str, key: bytes, value: bytes) -> None:
        """Write ``key`` of state store ``store`` (read it via ``store_db(store)``)."""
        self._check_open()
        self.puts.append((_store_prefix(store) + key, value))

    def delete(self, store: str, key: bytes) -> None:
        self._check_open()
        self.puts.append((_store_prefix(store) + key, None))

    def _check_open(self) -> None:
        if self._done:
            raise TransportError("transaction already finished")

    async def __aenter__(self) -> LocalTransaction:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done = True
        if exc_type is None:
            self.results = await self._log._write_transaction(self)


class LocalTransport(InProcessTransport):
    """The embedded local log under ``data_dir`` (in ``data_dir/log``).

    ``open_attempts``/``open_backoff`` bound the wait for a LOCK held by another process
    (backoff doubles each attempt). ``clock`` (epoch ms) stamps records without a timestamp.

    >>> LocalTransport("/var/lib/fraud").url
    'local:///var/lib/fraud'
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        open_attempts: int = 5,
        open_backoff: float = 0.1,
    ) -> None:
        self._data_dir = Path(data_dir)
        self._log = LocalLog(
            self._data_dir / "log", clock=clock, open_attempts=open_attempts, open_backoff=open_backoff
        )
        super().__init__(self._log)

    @property
    def url(self) -> str:
        return f"local://{self._data_dir}"

    @property
    def log(self) -> LocalLog:
        return self._log

    async def start(self) -> None:
        await self._log.open()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self._log.close()

    def transaction(self, *, sync: bool = True) -> LocalTransaction:
        """An atomic batch of records, offset commits and store writes; see :class:`LocalTransaction`.

        ``sync=False`` skips the fsync: the batch is still all-or-nothing, and durable once the
        next synced write (or ``flush()``) returns -- a process crash loses none of it."""
        return self._log.transaction(sync=sync)

    async def commit_produced_and_offsets(
        self,
        records: Sequence[ProducerRecord],
        group_id: str,
        offsets: Mapping[TP, int],
        puts: Iterable[tuple[str, bytes, bytes | None]] = (),
    ) -> list[tuple[int, int]]:
        """Append ``records``, commit ``offsets`` and apply store ``puts`` (``None`` value
        deletes) atomically; returns ``(partition, offset)`` per record."""
        async with self.transaction() as txn:
            for record in records:
                txn.send(record)
            txn.commit_offsets(group_id, offsets)
            for store, key, value in puts:
                if value is None:
                    txn.delete(store, key)
                else:
                    txn.put(store, key, value)
        return txn.results

    def store_db(self, store: str) -> Any:
        """A ``plyvel`` prefixed view of state store ``store`` for reads (and direct writes
        that need not be atomic with the log)."""
        return self._log.db.prefixed_db(_store_prefix(store))
