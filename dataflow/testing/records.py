"""The records a test pipes into a pipeline and reads back out of it.

>>> InputRecord({"amount": 5}, key="alice", timestamp=1_000, headers={"trace": "t-1"})
InputRecord(value={'amount': 5}, key='alice', timestamp=1000, headers={'trace': 't-1'})
>>> OutputRecord("alice", {"total": 5}, 1_000).pair
('alice', {'total': 5})
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeadLetter", "Headers", "InputRecord", "OutputRecord", "encode_headers"]

#: Headers as a test writes them: a mapping, or ``(name, value)`` pairs when a name repeats;
#: a value is text or bytes.
Headers = Mapping[str, "str | bytes"] | Iterable[tuple[str, "str | bytes"]]


@dataclass(frozen=True)
class InputRecord:
    """One record to pipe into a source topic.

    ``value`` and ``key`` are encoded as the topic declares (JSON by default); ``bytes`` are
    sent as they are (to see what the pipeline does with a malformed record). Without a
    ``timestamp`` (epoch milliseconds) the record is stamped with the driver's wall clock.
    """

    value: Any
    key: Any = None
    timestamp: int | None = None
    headers: Headers | None = None


@dataclass(frozen=True)
class OutputRecord:
    """One record read from a topic: decoded ``key`` and ``value``, ``timestamp`` (epoch
    milliseconds), ``headers`` (text) and the ``partition`` it was written to."""

    key: Any
    value: Any
    timestamp: int
    headers: dict[str, str] = field(default_factory=dict)
    partition: int = 0

    @property
    def pair(self) -> tuple[Any, Any]:
        """``(key, value)``."""
        return self.key, self.value


@dataclass(frozen=True)
class DeadLetter:
    """A record the pipeline could not process, as it was received, and why.

    ``stage`` is where it failed (``decode``, ``validate``, or the name of a step),
    ``reason`` the error, ``source`` the ``topic[partition]@offset`` it was read from (empty
    for a record made by a timer). ``key`` and ``value`` are the record's JSON, or its text
    when it is not JSON.
    """

    key: Any
    value: Any
    stage: str
    reason: str
    source: str
    timestamp: int
    headers: dict[str, str] = field(default_factory=dict)


def encode_headers(headers: Headers | None) -> tuple[tuple[str, bytes], ...]:
    """Headers as a transport carries them.

    >>> encode_headers({"trace": "t-1", "raw": b"\\x00"})
    (('trace', b't-1'), ('raw', b'\\x00'))
    """
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, (str, bytes)):
            raise TypeError(f"a header is a name (str) and a value (str or bytes), got {name!r}: {value!r}")
        out.append((name, value.encode() if isinstance(value, str) else value))
    return tuple(out)
