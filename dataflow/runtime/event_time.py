"""Guards on event time: a record whose time is implausible is dead-lettered, never used.

Event time is derived in three places: when a source record is decoded (its `event_time`
field, or the message timestamp), in an `event_time` stage, and when a window reads its
`on` field. Each applies the same range:

- not before `min_event_time` (default the epoch: a negative time is a mistake), and
- not more than `max_future_skew` (default 1d) after the WALL CLOCK.

Why the wall clock and not stream time: stream time only moves forward with the data. A
genuine gap in the data longer than the skew (a producer down for a weekend) would make
every later record look "too far ahead" of the stream time it left behind, and each would
be refused, forever. The wall clock keeps moving, so only records from the future (a
year-9999 date, microseconds read as milliseconds) are refused, and one such record can
no longer push stream time ahead and make the good records after it "late".

>>> guard = EventTimeGuard(0, 86_400_000, clock=lambda: 1_700_000_000.0)
>>> guard(1_700_000_000_000)
1700000000000
>>> guard(253402300799000)
Traceback (most recent call last):
ValueError: event time 9999-12-31T23:59:59Z is more than max_future_skew (1d) after the wall clock (2023-11-14T22:13:20Z)
>>> guard("2023-11-14T22:13:20Z")
1700000000000
>>> guard(None, "event time expression")
Traceback (most recent call last):
ValueError: event time expression is null
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from ..ir.durations import format_duration
from ..ir.settings import Settings
from ..ir.timestamps import parse_iso, to_epoch_ms


class EventTimeGuard:
    """Event time in epoch ms from a value (int, ISO text, datetime), or ValueError with the reason."""

    def __init__(self, low_ms: int, skew_ms: int, clock: Callable[[], float] = time.time):
        self.low_ms = low_ms
        self.skew_ms = skew_ms
        self.clock = clock

    @classmethod
    def of(cls, settings: Settings | None) -> "EventTimeGuard":
        settings = settings or Settings()
        return cls(parse_iso(settings.min_event_time), round(settings.max_future_skew * 1000))

    def high_ms(self) -> int:
        """The latest event time accepted now (read once per batch where records are many)."""
        return int(self.clock() * 1000) + self.skew_ms

    def __call__(self, value: Any, what: str = "event time") -> int:
        if value is None:
            raise ValueError(f"{what} is null")
        ts = value if type(value) is int else to_epoch_ms(value)
        if ts < self.low_ms or ts > self.high_ms():
            raise ValueError(self.reason(ts))
        return ts

    def reason(self, ts: int) -> str:
        """Why `ts` is refused (it is out of range).

        >>> EventTimeGuard(0, 1000).reason(int(1e300))
        'event time 1e+300 ms is out of range: after the year 9999'
        """
        if _iso(ts) is None:  # no calendar date: say so, in a few characters (1e300 has 301 digits)
            return f"event time {compact_ms(ts)} ms is out of range: {'after' if ts > 0 else 'before'} the year " \
                   f"{9999 if ts > 0 else 1}"
        if ts < self.low_ms:
            return f"event time {_iso(ts)} is before min_event_time ({_iso(self.low_ms)})"
        now = int(self.clock() * 1000)
        return (f"event time {_iso(ts)} is more than max_future_skew ({format_duration(self.skew_ms)}) "
                f"after the wall clock ({_iso(now)})")


def _iso(ms: int) -> str | None:
    """ISO-8601 text of a time, None when it is beyond what a datetime holds (years 1 to 9999)."""
    try:
        text = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return None
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def compact_ms(ms: int) -> str:
    """An int as written, or in scientific notation once it is longer than a timestamp ever is.

    >>> compact_ms(1_700_000_000_000), compact_ms(-25 * 10**301), compact_ms(12345678901234567890)
    ('1700000000000', '-2.5e+302', '1.234e+19')
    """
    digits = str(abs(ms))
    if len(digits) <= 16:
        return str(ms)
    mantissa = f"{digits[0]}.{digits[1:4]}".rstrip("0").rstrip(".")
    return f"{'-' if ms < 0 else ''}{mantissa}e+{len(digits) - 1}"


def field_time(value: Any, path: tuple[str, ...]) -> int:
    """The event time in a record's field, in epoch ms (the field's declared unit was
    applied when the record was checked), or ValueError saying what is wrong."""
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise ValueError(f"event time field '{'.'.join(path)}' is missing")
        value = value[name]
    if type(value) is int:
        return value
    if value is None:
        raise ValueError(f"event time field '{'.'.join(path)}' is null")
    try:
        return to_epoch_ms(value)
    except ValueError as e:
        raise ValueError(f"event time field '{'.'.join(path)}': {e}") from None
