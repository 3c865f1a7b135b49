"""Event time end to end (issue 12): timestamps in declared units, event time set inside a
pipeline, topics that declare their event time, and the guards that dead-letter implausible
times and keys. Pipelines are written as a new user would (`.flow` text), with no workaround,
and every result is compared whole with a reference computed here."""
from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import orjson

from dataflow.runtime.watermarks import is_heartbeat
from dataflow.lang import parse_flow
from dataflow.transport.base import Message, ProducerRecord

from .conftest import run_flow

WALL_CLOCK_MS = 1_764_600_000_000  # a message timestamp unrelated to any event time below


def raw(value: bytes, key: bytes | None = None, ts: int | None = WALL_CLOCK_MS) -> ProducerRecord:
    """A record whose value is the exact JSON text given (a float as a producer wrote it)."""
    return ProducerRecord("", key, value, None, ts)


def dead_letters(run: Any, pipeline: str) -> list[tuple[str, str, bytes | None, bytes]]:
    """(stage, reason, key, value) of every dead letter, in the order they were written."""
    out = []
    for m in run.topics.get(f"{pipeline}-dead-letters", []):
        headers = dict(m.headers)
        out.append((headers["dataflow.stage"].decode(), headers["dataflow.error"].decode(), m.key, m.value))
    return out


def seconds_text(ms: int) -> str:
    """Epoch seconds with three decimals, as JSON producers write them: 1700000000.123."""
    return f"{ms // 1000}.{ms % 1000:03d}"


# ----------------------------------------------------------------------------- units

TUMBLING_SECONDS = """
pipeline sums
record Payment { user: str, amount: int, ts: timestamp(s) }
topic payments: Payment key str event_time ts partitions 2
table per_minute = payments
  | window tumbling 60s on ts
  | aggregate { total: sum(amount), n: count() }
per_minute | to stdout
"""


async def test_60s_tumbling_sums_over_float_second_timestamps(kind, tmp_path):
    rng = random.Random(12)
    start = 1_700_000_000_123
    rows = []
    t = start
    for _ in range(400):
        t += rng.randrange(0, 60_000)  # records from a few ms to a minute apart, often near window edges
        rows.append((rng.choice(["ann", "bob", "cyd"]), rng.randrange(1, 100), t))
    inputs = [raw(b'{"user": "%s", "amount": %d, "ts": %s}' % (u.encode(), a, seconds_text(ms).encode()),
                  orjson.dumps(u)) for u, a, ms in rows]
    run = await run_flow(kind, tmp_path, parse_flow(TUMBLING_SECONDS, "sums.flow"), {"payments": inputs})

    expected: dict[tuple[str, int], dict[str, int]] = {}
    for user, amount, ms in rows:
        window = ms - ms % 60_000
        acc = expected.setdefault((user, window), {"total": 0, "n": 0, "window_start": window,
                                                   "window_end": window + 60_000})
        acc["total"] += amount
        acc["n"] += 1
    assert {tuple(k): v for k, v in run.tables["per_minute"]} == expected
    assert len({w for _, w in expected}) == 206  # (seeded data) windows, not 50 windows 60,000 s wide
    assert dead_letters(run, "sums") == []


async def test_a_fraction_in_a_millisecond_timestamp_is_dead_lettered_with_the_seconds_hint(kind, tmp_path):
    text = """
pipeline ms
record Payment { user: str, ts: timestamp }
topic payments: Payment key str event_time ts
topic out
payments | to topic out
"""
    inputs = [raw(b'{"user": "a", "ts": 1700000000.123}', b'"a"'), raw(b'{"user": "b", "ts": 1700000000123}', b'"b"'),
              raw(b'{"user": "c", "ts": "2023-11-14T22:13:20.5Z"}', b'"c"')]
    run = await run_flow(kind, tmp_path, parse_flow(text, "ms.flow"), {"payments": inputs})
    assert sorted((m.value, m.timestamp) for m in run.topics["out"]) == [
        (b'{"user":"b","ts":1700000000123}', 1700000000123), (b'{"user":"c","ts":1700000000500}', 1700000000500)]
    assert dead_letters(run, "ms") == [
        ("validate", "field 'ts': expected epoch milliseconds, got 1700000000.123 (a fraction of a millisecond); "
                     "if it is epoch seconds, declare the field timestamp(s)",
         b'"a"', b'{"user": "a", "ts": 1700000000.123}')]


async def test_a_sink_topic_gets_timestamps_in_the_units_it_declares(kind, tmp_path):
    text = """
pipeline units
record In { id: str, at: timestamp(ns) }
record Out { id: str, at: timestamp(s), copy: timestamp(us) }
topic ins: In
topic outs: Out
ins | map { id, at, copy: at } | to topic outs
"""
    inputs = [raw(b'{"id": "a", "at": 1700000000123456789}'), raw(b'{"id": "b", "at": "2023-11-14T22:13:20Z"}')]
    run = await run_flow(kind, tmp_path, parse_flow(text, "units.flow"), {"ins": inputs})
    assert run.values("outs") == [{"id": "a", "at": 1700000000.123, "copy": 1700000000123000},
                                  {"id": "b", "at": 1700000000, "copy": 1700000000000000}]


# ----------------------------------------------------------------------------- event time in a pipeline

CLICKS = """
pipeline ads
record Impression { imp_id: str, ad: str, shown_at: timestamp(s) }
record Click { imp_id: str, clicked_at: str }
topic impressions: Impression key str partitions 3
topic clicks: Click key str partitions 3
topic matched
stream shown = impressions | event_time shown_at
stream clicked = clicks | event_time parse_time(clicked_at)
shown | join clicked within 10s | to topic matched
"""


def iso(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_a_click_impression_join_on_time_fields_matches_the_reference(kind, tmp_path):
    rng = random.Random(7)
    base = 1_700_000_000_000
    impressions, clicks = [], []
    t = base
    for i in range(150):
        t += rng.randrange(0, 4_000)
        impressions.append((f"i{i % 40}", f"ad{i % 7}", t))
    t = base
    for i in range(150):
        t += rng.randrange(0, 4_000)
        clicks.append((f"i{rng.randrange(40)}", t + rng.choice([0, 2_000, 9_999, 10_000, 10_001, 30_000])))
    clicks.sort(key=lambda c: c[1])
    # Produced with message timestamps that run backwards, clicks first: the wall-clock order
    # of production says nothing about when things happened; only the fields do.
    imp_records = [raw(orjson.dumps({"imp_id": k, "ad": ad, "shown_at": float(seconds_text(ms))}), orjson.dumps(k),
                       WALL_CLOCK_MS - i) for i, (k, ad, ms) in enumerate(impressions)]
    click_records = [raw(orjson.dumps({"imp_id": k, "clicked_at": iso(ms)}), orjson.dumps(k), WALL_CLOCK_MS - 10 * i)
                     for i, (k, ms) in enumerate(clicks)]
    run = await run_flow(kind, tmp_path, parse_flow(CLICKS, "ads.flow"),
                         {"clicks": click_records, "impressions": imp_records})

    expected = Counter()
    for ik, ad, shown in impressions:
        for ck, clicked in clicks:
            if ik == ck and abs(shown - clicked) <= 10_000:
                row = {"imp_id": ik, "ad": ad, "shown_at": shown, "clicked_imp_id": ck, "clicked_at": iso(clicked)}
                expected[(orjson.dumps(ik), orjson.dumps(row), max(shown, clicked))] += 1
    got = Counter((m.key, m.value, m.timestamp) for m in run.topics["matched"])
    assert got == expected
    assert 0 < sum(expected.values()) < len(impressions) * len(clicks)  # the data does hold matches and misses
    assert dead_letters(run, "ads") == []


TOPIC_TIME = """
pipeline timed
record Event { id: str, at: int }
topic events: Event key str partitions 1
topic mid: Event key str partitions 1 event_time at
topic stamped: Event event_time at
events | to topic stamped
table per_10s = events | through mid | window tumbling 10s | aggregate { n: count() }
per_10s | to stdout
"""


async def test_through_and_to_a_topic_that_declares_event_time_use_its_field(kind, tmp_path):
    ats = [1_000, 3_000, 12_000, 15_000, 19_999, 20_000, 41_000]
    inputs = [raw(orjson.dumps({"id": f"e{i}", "at": at}), b'"k"', WALL_CLOCK_MS + i) for i, at in enumerate(ats)]
    run = await run_flow(kind, tmp_path, parse_flow(TOPIC_TIME, "timed.flow"), {"events": inputs})
    assert [m.timestamp for m in run.topics["stamped"]] == ats
    # a through topic also carries the watermark heartbeats of its writer: control records, not data
    assert [m.timestamp for m in run.topics["mid"] if not is_heartbeat(m)] == ats
    assert sorted(run.tables["per_10s"]) == [
        (("k", 0), {"n": 2, "window_start": 0, "window_end": 10_000}),
        (("k", 10_000), {"n": 3, "window_start": 10_000, "window_end": 20_000}),
        (("k", 20_000), {"n": 1, "window_start": 20_000, "window_end": 30_000}),
        (("k", 40_000), {"n": 1, "window_start": 40_000, "window_end": 50_000}),
    ]


# ----------------------------------------------------------------------------- guards

YEAR_9999 = """
pipeline guard
record Reading { id: int, ts: timestamp }
topic readings: Reading key str partitions 1 event_time ts
table per_10s = readings | window tumbling 10s | aggregate { n: count() }
per_10s | to stdout
"""

FUTURE = re.compile(r"^event time 9999-12-31T23:59:59Z is more than max_future_skew \(1d\) after the wall clock "
                    r"\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\)$")


async def test_a_year_9999_record_is_dead_lettered_and_the_records_after_it_are_counted(kind, tmp_path):
    base = 1_700_000_000_000
    times = [base + i * 1_000 for i in range(100)]
    values = [orjson.dumps({"id": i, "ts": ts}) for i, ts in enumerate(times)]
    bad = b'{"id": -1, "ts": "9999-12-31T23:59:59Z"}'
    inputs = [raw(v, b'"s1"') for v in values[:30]] + [raw(bad, b'"s1"')] + [raw(v, b'"s1"') for v in values[30:]]
    run = await run_flow(kind, tmp_path, parse_flow(YEAR_9999, "guard.flow"), {"readings": inputs})
    expected = Counter(ts - ts % 10_000 for ts in times)
    assert {tuple(k)[1]: v["n"] for k, v in run.tables["per_10s"]} == dict(expected)
    [(stage, reason, key, value)] = dead_letters(run, "guard")
    assert (stage, key, value) == ("validate", b'"s1"', bad)
    assert FUTURE.match(reason), reason


async def test_event_times_out_of_range_are_dead_lettered_wherever_they_are_derived(kind, tmp_path):
    text = """
pipeline ranges { min_event_time "2000-01-01T00:00:00Z" }
record R { id: int, at: int }
topic plain: R key str partitions 1
topic fielded: R key str partitions 1 event_time at
topic out
topic out2
stream staged = plain | event_time at
table by_msg = plain | window tumbling 10s | aggregate { n: count() }
stream moved = plain | map { id, at2: at }
table by_on = moved | window tumbling 10s on at2 | aggregate { n: count() }
staged | to topic out
fielded | to topic out2
by_msg | to stdout
by_on | to stdout
"""
    ok = 1_700_000_000_000
    old = 946_684_799_999  # one ms before min_event_time
    inputs = {
        "plain": [raw(orjson.dumps({"id": 1, "at": ok}), b'"k"', ok), raw(orjson.dumps({"id": 2, "at": old}), b'"k"', ok),
                  raw(orjson.dumps({"id": 3, "at": ok}), b'"k"', old)],
        "fielded": [raw(orjson.dumps({"id": 4, "at": old}), b'"k"', ok), raw(orjson.dumps({"id": 5, "at": ok}), b'"k"', ok)],
    }
    run = await run_flow(kind, tmp_path, parse_flow(text, "ranges.flow"), inputs)
    before = "event time 1999-12-31T23:59:59.999Z is before min_event_time (2000-01-01T00:00:00Z)"
    assert sorted((stage, reason, value) for stage, reason, _k, value in dead_letters(run, "ranges")) == sorted([
        ("validate", before, orjson.dumps({"id": 3, "at": ok})),   # its message timestamp, at decode
        ("validate", before, orjson.dumps({"id": 4, "at": old})),  # its event_time field, at decode
        ("staged", f"ValueError: {before}", orjson.dumps({"id": 2, "at": old})),  # the event_time stage
        ("by_on", f"ValueError: {before}", orjson.dumps({"id": 2, "at": old})),  # a window's on field
    ])
    assert [(orjson.loads(m.value)["id"], m.timestamp) for m in run.topics["out"]] == [(1, ok)]
    assert [(orjson.loads(m.value)["id"], m.timestamp) for m in run.topics["out2"]] == [(5, ok)]
    window = ok - ok % 10_000
    assert [v["n"] for _k, v in run.tables["by_msg"]] == [2]  # ids 1 and 2: their message times are fine
    assert [(k[1], v["n"]) for k, v in run.tables["by_on"]] == [(window, 1)]  # id 1 (3 was refused at decode)


KEYS = """
pipeline keys
record User { name: str }
topic users: User key str partitions 1
topic loose: User partitions 1
topic events: User key str partitions 1
topic seen
table people = topic users
table anyone = topic loose
people | to stdout
anyone | to stdout
events | to topic seen
"""


async def test_keys_are_checked_against_the_declared_key_type(kind, tmp_path):
    value = b'{"name": "n"}'
    keys = [b'"u1"', b"u123", b"123", b'{"a":1}', b"[1,2]", b"true", None]
    inputs = {"users": [raw(value, k) for k in keys], "events": [raw(value, k) for k in keys],
              "loose": [raw(value, b"7"), raw(value, None), raw(None, None), raw(None, b"8")]}
    run = await run_flow(kind, tmp_path, parse_flow(KEYS, "keys.flow"), inputs)
    assert run.tables["people"] == [("u1", {"name": "n"}), ("u123", {"name": "n"})]
    assert run.tables["anyone"] == [(7, {"name": "n"})]
    assert sorted(m.key for m in run.topics["seen"]) == [b'"u1"', b'"u123"']
    wrong = [("key 123 on topic {t} does not fit its declared key str: expected str, got an int", b"123", value),
             ('key {{"a":1}} on topic {t} does not fit its declared key str: expected str, got an object', b'{"a":1}',
              value),
             ("key [1,2] on topic {t} does not fit its declared key str: expected str, got a list", b"[1,2]", value),
             ("key true on topic {t} does not fit its declared key str: expected str, got a bool", b"true", value),
             ("null key on topic {t}, which declares key str", None, value)]
    expected = [("validate", reason.format(t=topic), key, v) for topic in ("users", "events") for reason, key, v in wrong]
    expected += [("validate", "null key on topic loose, which is read as a table", None, value),
                 ("validate", "null key on topic loose, which is read as a table", None, None)]
    assert sorted(dead_letters(run, "keys"), key=repr) == sorted(expected, key=repr)


async def test_a_deletion_sent_to_a_topic_that_declares_event_time_keeps_its_own_time(kind, tmp_path):
    text = """
pipeline deletes
record User { name: str, at: int }
topic users: User key str partitions 1
topic copy: User key str partitions 1 event_time at
table people = topic users
people | to topic copy
"""
    inputs = [raw(b'{"name": "a", "at": 5000}', b'"u1"', 1_000), raw(None, b'"u1"', 9_000)]
    run = await run_flow(kind, tmp_path, parse_flow(text, "deletes.flow"), {"users": inputs})
    assert [(m.key, m.value, m.timestamp) for m in run.topics["copy"]] == [
        (b'"u1"', b'{"name":"a","at":5000}', 5_000), (b'"u1"', b"null", 9_000)]  # as table changes are written
    assert dead_letters(run, "deletes") == []
