"""`--input TOPIC=FILE`: a file read in chunks, resumable on the embedded local log.

The file is streamed: ``batch`` lines at a time are read, encoded and produced, so memory
does not follow the file's size. On the local log each chunk's records and the file's read
position (byte offset, line count, identity and a SHA-256 of the bytes read so far) are
written in ONE transaction: after a crash the topic holds exactly the lines up to the saved
position, and the next run of the same command goes on from there -- each line is produced
once, and the worker's own commits make its processing exactly-once on top.

A file that changed since the last run -- another file at that path, shorter than what was
read, or different in the part that was read -- is refused with :class:`FileChanged`, unless
``reread`` says to produce it again from the start. A file that grew is read on from where the
last run stopped. Other transports (``kafka://``, ``memory://``) keep no position: the file
is produced from its start on every run, as before.

>>> import asyncio, tempfile, pathlib
>>> from dataflow.transport.local import LocalTransport
>>> from dataflow.transport.base import TP, TopicSpec
>>> async def feed_twice(directory):
...     path = pathlib.Path(directory, "in.jsonl")
...     path.write_text('"a"\\n"b"\\n')
...     async with LocalTransport(directory) as transport:
...         await transport.create_topics([TopicSpec("lines", 1)])
...         first = await FileSource(transport, "lines", path).feed()
...         path.write_text('"a"\\n"b"\\n"c"\\n')  # appended: only the new line is produced
...         second = await FileSource(transport, "lines", path).feed()
...         return first, second, transport.log.end_offset(TP("lines", 0))
>>> asyncio.run(feed_twice(tempfile.mkdtemp()))
(2, 1, 3)
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..transport.base import ProducerRecord, Transport

__all__ = ["FileChanged", "FilePosition", "FileSource", "POSITIONS_STORE", "progress_line"]

logger = logging.getLogger(__name__)

#: the local log's store (key: topic NUL absolute path) holding each input file's read position
POSITIONS_STORE = "dataflow.inputs"
_HASH_BLOCK = 1 << 20


class FileChanged(Exception):
    """An input file is not the file an earlier run read part of."""


@dataclass(frozen=True)
class FilePosition:
    """How far a run read an input file: ``offset`` bytes, ``lines`` lines (blank ones too)."""

    device: int
    inode: int
    offset: int
    lines: int
    sha256: str  # of the file's first ``offset`` bytes

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_bytes(cls, data: bytes) -> FilePosition:
        return cls(**orjson.loads(data))


def progress_line(name: str, records: int, offset: int, size: int, read: int, seconds: float) -> str:
    """An input file's progress: records sent, how far into the file (``offset`` of ``size``
    bytes), and the time left at this run's pace (``read`` bytes in ``seconds``).

    >>> progress_line("in.jsonl", 120_000, 25_000_000, 100_000_000, 25_000_000, 10.0)
    'in.jsonl: 120,000 records · 25.0 of 100.0 MB · ETA 30s'
    >>> progress_line("in.jsonl", 10, 60_000_000, 100_000_000, 10_000_000, 20.0)
    'in.jsonl: 10 records · 60.0 of 100.0 MB · ETA 1m20s'
    >>> progress_line("in.jsonl", 0, 0, 5_000_000, 0, 0.0)
    'in.jsonl: 0 records · 0.0 of 5.0 MB · ETA ?'
    """
    eta = "?"
    if read > 0 and seconds > 0:
        left = round(seconds * max(0, size - offset) / read)
        eta = f"{left // 60}m{left % 60:02d}s" if left >= 60 else f"{left}s"
    return f"{name}: {records:,} records · {offset / 1e6:.1f} of {size / 1e6:.1f} MB · ETA {eta}"


def _key(topic: str, path: Path) -> bytes:
    return f"{topic}\0{path}".encode()


class FileSource:
    """Produces the JSON lines of ``path`` to ``topic``; see the module docstring.

    ``record(line)`` turns a line into the record to produce (default: the line is the
    value); ``batch`` lines go in each write.
    """

    def __init__(self, transport: Transport, topic: str, path: str | Path, *,
                 record: Callable[[bytes], ProducerRecord] | None = None, batch: int = 5000,
                 reread: bool = False, on_chunk: Callable[[FileSource], None] | None = None) -> None:
        self.transport = transport
        self.topic = topic
        self.path = Path(path).resolve()
        self.shown = str(path)  # as the user typed it, for messages
        self.record = record or (lambda line: ProducerRecord(topic, None, line.strip()))
        self.batch = max(1, batch)
        self.reread = reread
        # Only the embedded log can write records and a position in one transaction.
        self.resumable = all(hasattr(transport, name) for name in ("transaction", "store_db", "log"))
        self.sent = 0
        self.start: FilePosition | None = None  # where this run began (None: at the start)
        self.on_chunk = on_chunk  # called after each chunk is written (progress)
        self.position: FilePosition | None = None  # how far it has read (after the first chunk)
        self.size = 0  # the file's size when this run opened it

    def saved(self) -> FilePosition | None:
        """The position the last run committed for this file and topic, if any."""
        if not self.resumable:
            return None
        raw = self.transport.store_db(POSITIONS_STORE).get(_key(self.topic, self.path))  # type: ignore[attr-defined]
        return FilePosition.from_bytes(raw) if raw is not None else None

    def _check(self, file: BinaryIO, saved: FilePosition, digest: Any) -> None:
        """Hash the part read before (into ``digest``) and refuse a file that is not that file."""
        stat = os.fstat(file.fileno())
        done = f"an earlier run read {saved.lines:,} lines ({saved.offset:,} bytes) of it"
        hint = "hint: pass --reread to produce it again from its start, or a new --data-dir"
        if (stat.st_dev, stat.st_ino) != (saved.device, saved.inode):
            raise FileChanged(f"input file {self.shown} is another file than the one {done}; {hint}")
        if stat.st_size < saved.offset:
            raise FileChanged(f"input file {self.shown} is shorter ({stat.st_size:,} bytes) than what {done}; {hint}")
        left = saved.offset
        while left:
            block = file.read(min(_HASH_BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        if digest.hexdigest() != saved.sha256:
            raise FileChanged(f"input file {self.shown} changed in the part {done}; {hint}")

    async def feed(self) -> int:
        """Produce the lines not produced yet; returns how many records were sent."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as file:
            stat = os.fstat(file.fileno())
            self.size = stat.st_size
            position = FilePosition(stat.st_dev, stat.st_ino, 0, 0, digest.hexdigest())
            saved = None if self.reread else self.saved()
            if saved is not None:
                self._check(file, saved, digest)
                position = saved
                self.start = saved
                if saved.offset == stat.st_size:
                    logger.warning("input %s was read to its end by an earlier run (%s lines); nothing new to "
                                   "produce (--reread produces it again)", self.shown, f"{saved.lines:,}")
                else:
                    logger.info("input %s: going on from line %d (byte %d)", self.shown, saved.lines, saved.offset)
            producer = None if self.resumable else self.transport.producer()
            if producer is not None:
                await producer.start()
            try:
                while True:
                    lines = list(islice(file, self.batch))
                    if not lines:
                        break
                    records = []
                    for line in lines:
                        digest.update(line)
                        if line.strip():
                            records.append(self.record(line))
                    position = FilePosition(position.device, position.inode,
                                            position.offset + sum(map(len, lines)),
                                            position.lines + len(lines), digest.hexdigest())
                    if producer is None:
                        await self._write(records, position)
                    elif records:
                        await producer.send_batch(records)
                    self.sent += len(records)
                    self.position = position
                    if self.on_chunk is not None:
                        self.on_chunk(self)
                if producer is not None:
                    await producer.flush()
                else:
                    if self.reread and position.offset == 0:
                        await self._write([], position)  # an empty file read again: forget the old position
                    await self.transport.log.flush()  # type: ignore[attr-defined]  # every chunk durable now
            finally:
                if producer is not None:
                    await producer.stop()
        return self.sent

    async def _write(self, records: list[ProducerRecord], position: FilePosition) -> None:
        # Not synced: atomic all the same (records and position stand or fall together), and a
        # process crash loses neither; feed() syncs once at the end of the file.
        async with self.transport.transaction(sync=False) as txn:  # type: ignore[attr-defined]
            for record in records:
                txn.send(record)
            txn.put(POSITIONS_STORE, _key(self.topic, self.path), position.to_bytes())

