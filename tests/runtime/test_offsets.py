"""Offset bookkeeping: a table of Faust's historical failure modes, and properties."""
from __future__ import annotations

import asyncio
import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflow.runtime.offsets as offsets_module
from dataflow.runtime.offsets import OffsetTracker, Tracker, committable_offset
from dataflow.transport.base import TP, Message

TP0 = TP("orders", 0)


def msg(offset: int, tp: TP = TP0) -> Message:
    return Message(tp.topic, tp.partition, offset, None, b"{}", 0)


# (title, delivered, acked, committed, expected)
TABLE = [
    ("nothing delivered", [], set(), None, None),
    ("nothing delivered, already committed", [], set(), 4, None),
    ("first offset still in flight", [0, 1, 2], {1, 2}, None, None),
    ("everything acked", [0, 1, 2], {0, 1, 2}, None, 3),
    ("acked prefix stops at the first in-flight offset", [0, 1, 2], {0, 1}, None, 2),
    ("concurrency: later offsets acked first", [0, 1, 2, 3], {0, 2, 3}, None, 1),
    ("concurrency: only the last acked", [0, 1, 2, 3], {3}, None, None),
    ("compaction gap inside the acked run", [0, 1, 5, 6], {0, 1, 5}, None, 6),
    ("compaction gaps everywhere, all acked", [0, 3, 9], {0, 3, 9}, None, 10),
    ("compaction gap at the head after a restart", [7, 8], {7}, 3, 8),
    ("first offset after a commit", [10], {10}, 10, 11),
    ("no progress since the commit", [0, 1, 2], {0, 1}, 2, None),
    ("committed past everything acked", [0, 1, 2], {0, 1, 2}, 5, None),
    ("offsets below the commit are ignored, acked or not", [0, 1, 2, 3], {2, 3}, 2, 4),
    ("in flight right at the commit", [0, 1, 2, 3, 4], {0, 1, 2, 4}, 3, None),
    ("stray acks of undelivered offsets do not count", [0, 1, 2], {0, 1, 5}, None, 2),
    ("an acked but undelivered offset in a gap is no bridge", [0, 2], {0, 1}, None, 1),
    ("single offset acked", [41], {41}, None, 42),
]


@pytest.mark.parametrize(("delivered", "acked", "committed", "expected"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_committable_offset_table(delivered: list[int], acked: set[int], committed: int | None, expected: int | None) -> None:
    assert committable_offset(delivered, acked, committed) == expected


@pytest.mark.parametrize(("delivered", "acked", "committed", "expected"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_offset_tracker_agrees_with_table(delivered: list[int], acked: set[int], committed: int | None, expected: int | None) -> None:
    tracker = OffsetTracker(committed)
    for offset in delivered:
        tracker.track(offset)
    for offset in sorted(acked, reverse=True):  # reverse: the worst order for the frontier
        tracker.ack(offset)
    if committed is not None:
        tracker.mark_committed(committed)
    assert tracker.committable() == expected


# Scripts over Tracker: "tN" track offset N (once), "tNxR" track with R references,
# "aN" ack, "c" commit whatever is committable, "cN" mark N committed, "f" forget the partition.
# (title, script, expected committable, expected in flight)
SCRIPTS = [
    ("duplicate ack after completion is ignored", "t0 t1 t2 a0 a0 a0", 1, 2),
    ("duplicate ack of a later offset does not unblock", "t0 t1 a1 a1 a1", None, 1),
    ("refcount: one stream of two done", "t0x2 a0", None, 1),
    ("refcount: both streams done", "t0x2 a0 a0", 1, 0),
    ("refcount: extra acks after zero ignored", "t0x2 t1 a0 a0 a0 a0", 1, 1),
    ("zero subscribers acks at once", "t0x0 t1x0", 2, 0),
    ("zero subscribers behind an in-flight offset", "t0 t1x0", None, 1),
    ("ack of an untracked offset", "t0 a7 a3", None, 1),
    ("concurrency 3: reverse completion", "t0 t1 t2 a2 a1", None, 1),
    ("concurrency 3: head completes last", "t0 t1 t2 a2 a1 a0", 3, 0),
    ("commit then nothing new", "t0 t1 a0 a1 c", None, 0),
    ("commit then more acks", "t0 t1 t2 a0 c a1", 2, 1),
    ("gaps with concurrency", "t3 t7 t8 t20 a8 a20 a3", 4, 1),
    ("gaps, head acked last", "t3 t7 t8 t20 a8 a20 a7 a3", 21, 0),
    ("external commit drops in-flight below it", "t0 t1 t2 t3 a2 a3 c2", 4, 0),
    ("external commit behind our own is ignored", "t0 t1 a0 a1 c c0", None, 0),
    ("forget drops in-flight work", "t0 t1 a1 f", None, 0),
    ("redelivery below the commit is not tracked", "t0 t1 a0 a1 c f c2 t0 t1 t2", None, 1),
]


def run_script(script: str) -> Tracker:
    tracker = Tracker()
    for op in script.split():
        kind, arg = op[0], op[1:]
        if kind == "t":
            offset, _, refs = arg.partition("x")
            tracker.track(msg(int(offset)), refs=int(refs or 1))
        elif kind == "a":
            tracker.ack(TP0, int(arg))
        elif kind == "c" and not arg:
            tracker.mark_committed(tracker.committable())
        elif kind == "c":
            tracker.mark_committed({TP0: int(arg)})
        elif kind == "f":
            tracker.forget([TP0])
        else:
            raise AssertionError(op)
    return tracker


@pytest.mark.parametrize(("script", "expected", "in_flight"), [row[1:] for row in SCRIPTS], ids=[row[0] for row in SCRIPTS])
def test_tracker_scripts(script: str, expected: int | None, in_flight: int) -> None:
    tracker = run_script(script)
    assert tracker.committable() == ({} if expected is None else {TP0: expected})
    assert tracker.in_flight == in_flight


def test_ack_returns_true_only_when_the_count_reaches_zero() -> None:
    tracker = Tracker()
    tracker.track(msg(0), refs=3)
    assert [tracker.ack(TP0, 0) for _ in range(4)] == [False, False, True, False]
    assert tracker.ack(TP("other", 0), 0) is False


def test_partitions_are_independent() -> None:
    tracker = Tracker()
    a, b = TP("orders", 0), TP("orders", 1)
    tracker.track_many([msg(0, a), msg(1, a), msg(0, b)])
    tracker.ack(a, 0)
    tracker.ack(b, 0)
    assert tracker.committable() == {a: 1, b: 1}
    tracker.mark_committed({a: 1})
    assert tracker.committable() == {b: 1}
    assert tracker.ack_many(a, [1, 1, 9]) == 1
    assert tracker.committable() == {a: 2, b: 1}


def test_offsets_must_be_tracked_in_order_until_reset() -> None:
    tracker = OffsetTracker()
    tracker.track(5)
    with pytest.raises(ValueError, match="offset 5 tracked after 5"):
        tracker.track(5)
    tracker.reset(committed=3)
    tracker.track(3)
    tracker.ack(3)
    assert (tracker.committable(), tracker.committed) == (4, 3)


def test_mark_committed_keeps_memory_bounded() -> None:
    tracker = OffsetTracker()
    for offset in range(1000):
        tracker.track(offset)
    for offset in range(999, 0, -1):  # everything but the head: nothing can fold yet
        tracker.ack(offset)
    assert (len(tracker._pending), len(tracker._acked), tracker.committable()) == (1000, 999, None)
    tracker.ack(0)
    assert (len(tracker._pending), len(tracker._acked), tracker.committable()) == (0, 0, 1000)
    tracker.track(1000)
    tracker.mark_committed(1001)  # committed elsewhere past our in-flight offset
    assert (len(tracker._pending), tracker.in_flight, tracker.committable()) == (0, 0, None)


async def test_wait_empty_resolves_when_the_last_ack_lands() -> None:
    tracker = Tracker()
    await asyncio.wait_for(tracker.wait_empty(), 5)  # nothing in flight: returns at once
    tracker.track(msg(0), refs=2)
    tracker.track(msg(1))
    waiter = asyncio.create_task(tracker.wait_empty())
    await asyncio.sleep(0)
    tracker.ack(TP0, 0)
    tracker.ack(TP0, 1)
    await asyncio.sleep(0)
    assert not waiter.done()
    tracker.ack(TP0, 0)
    await asyncio.wait_for(waiter, 5)
    assert tracker.in_flight == 0


async def test_wait_empty_resolves_when_in_flight_work_is_forgotten() -> None:
    tracker = Tracker()
    tracker.track(msg(0))
    waiter = asyncio.create_task(tracker.wait_empty())
    await asyncio.sleep(0)
    tracker.forget([TP0])
    await asyncio.wait_for(waiter, 5)


def test_refs_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="refs must be >= 0"):
        Tracker().track(msg(0), refs=-1)


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[int], list[tuple[str, int]]]:
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=25))
    start = draw(st.integers(0, 5))
    delivered = [start + sum(gaps[:i]) for i in range(len(gaps))]
    refs = draw(st.lists(st.integers(0, 3), min_size=len(delivered), max_size=len(delivered)))
    steps: list[tuple[str, int]] = []
    pending: list[int] = []
    next_index = 0
    remaining = dict(zip(delivered, refs, strict=True))
    while next_index < len(delivered) or any(remaining[o] for o in pending):
        live = [o for o in pending if remaining[o]]
        choices = (["track"] if next_index < len(delivered) else []) + (["ack"] if live else [])
        choice = draw(st.sampled_from(choices + ["dup", "stray", "commit"]))
        if choice == "track":
            offset = delivered[next_index]
            next_index += 1
            pending.append(offset)
            steps.append(("track", offset))
        elif choice == "ack":
            offset = draw(st.sampled_from(live))
            remaining[offset] -= 1
            steps.append(("ack", offset))
        elif choice == "dup" and pending:
            done = [o for o in pending if not remaining[o]]
            if done:
                steps.append(("ack", draw(st.sampled_from(done))))
        elif choice == "stray":
            steps.append(("ack", draw(st.integers(0, delivered[-1] + 5).filter(lambda o: o not in remaining))))
        elif choice == "commit":
            steps.append(("commit", 0))
    steps.append(("commit", 0))
    return delivered, refs, steps


@settings(max_examples=300, deadline=None)
@given(schedules())
def test_tracker_properties(schedule: tuple[list[int], list[int], list[tuple[str, int]]]) -> None:
    delivered, refs, steps = schedule
    refs_of = dict(zip(delivered, refs, strict=True))
    tracker = Tracker()
    tracked: list[int] = []
    remaining: dict[int, int] = {}
    committed: int | None = None
    position = -1  # the committed-or-committable offset, which must never move back

    for kind, offset in steps:
        if kind == "track":
            tracker.track(msg(offset), refs=refs_of[offset])
            tracked.append(offset)
            remaining[offset] = refs_of[offset]
        elif kind == "ack":
            hit_zero = tracker.ack(TP0, offset)
            was = remaining.get(offset, 0)
            if was:
                remaining[offset] = was - 1
            assert hit_zero == (was == 1)
        else:
            ready = tracker.committable()
            if ready:
                tracker.mark_committed(ready)
                committed = ready[TP0]

        in_flight = [o for o in tracked if remaining[o]]
        acked = {o for o in tracked if not remaining[o]}
        ready_now = tracker.committable().get(TP0)
        assert ready_now == committable_offset(tracked, acked, committed)
        assert tracker.in_flight == len(in_flight)
        current = ready_now if ready_now is not None else committed
        if current is not None:
            if in_flight:
                assert current <= min(in_flight)
            assert current >= position
            position = current

    assert committed == delivered[-1] + 1
    assert tracker.in_flight == 0


def test_doctests() -> None:
    assert doctest.testmod(offsets_module).failed == 0
