"""Storage faults in words: what happened, where, and what to do.

LevelDB (plyvel) reports every fault as ``IOError``/``CorruptionError`` with a byte-string
message, and Python as ``OSError`` with an errno. :func:`storage_error` sorts both into the
few faults a user can act on -- a full disk, a read-only or forbidden directory, a directory
held by another process, corrupt files -- and words each as one line with a hint.

Which process holds a directory: LevelDB's ``LOCK`` file is empty, so whoever opens a
directory writes its PID and command line into ``<dir>/OWNER`` (:func:`claim`); a refused
open reads it back (:func:`holder`) while that process is still alive.

>>> import errno
>>> str(storage_error(OSError(errno.ENOSPC, "No space left on device"), "the local log", "/data/log"))
'the local log /data/log: the disk is full (No space left on device); hint: free space on that disk, or pass a --data-dir on another disk; rerunning the same command goes on from the last commit'
>>> storage_error(OSError(errno.EROFS, "Read-only file system"), "the local log", "/data/log").kind
'read-only'
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["StorageError", "claim", "classify", "holder", "release", "storage_error"]

_FULL = ("No space left on device", "Disk quota exceeded")
_READ_ONLY = ("Read-only file system",)
_FORBIDDEN = ("Permission denied", "Operation not permitted")
_HELD = ("Resource temporarily unavailable", "already held by process")
_ERRNO_KINDS = {errno.ENOSPC: "disk-full", errno.EDQUOT: "disk-full", errno.EROFS: "read-only",
                errno.EACCES: "forbidden", errno.EPERM: "forbidden"}


class StorageError(Exception):
    """A storage fault, worded for the user; ``kind`` is one of ``disk-full``, ``read-only``,
    ``forbidden``, ``locked``, ``corrupt`` or ``io``."""

    def __init__(self, message: str, kind: str, path: str | Path) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = Path(path)


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text


def classify(exc: BaseException) -> str:
    """The kind of a storage exception (see :class:`StorageError`).

    >>> import plyvel
    >>> classify(plyvel.CorruptionError(b"Corruption: bad block"))
    'corrupt'
    """
    if isinstance(exc, StorageError):
        return exc.kind
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return _ERRNO_KINDS[exc.errno]
    text = _text(exc)
    if type(exc).__name__ == "CorruptionError" or text.startswith("Corruption:"):
        return "corrupt"
    for kind, needles in (("disk-full", _FULL), ("read-only", _READ_ONLY), ("forbidden", _FORBIDDEN),
                          ("locked", _HELD)):
        if any(n in text for n in needles):
            return kind
    return "io"


def _detail(exc: BaseException) -> str:
    """The system's own words, without LevelDB's prefix and the path it repeats."""
    text = _text(exc)
    for prefix in ("IO error: ", "Corruption: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text.rsplit(": ", 1)[-1] if ": " in text and classify(exc) != "corrupt" else text


def storage_error(exc: BaseException, what: str, path: str | Path, *, corrupt_hint: str | None = None,
                  where: str | None = None) -> StorageError:
    """``exc`` as a :class:`StorageError` about ``what`` (e.g. "the local log") at ``path``.

    ``where`` narrows a corrupt file down (e.g. "topic orders partition 2"); ``corrupt_hint`` is what to
    do about corrupt files of this kind of storage.
    """
    kind = classify(exc)
    # Which operation met a full or read-only disk does not change what to do; which partition
    # is corrupt does.
    at = f"{what} {path}" + (f" ({where})" if where and kind in ("corrupt", "io") else "")
    detail = _detail(exc)
    if kind == "disk-full":
        message = (f"{at}: the disk is full ({detail}); hint: free space on that disk, or pass a --data-dir on "
                   "another disk; rerunning the same command goes on from the last commit")
    elif kind == "read-only":
        message = (f"{at} cannot be written: the file system is read-only; hint: pass a --data-dir on a "
                   "writable disk (or remount it read-write)")
    elif kind == "forbidden":
        message = (f"{at} cannot be written: permission denied; hint: give this user write access to it, "
                   "or pass a --data-dir it can write")
    elif kind == "locked":
        owner = holder(path)
        by = f"process {owner}" if owner else "another process"
        message = (f"{at} is in use by {by}; hint: stop it, or pass a different --data-dir "
                   "(one process per data directory)")
    elif kind == "corrupt":
        message = f"{at} is corrupt: {detail}; hint: {corrupt_hint or 'restore it from a backup'}"
    else:
        message = f"{at}: {detail}"
    return StorageError(message, kind, path)


# -- who holds a directory ----------------------------------------------------------------

def _owner_file(path: str | Path) -> Path:
    # Inside the LevelDB directory: LevelDB (and its repair) leaves files it does not name alone.
    return Path(path) / "OWNER"


def claim(path: str | Path) -> None:
    """Record this process as the holder of the LevelDB directory ``path`` (best effort)."""
    try:
        cmdline = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        cmdline = ""
    try:
        _owner_file(path).write_text(f"{os.getpid()}\n{cmdline}\n")
    except OSError:
        pass  # naming the holder is a courtesy; a directory we can open is what matters


def release(path: str | Path) -> None:
    """Forget the holder record written by :func:`claim` if it is ours."""
    owner = _owner_file(path)
    try:
        if owner.read_text().split("\n", 1)[0] == str(os.getpid()):
            owner.unlink()
    except OSError:
        pass


def holder(path: str | Path) -> str | None:
    """``"PID (command)"`` of the live process that claimed ``path``, or None if unknown."""
    try:
        pid_text, _, cmdline = _owner_file(path).read_text().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return f"{pid} (this process)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # it died; the record is stale
    except PermissionError:
        pass  # alive, owned by another user
    cmdline = " ".join(cmdline.split())  # one line, whatever the arguments held
    return f"{pid} ({cmdline})" if cmdline else str(pid)
