"""Check and repair a corrupt local log, keeping every readable record.

The log never deletes records, so each partition's offsets run from 0 without gaps: after
LevelDB's own repair (``plyvel.repair_db``, which rebuilds the tables from the blocks it can
still read and moves the damaged files to ``log/lost``), a gap in a partition's offsets is
exactly what was lost. Each lost range is reported with the consumer groups that had not
read it yet (for them, those records are gone; for the others, nothing changes).

The end of a partition is known from its committed offsets too: when the last records of a
partition are lost, the log's end stays at the highest committed offset (see
:meth:`~dataflow.transport.local.LocalLog.open`), so new records never slip under a commit.

>>> import tempfile
>>> check_log(tempfile.mkdtemp()).corrupt
False
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import plyvel

from ..state.faults import storage_error
from .base import TP, LogLockedError, TransportError

__all__ = ["LostRange", "RepairReport", "check_log", "repair_log"]

_OFFSET = struct.Struct(">Q")


@dataclass(frozen=True)
class LostRange:
    """Offsets ``first..last`` (inclusive) of ``tp`` that could not be kept."""

    tp: TP
    first: int
    last: int
    groups: tuple[str, ...]  # the consumer groups with a committed offset on tp
    unread_by: tuple[str, ...]  # those whose committed offset had not passed them

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        if self.unread_by:
            who = f"not yet read by {', '.join(self.unread_by)}: those records are gone"
        elif self.groups:
            who = f"already read by {', '.join(self.groups)}"
        else:
            who = "no consumer group has committed on this partition"
        span = f"offset {self.first}" if self.first == self.last else f"offsets {self.first}-{self.last}"
        return (f"{self.tp.topic} partition {self.tp.partition}: lost {span} "
                f"({self.count} record{'s' if self.count != 1 else ''}; {who})")


@dataclass
class RepairReport:
    path: Path
    corrupt: bool
    detail: str = ""  # LevelDB's words for the first corruption found
    records: int = 0  # readable records after the repair
    lost: list[LostRange] = field(default_factory=list)
    lost_commits: list[str] = field(default_factory=list)  # "group on topic[partition]" whose commit is gone
    restored_topics: list[str] = field(default_factory=list)  # metadata rebuilt from their records

    def lines(self) -> list[str]:
        """The report as a person reads it."""
        if not self.corrupt:
            return [f"local log {self.path}: no corruption found ({self.records:,} records readable); nothing to repair"]
        out = [f"local log {self.path} was corrupt ({self.detail}); repaired: {self.records:,} records kept"]
        out.extend(f"  {lost}" for lost in self.lost)
        if not self.lost:
            out.append("  no record was lost")
        out.extend(f"  lost the committed offset of {c}: that group reads the partition again from the start"
                   for c in self.lost_commits)
        out.extend(f"  rebuilt the metadata of topic {t} from its records" for t in self.restored_topics)
        out.append(f"  the damaged files are kept in {self.path / 'lost'}")
        return out


def _open(path: Path) -> plyvel.DB:
    if not (path / "CURRENT").is_file():
        raise TransportError(f"no local log in {path}; hint: pass the --data-dir of a run")
    try:
        return plyvel.DB(str(path))
    except plyvel.Error as exc:
        error = storage_error(exc, "local log", path, corrupt_hint="repair it with `dataflow repair`")
        if error.kind == "locked":
            raise LogLockedError(str(error)) from None
        if error.kind == "corrupt":  # so damaged it does not open: the repair is the way in
            raise _Unopenable(str(exc)) from None
        raise TransportError(str(error)) from None


class _Unopenable(Exception):
    pass


def _verify(db: plyvel.DB) -> tuple[int, str | None]:
    """(records read, None) if every block reads back with a good checksum, else the error."""
    count = 0
    try:
        for key in db.iterator(include_value=False, verify_checksums=True, fill_cache=False):
            count += key.startswith(b"m/")
    except plyvel.Error as exc:
        text = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return count, text.removeprefix("Corruption: ")
    return count, None


def check_log(data_dir: str | Path) -> RepairReport:
    """Read every block of ``<data_dir>/log`` (checksums verified); change nothing."""
    path = Path(data_dir) / "log"
    if not path.exists():
        return RepairReport(path, corrupt=False)
    try:
        db = _open(path)
    except _Unopenable as e:
        return RepairReport(path, corrupt=True, detail=str(e))
    try:
        records, error = _verify(db)
    finally:
        db.close()
    return RepairReport(path, corrupt=error is not None, detail=error or "", records=records)


def _read_what_we_can(db: plyvel.DB, prefix: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    try:
        for key, value in db.iterator(prefix=prefix):
            out[key] = value
    except plyvel.Error:
        pass  # what is readable before the damage; the rest is compared after the repair
    return out


def repair_log(data_dir: str | Path) -> RepairReport:
    """Repair ``<data_dir>/log`` in place if it is corrupt, and report what was lost."""
    report = check_log(data_dir)
    if not report.corrupt:
        return report
    path = report.path
    before_commits: dict[bytes, bytes] = {}
    before_topics: dict[bytes, bytes] = {}
    try:
        db = _open(path)
    except _Unopenable:
        pass
    else:
        before_commits = _read_what_we_can(db, b"c/")
        before_topics = _read_what_we_can(db, b"t/")
        db.close()
    try:
        plyvel.repair_db(str(path), paranoid_checks=True)
    except plyvel.Error as exc:
        raise TransportError(str(storage_error(exc, "local log", path, corrupt_hint="restore it from a backup"))) \
            from None
    db = _open(path)
    try:
        records, error = _verify(db)
        if error is not None:
            raise TransportError(f"local log {path} is still corrupt after the repair ({error}); "
                                 "hint: restore it from a backup")
        report.records = records
        _account(db, report, before_commits, before_topics)
    finally:
        db.close()
    return report


def _account(db: plyvel.DB, report: RepairReport, before_commits: dict[bytes, bytes],
             before_topics: dict[bytes, bytes]) -> None:
    """Fill in the lost ranges, commits and topic metadata by reading the repaired log."""
    commits: dict[TP, dict[str, int]] = {}
    for key, raw in db.iterator(prefix=b"c/"):
        _, topic, partition, group = key.decode().split("/", 3)
        commits.setdefault(TP(topic, int(partition)), {})[group] = _OFFSET.unpack(raw)[0]
    for key in sorted(set(before_commits) - set(db.iterator(prefix=b"c/", include_value=False))):
        _, topic, partition, group = key.decode().split("/", 3)
        report.lost_commits.append(f"group {group} on {topic} partition {partition}")
    # Offsets present per partition, as a walk over the keys (one partition is one key range).
    present: dict[TP, list[int]] = {}
    seen_partitions: dict[str, int] = {}
    for key in db.iterator(prefix=b"m/", include_value=False):
        _, topic, partition, raw = key.split(b"/", 3)
        tp = TP(topic.decode(), int(partition))
        offset = _OFFSET.unpack(raw)[0]
        runs = present.setdefault(tp, [])
        if runs and runs[-1] + 1 == offset:
            runs[-1] = offset
        else:
            runs.extend((offset, offset))  # a new run: [first, last]
        seen_partitions[tp.topic] = max(seen_partitions.get(tp.topic, 0), tp.partition + 1)
    topics = {key[2:].decode() for key in db.iterator(prefix=b"t/", include_value=False)}
    batch = db.write_batch(sync=True)
    for topic, partitions in sorted(seen_partitions.items()):
        if topic not in topics:
            old = before_topics.get(f"t/{topic}".encode())
            meta = msgpack.unpackb(old) if old else {"partitions": partitions, "compacted": False}
            batch.put(f"t/{topic}".encode(), msgpack.packb(meta))
            report.restored_topics.append(topic)
    batch.write()
    for tp in sorted(set(present) | set(commits)):
        runs = present.get(tp, [])
        groups = commits.get(tp, {})
        expected = max([runs[-1] + 1 if runs else 0, *groups.values()])
        position = 0
        for first, last in [*zip(runs[::2], runs[1::2], strict=True), (expected, expected)]:
            if first > position:
                unread = tuple(sorted(g for g, c in groups.items() if c < first))
                report.lost.append(LostRange(tp, position, first - 1, tuple(sorted(groups)), unread))
            position = last + 1
