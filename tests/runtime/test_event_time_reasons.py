"""Why an event time is refused, in words a person reads in a dead letter (and in few characters)."""
from __future__ import annotations

import pytest

from dataflow.ir.timestamps import to_epoch_ms
from dataflow.runtime.event_time import EventTimeGuard

GUARD = EventTimeGuard(0, 86_400_000, clock=lambda: 1_700_000_000.0)


@pytest.mark.parametrize(("value", "unit", "reason"), [
    (1e300, "s", "event time 1e+303 ms is out of range: after the year 9999"),
    (-1e300, "ms", "event time -1e+300 ms is out of range: before the year 1"),
    (10**40, "ms", "event time 1e+40 ms is out of range: after the year 9999"),
    (2.6e17, "ms", "event time 2.6e+17 ms is out of range: after the year 9999"),
    (253402300799, "s", "event time 9999-12-31T23:59:59Z is more than max_future_skew (1d) after the wall clock "
                        "(2023-11-14T22:13:20Z)"),
    (-1, "ms", "event time 1969-12-31T23:59:59.999Z is before min_event_time (1970-01-01T00:00:00Z)"),
])
def test_a_time_out_of_range_says_why_compactly(value: float, unit: str, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        GUARD(to_epoch_ms(value, unit))
    assert str(e.value) == reason
