"""The largest numbers a pipeline may hold, and the one-line problem with a value past them.

Every number in a pipeline ends up somewhere with a size: a Kafka partition count, a
64-bit integer in a record or a state store, a duration in milliseconds. A number past
these bounds is a typo (`partitions 99999999999`) that would otherwise pass `check` and
then exhaust memory at run time, so the frontends and the planner refuse it where it is
written. docs/language.md ("Limits") lists the bounds; a test holds each.

>>> partitions_problem(99_999_999_999)
'partitions must be between 1 and 10000, not 99999999999'
>>> duration_problem(parse_duration("36501d"))
'a duration is at most 36500d (about 100 years), not 36501d'
>>> int_literal_problem("9" * 30)
'the whole number 999999999999999999999999999999 does not fit in 64 bits (at most 9223372036854775807)'
"""
from __future__ import annotations

import math
from typing import Any

from .durations import format_duration, parse_duration

#: whole numbers are signed 64-bit, as in Kafka (a Java long), msgpack and Arrow
INT64_MAX = 2**63 - 1
#: partitions of one topic. Kafka has no hard limit per topic, but its guidance is a few
#: thousand partitions per broker; a topic of more than 10,000 is almost surely a typo, and
#: the embedded log and the runtime keep state per partition.
MAX_PARTITIONS = 10_000
#: Kafka's CreateTopics request holds the replication factor in 16 bits
MAX_REPLICATION_FACTOR = 32_767
#: Kafka's client settings in milliseconds or bytes are Java ints
JAVA_INT_MAX = 2**31 - 1
#: about 100 years: longer than any window, grace, join bound or interval can mean
MAX_DURATION_MS = 36_500 * 86_400_000
#: characters in one string literal; a literal is written into records, and Kafka's default
#: record limit is 1 MB
MAX_STRING_LENGTH = 100_000
#: records per batch, and tasks per worker: each is held in memory at once
MAX_BATCH_SIZE = 1_000_000
MAX_CONCURRENCY = 1_000

#: whole-number settings and their (lowest, highest) values
INT_SETTING_BOUNDS = {
    "partitions": (1, MAX_PARTITIONS),
    "batch_size": (1, MAX_BATCH_SIZE),
    "commit_every": (1, JAVA_INT_MAX),
    "concurrency": (1, MAX_CONCURRENCY),
    "kafka_replication_factor": (1, MAX_REPLICATION_FACTOR),
    "kafka_session_timeout_ms": (0, JAVA_INT_MAX),
    "kafka_heartbeat_interval_ms": (0, JAVA_INT_MAX),
    "kafka_linger_ms": (0, JAVA_INT_MAX),
    "kafka_max_batch_size": (0, JAVA_INT_MAX),
    "kafka_fetch_max_wait_ms": (0, JAVA_INT_MAX),
}
#: settings that hold a duration in seconds (a float)
DURATION_SETTING_NAMES = ("commit_interval", "max_task_idle", "max_future_skew")


def shown_number(text: str) -> str:
    """A number as a message shows it: long ones shortened, with their length."""
    return text if len(text) <= 40 else f"{text[:12]}...{text[-4:]} ({len(text)} characters)"


def int_literal_problem(digits: str) -> str | None:
    """Why the written whole number `digits` cannot be used, or None (checked before `int()`,
    which refuses numbers of more than 4,300 digits with an error of its own)."""
    significant = digits.lstrip("0")
    if len(significant) > 19 or (significant and int(significant) > INT64_MAX):
        return f"the whole number {shown_number(digits)} does not fit in 64 bits (at most {INT64_MAX})"
    return None


def float_literal_problem(text: str) -> str | None:
    """Why the written number `text` is no 64-bit float, or None: it overflows to infinity or
    underflows to zero although it is not zero."""
    value = float(text)
    if math.isinf(value):
        return f"the number {shown_number(text)} is too large for a 64-bit float (at most about 1.8e308)"
    mantissa = text.lower().split("e")[0]
    if value == 0.0 and mantissa.strip("0.") != "":
        return f"the number {shown_number(text)} is too small for a 64-bit float: it would be 0"
    return None


def duration_digits_problem(text: str) -> str | None:
    """Why a written duration such as `30s` is too long, or None (checked before `int()`)."""
    digits = text.rstrip("smhd")
    if len(digits.lstrip("0")) > 19:
        return f"a duration is at most {format_duration(MAX_DURATION_MS)} (about 100 years), not {shown_number(text)}"
    return duration_problem(parse_duration(text))


def duration_problem(ms: int | float) -> str | None:
    """Why a duration of `ms` milliseconds is too long, or None."""
    if ms > MAX_DURATION_MS:
        return (f"a duration is at most {format_duration(MAX_DURATION_MS)} (about 100 years), "
                f"not {format_duration(int(ms))}")
    return None


def partitions_problem(count: int) -> str | None:
    """Why `count` is no partition count, or None."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        return f"partitions must be between 1 and {MAX_PARTITIONS}, not {count}"
    return None


def setting_problem(name: str, value: Any) -> str | None:
    """Why a setting's (already coerced) value is out of range, or None.

    >>> setting_problem("kafka_replication_factor", 40_000)
    'kafka_replication_factor must be between 1 and 32767, not 40000'
    >>> setting_problem("commit_interval", 10.0) is None
    True
    """
    if value is None or isinstance(value, bool):
        return None
    if name in INT_SETTING_BOUNDS and isinstance(value, int):
        low, high = INT_SETTING_BOUNDS[name]
        if not low <= value <= high:
            return f"{name} must be between {low} and {high}, not {value}"
    if name in DURATION_SETTING_NAMES and isinstance(value, (int, float)):
        if math.isnan(value) or value * 1000 > MAX_DURATION_MS:
            return f"{name} is at most {format_duration(MAX_DURATION_MS)} (about 100 years), not {value} seconds"
    return None


__all__ = ["INT64_MAX", "MAX_PARTITIONS", "MAX_REPLICATION_FACTOR", "MAX_DURATION_MS", "MAX_STRING_LENGTH",
           "INT_SETTING_BOUNDS", "int_literal_problem", "float_literal_problem", "duration_digits_problem",
           "duration_problem", "partitions_problem", "setting_problem", "shown_number"]
