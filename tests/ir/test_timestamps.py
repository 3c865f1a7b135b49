"""Timestamps in declared units: any value, in any unit, reads as the right epoch ms (against
exact rational arithmetic), and what a sink writes in a unit reads back as the same time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow import Record, Timestamp
from dataflow.ir.timestamps import to_epoch_ms
from dataflow.ir.types import TIMESTAMP, Field, RecordType, timestamp_type
from dataflow.runtime.records import validator
from dataflow.runtime.units_out import unit_encoder

MS_PER = {"s": Fraction(1000), "ms": Fraction(1), "us": Fraction(1, 1000), "ns": Fraction(1, 1_000_000)}
units = st.sampled_from(sorted(MS_PER))


def floor(x: Fraction) -> int:
    return x.numerator // x.denominator


@given(units, st.integers(min_value=-(10 ** 19), max_value=10 ** 19))
def test_an_int_in_any_unit_is_its_epoch_ms_rounded_down(unit: str, value: int) -> None:
    assert to_epoch_ms(value, unit) == floor(value * MS_PER[unit])


@st.composite
def decimal_text(draw: st.DrawFn) -> str:
    """A decimal number as a JSON producer writes it, with at most 15 significant digits."""
    places = draw(st.integers(0, 6))
    digits = draw(st.integers(1, 15))
    mantissa = draw(st.integers(0, 10 ** digits - 1))
    sign = draw(st.sampled_from(["", "-"]))
    text = str(mantissa).rjust(places + 1, "0")
    return sign + (f"{text[:-places]}.{text[-places:]}" if places else text + ".0")


@given(units, decimal_text())
def test_a_float_in_any_unit_is_the_decimal_it_was_written_as(unit: str, text: str) -> None:
    value = orjson.loads(text)
    exact = Fraction(text) * MS_PER[unit]
    if unit == "ms" and exact.denominator != 1:
        with pytest.raises(ValueError, match=r"declare the field timestamp\(s\)"):
            to_epoch_ms(value, unit)
    else:
        assert to_epoch_ms(value, unit) == floor(exact)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.none() | st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))), units)
def test_iso_text_and_datetimes_read_the_same_in_every_unit(dt: datetime, zone: timezone | None, unit: str) -> None:
    aware = dt.replace(tzinfo=zone or timezone.utc)
    delta = aware - datetime(1970, 1, 1, tzinfo=timezone.utc)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    expected = micros // 1000
    assert to_epoch_ms(dt.replace(tzinfo=zone).isoformat(), unit) == expected
    assert to_epoch_ms(dt.replace(tzinfo=zone), unit) == expected


@given(units, st.integers(min_value=-9 * 10 ** 12, max_value=9 * 10 ** 12))  # ns in JSON: int64, years 1677-2262
def test_what_a_sink_writes_in_a_unit_reads_back_as_the_same_time(unit: str, ms: int) -> None:
    t = RecordType("R", (Field("at", timestamp_type(unit)),))
    encode = unit_encoder(t) or (lambda v: v)
    written = orjson.loads(orjson.dumps(encode({"at": ms})))
    assert validator(t)(written) == {"at": ms}


def test_units_are_checked_once_at_decode_and_render_in_types() -> None:
    class Reading(Record):
        at: Timestamp("s")
        seen: Timestamp("ns")
        when: datetime

    schema = Reading.__dataflow_schema__
    assert schema.describe() == "Reading { at: timestamp(s), seen: timestamp(ns), when: timestamp }"
    assert validator(schema)({"at": 1700000000.5, "seen": 1700000000123456789, "when": "1970-01-01T00:00:01Z"}) == \
        {"at": 1700000000500, "seen": 1700000000123, "when": 1000}
    # Inside a pipeline a timestamp is a timestamp: units take no part in type equality.
    assert timestamp_type("s") == TIMESTAMP and Timestamp("ms") is TIMESTAMP
    with pytest.raises(ValueError, match="unknown timestamp unit 'sec'; units are: s, ms, us, ns"):
        Timestamp("sec")


@pytest.mark.parametrize(("value", "reason"), [
    (True, "expected a timestamp (epoch s or ISO-8601 text), got a bool"),
    ("tomorrow", "expected a timestamp (epoch s or ISO-8601 text), got 'tomorrow'"),
    ({"s": 1}, "expected a timestamp (epoch s or ISO-8601 text), got an object"),
    (float("nan"), "expected a timestamp, got nan"),
    ("1700000000", "expected a timestamp (epoch s or ISO-8601 text), got '1700000000', a number written as text: it "
                   "looks like epoch seconds; a timestamp(s) field reads it written as a JSON number (no quotes), or "
                   "convert it: to_int(...) * 1000"),
    ("1700000000123", "expected a timestamp (epoch s or ISO-8601 text), got '1700000000123', a number written as "
                      "text: it looks like epoch milliseconds; a timestamp field reads it written as a JSON number "
                      "(no quotes), or convert it: to_int(...)"),
    (" 1700000000.5", "expected a timestamp (epoch s or ISO-8601 text), got ' 1700000000.5', a number written as "
                      "text: it looks like epoch seconds; a timestamp(s) field reads it written as a JSON number "
                      "(no quotes)"),
    ("1700000000123456", "expected a timestamp (epoch s or ISO-8601 text), got '1700000000123456', a number "
                         "written as text: it looks like epoch microseconds; a timestamp(us) field reads it written "
                         "as a JSON number (no quotes)"),
])
def test_values_that_are_no_timestamp_say_why(value: object, reason: str) -> None:
    with pytest.raises(ValueError) as e:
        to_epoch_ms(value, "s")
    assert str(e.value) == reason


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, ("1970-01-01T00:00:00Z", 86_400.0)),
    ({"max_future_skew": "1h"}, ("1970-01-01T00:00:00Z", 3_600.0)),
    ({"max_future_skew": "90"}, ("1970-01-01T00:00:00Z", 90.0)),
    ({"min_event_time": "2020-01-01T00:00:00Z", "max_future_skew": 0}, ("2020-01-01T00:00:00Z", 0)),
])
def test_the_guard_settings(overrides: dict[str, object], expected: tuple[str, float]) -> None:
    from dataflow.ir.settings import Settings

    s = Settings().with_overrides(overrides)
    assert (s.min_event_time, s.max_future_skew) == expected


@pytest.mark.parametrize(("overrides", "message"), [
    ({"min_event_time": "last year"}, "setting 'min_event_time' must be ISO-8601 text such as 1970-01-01T00:00:00Z, "
                                      "not 'last year'"),
    ({"max_future_skew": "soon"}, "setting 'max_future_skew' must be a duration >= 0 such as 500ms, 30s or 1.5 "
                                  "(seconds), not 'soon'"),
    ({"max_future_skew": -1}, "setting 'max_future_skew' must be a duration >= 0 such as 500ms, 30s or 1.5 "
                              "(seconds), not -1"),
])
def test_bad_guard_settings_say_what_is_expected(overrides: dict[str, object], message: str) -> None:
    from dataflow.ir.settings import Settings

    with pytest.raises(ValueError) as e:
        Settings().with_overrides(overrides)
    assert str(e.value) == message


def test_parse_time_of_digits_says_they_look_like_an_epoch_number() -> None:
    from dataflow.ir.functions import parse_time

    with pytest.raises(ValueError) as e:
        parse_time("1700000000")
    assert str(e.value) == (
        "expected a timestamp (epoch ms or ISO-8601 text), got '1700000000', a number written as text: it looks like "
        "epoch seconds; a timestamp(s) field reads it written as a JSON number (no quotes), or convert it: "
        "to_int(...) * 1000")


def test_a_float_of_seconds_past_2_to_the_53_ms_is_still_the_decimal_it_was_written_as() -> None:
    # found by the property above: ×1000 then round gave ...704, and the cheap check agreed
    assert to_epoch_ms(49999999999999.7, "s") == 49_999_999_999_999_700
