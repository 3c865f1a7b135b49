"""Window arithmetic: which windows an event falls in, and when a window closes or expires.

All times are epoch milliseconds. Tumbling and hopping windows are half-open,
``[start, start + size)``, aligned to the epoch. A sliding window belongs to each event:
``[t - size, t]`` holds the key's events from ``size`` before the event up to it, both
ends included (Kafka Streams' sliding windows).

A window *closes* once the partition's stream time (the highest event time seen)
reaches ``end + grace``: events for it after that are late and are dropped (counted).
It is *deleted* once stream time reaches ``end + retention``, where the retention is
``expires`` (default one day), and never shorter than the grace.

>>> w = WindowSpec("hopping", size=10_000, step=5_000)
>>> w.starts(12_000)
[5000, 10000]
>>> WindowSpec("tumbling", size=60_000, grace=10_000).is_closed(0, stream_time=70_000)
True
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import nodes as n

__all__ = ["DEFAULT_EXPIRES_MS", "WindowSpec"]

DEFAULT_EXPIRES_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class WindowSpec:
    kind: str  # tumbling | hopping | sliding
    size: int
    step: int | None = None
    grace: int = 0
    expires: int | None = None

    @classmethod
    def of(cls, node: n.Window) -> WindowSpec:
        if node.window == "session":
            raise ValueError(f"{node.loc}: a session window has no fixed windows (see runtime.sessions)")
        return cls(node.window, node.size_ms, node.step_ms, node.grace_ms, node.expires_ms)

    @property
    def span(self) -> int:
        """How many milliseconds a window covers: a sliding window includes both ends."""
        return self.size + 1 if self.kind == "sliding" else self.size

    @property
    def retention(self) -> int:
        return max(self.grace, DEFAULT_EXPIRES_MS if self.expires is None else self.expires)

    def starts(self, ts: int) -> list[int]:
        """The starts of the tumbling or hopping windows that hold time ``ts``, oldest first."""
        if self.kind == "tumbling":
            return [ts - ts % self.size]
        step = self.step or self.size
        last = ts - ts % step
        first = last
        while first - step > ts - self.size:
            first -= step
        return list(range(first, last + 1, step))

    def end(self, start: int) -> int:
        """The first time after the window."""
        return start + self.span

    def is_closed(self, start: int, stream_time: int | None) -> bool:
        return stream_time is not None and self.end(start) + self.grace <= stream_time

    def is_expired(self, start: int, stream_time: int | None) -> bool:
        return stream_time is not None and self.end(start) + self.retention <= stream_time

    def closed_before(self, stream_time: int) -> int:
        """Windows starting before this are closed at ``stream_time``."""
        return stream_time - self.grace - self.span + 1

    def expired_before(self, stream_time: int) -> int:
        """Windows starting before this have expired at ``stream_time``."""
        return stream_time - self.retention - self.span + 1
