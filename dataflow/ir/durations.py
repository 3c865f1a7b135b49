"""Durations as integer milliseconds: `30s`, `5m`, `1h`, `250ms`, `1d`."""
from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: str | int | float | timedelta) -> int:
    """Milliseconds from `'1m'`, a number of seconds, or a timedelta.

    >>> parse_duration("1m"), parse_duration("250ms"), parse_duration(2.5)
    (60000, 250, 2500)
    """
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return int(round(value * 1000))
    match = _PATTERN.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r}; write it like 30s, 5m, 1h, 250ms or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact spelling.

    >>> format_duration(60000), format_duration(90000), format_duration(1500)
    ('1m', '90s', '1500ms')
    """
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
