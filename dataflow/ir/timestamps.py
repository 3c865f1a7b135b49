"""Reading timestamps written in a declared unit as epoch milliseconds, exactly.

A topic's records may write time as epoch seconds, milliseconds, microseconds or
nanoseconds (int or float), as ISO-8601 text, or (from Python) as a `datetime`. The unit
is declared on the field's type (`timestamp(s)`), never guessed. Inside a pipeline every
timestamp is an int of epoch milliseconds.

Rounding: a value finer than a millisecond is rounded DOWN (towards the past) to a
whole millisecond. Rounding down keeps every event in the window its exact time falls
in: windows start and end on whole milliseconds, so `floor(t)` is in `[start, end)`
exactly when `t` is. A float is read as the decimal number it prints as (its shortest
repr, which is the text a JSON producer wrote whenever that had at most 15 significant
digits), so `1700000000.123` seconds is 1700000000123 ms, not ...122 from binary error.

>>> to_epoch_ms(1700000000.123, "s"), to_epoch_ms(1700000000, "s"), to_epoch_ms(1999, "us")
(1700000000123, 1700000000000, 1)
>>> to_epoch_ms("2024-01-01T00:00:00.123Z"), to_epoch_ms(-1, "us")
(1704067200123, -1)
>>> to_epoch_ms(1700000000.123)
Traceback (most recent call last):
ValueError: expected epoch milliseconds, got 1700000000.123 (a fraction of a millisecond); if it is epoch seconds, declare the field timestamp(s)
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
#: per unit: (multiply an int by, floor-divide an int by, the Decimal factor to milliseconds)
_SCALE = {"s": (1000, 1, Decimal(1000)), "ms": (1, 1, Decimal(1)), "us": (1, 1000, Decimal("0.001")),
          "ns": (1, 1_000_000, Decimal("0.000001"))}


def to_epoch_ms(value: Any, unit: str = "ms") -> int:
    """Epoch milliseconds from a number in `unit`, ISO-8601 text or a datetime; ValueError if none."""
    kind = type(value)
    if kind is int:
        mul, div, _ = _SCALE[unit]
        return value * mul if div == 1 else value // div
    if kind is float:
        return _float_ms(value, unit)
    if kind is str:
        return parse_iso(value, unit)
    if isinstance(value, datetime):
        return datetime_ms(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a timestamp (epoch {unit} or ISO-8601 text), got {_kind(value)}")
    return to_epoch_ms(int(value), unit)


def _float_ms(value: float, unit: str) -> int:
    if not math.isfinite(value):
        raise ValueError(f"expected a timestamp, got {value!r}")
    if value.is_integer():
        return to_epoch_ms(int(value), unit)
    if unit == "ms":
        # The most common mistake by far: epoch seconds from time.time() or a JSON producer.
        raise ValueError(f"expected epoch milliseconds, got {value!r} (a fraction of a millisecond); "
                         "if it is epoch seconds, declare the field timestamp(s)")
    if unit == "s":
        ms = round(value * 1000)
        # Below 2**53 every whole ms is a float, so equality says the decimal it prints as has
        # at most 3 places and ms is exact; beyond, neighbouring ms compare equal.
        if abs(ms) < 2 ** 53 and ms / 1000 == value:
            return ms
    return math.floor(Decimal(repr(value)) * _SCALE[unit][2])


def parse_iso(text: str, unit: str = "ms") -> int:
    """Epoch milliseconds from ISO-8601 text (UTC when no zone is given), rounded down.

    >>> parse_iso("1700000000")
    Traceback (most recent call last):
    ValueError: expected a timestamp (epoch ms or ISO-8601 text), got '1700000000', a number written as text: it \
looks like epoch seconds; a timestamp(s) field reads it written as a JSON number (no quotes), or convert it: \
to_int(...) * 1000
    """
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        problem = f"expected a timestamp (epoch {unit} or ISO-8601 text), got {text[:60]!r}"
        if _NUMBER_TEXT.fullmatch(text.strip()):
            problem += _number_text_hint(text.strip())
        raise ValueError(problem) from None
    return datetime_ms(dt)


_NUMBER_TEXT = re.compile(r"[+-]?\d+(\.\d*)?")
_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
#: how to make epoch ms of the text in an expression, where the result stays an int
_CONVERT = {"s": "to_int(...) * 1000", "ms": "to_int(...)"}


def _number_text_hint(text: str) -> str:
    """Digits in quotes are not ISO-8601 but a number a producer wrote as text (a common JSON
    habit). Its unit is not guessed for the value -- only named in the message, by its size
    in digits around the present (10 digits: seconds, 13: milliseconds, 16: micro, 19: nano)."""
    digits = len(text.lstrip("+-").split(".")[0])
    unit = "s" if digits <= 11 else "ms" if digits <= 14 else "us" if digits <= 17 else "ns"
    declared = "timestamp" if unit == "ms" else f"timestamp({unit})"
    # to_int drops a fraction, so it is offered only for whole numbers
    convert = f", or convert it: {_CONVERT[unit]}" if unit in _CONVERT and "." not in text else ""
    return (f", a number written as text: it looks like epoch {_UNIT_WORDS[unit]}; a {declared} field reads it "
            f"written as a JSON number (no quotes){convert}")


def datetime_ms(dt: datetime) -> int:
    """Epoch milliseconds of a datetime; a naive one is UTC, as ISO text without a zone is."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - EPOCH) // _MS


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "a list", bool: "a bool"}.get(type(v), type(v).__name__)
