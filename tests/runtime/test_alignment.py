"""The pure core of time-aligned consumption (`runtime.alignment`): which record comes next."""
from __future__ import annotations

import asyncio
import heapq
from collections import deque
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow.runtime.alignment import Aligner, Head, Take, Wait, choose, take_slice
from dataflow.transport.base import TP, Message


# ---------------------------------------------------------------------- choose
def test_nothing_buffered_gives_nothing():
    assert choose([Head(None), Head(None)], now=0.0, max_idle=0.0) is None
    assert choose([], now=0.0, max_idle=0.0) is None


def test_the_lowest_head_is_taken_up_to_the_next_lowest():
    assert choose([Head(9), Head(4), Head(6)], now=0.0, max_idle=0.0) == Take(1, (6, 1, 2))


def test_a_single_buffered_input_is_taken_whole():
    assert choose([Head(9)], now=0.0, max_idle=0.0) == Take(0, None)


def test_ties_go_to_tables_first_then_to_the_fixed_order():
    assert choose([Head(5), Head(5, table=True)], now=0.0, max_idle=0.0) == Take(1, (5, 1, 0))
    assert choose([Head(5), Head(5)], now=0.0, max_idle=0.0) == Take(0, (5, 1, 1))
    assert choose([Head(5, table=True), Head(5, table=True)], now=0.0, max_idle=0.0) == Take(0, (5, 0, 1))


def test_an_empty_input_with_unread_records_is_waited_for_whatever_max_task_idle():
    for max_idle in (0.0, 5.0):
        assert choose([Head(1), Head(None, caught_up=False)], now=100.0, max_idle=max_idle) == Wait(None)


def test_a_caught_up_empty_input_is_not_waited_for_with_max_task_idle_zero():
    assert choose([Head(8), Head(None, caught_up=True, idle_since=100.0)], now=100.0, max_idle=0.0) == Take(0, None)


def test_a_caught_up_empty_input_is_waited_for_max_task_idle_from_when_it_was_found_empty():
    heads = [Head(8), Head(None, caught_up=True, idle_since=100.0)]
    assert choose(heads, now=100.0, max_idle=2.0) == Wait(102.0)
    assert choose(heads, now=101.999, max_idle=2.0) == Wait(102.0)
    assert choose(heads, now=102.0, max_idle=2.0) == Take(0, None)
    # not yet found empty: the wait starts now
    assert choose([Head(8), Head(None, caught_up=True)], now=50.0, max_idle=2.0) == Wait(52.0)


def test_the_earliest_idle_deadline_is_reported():
    heads = [Head(8), Head(None, idle_since=10.0), Head(None, idle_since=11.0)]
    assert choose(heads, now=11.5, max_idle=1.0) == Wait(12.0)
    assert choose(heads, now=12.0, max_idle=1.0) == Take(0, None)


def test_unread_records_win_over_an_idle_deadline():
    heads = [Head(8), Head(None, idle_since=0.0), Head(None, caught_up=False)]
    assert choose(heads, now=100.0, max_idle=1.0) == Wait(None)


def test_a_bootstrapping_table_goes_first_whatever_its_times():
    heads = [Head(1), Head(1_000, table=True, bootstrapping=True)]
    assert choose(heads, now=0.0, max_idle=0.0) == Take(1, None)


def test_other_inputs_wait_while_a_bootstrapping_table_is_empty_but_not_at_its_end():
    heads = [Head(1), Head(None, table=True, caught_up=False, bootstrapping=True)]
    assert choose(heads, now=0.0, max_idle=0.0) == Wait(None)


# ---------------------------------------------------------------------- take_slice
def recs(*times: int) -> deque:
    return deque((None, i, t, None) for i, t in enumerate(times))


def test_a_slice_stops_before_the_bound():
    q = recs(1, 2, 3, 9, 4)
    assert [r[2] for r in take_slice(q, 1, 0, (3, 1, 1))] == [1, 2, 3]  # (3, 1, 0) < (3, 1, 1)
    assert [r[2] for r in q] == [9, 4]  # order within a partition is never changed


def test_a_slice_leaves_a_tie_to_an_input_that_ranks_first():
    q = recs(1, 3)
    assert [r[2] for r in take_slice(q, 1, 1, (3, 0, 0))] == [1]
    q = recs(1, 3)
    assert [r[2] for r in take_slice(q, 1, 1, (3, 1, 0))] == [1]  # same rank: the lower index first


# ---------------------------------------------------------------------- merging by choose + take_slice
inputs = st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 20), max_size=8).map(sorted)), min_size=1,
                  max_size=4)


@given(inputs)
def test_choosing_and_slicing_merge_inputs_in_time_table_first_order(spec):
    """With every input in time order and caught up, the result is the (time, table first,
    input) merge: what a brute-force reference that applies records in that order does."""
    queues = [deque((None, (i, j), t, None) for j, t in enumerate(times)) for i, (_, times) in enumerate(spec)]
    out = []
    while True:
        choice = choose([Head(q[0][2] if q else None, table) for q, (table, _) in zip(queues, spec)], 0.0, 0.0)
        if choice is None:
            break
        assert isinstance(choice, Take)
        taken = take_slice(queues[choice.index], 0 if spec[choice.index][0] else 1, choice.index, choice.until)
        assert taken
        out.extend(r[1] for r in taken)
    reference = [(i, j) for _, _, i, j in heapq.merge(
        *[[(t, 0 if table else 1, i, j) for j, t in enumerate(times)] for i, (table, times) in enumerate(spec)])]
    assert out == reference


# ---------------------------------------------------------------------- the Aligner's bookkeeping
class FakeConsumer:
    """Positions and log ends of a few partitions; counts the end_offsets calls."""

    def __init__(self, ends: dict[TP, int], highwater: bool = True) -> None:
        self.ends = dict(ends)
        self.positions = {tp: 0 for tp in ends}
        self.with_highwater = highwater
        self.end_offset_calls: list[list[TP]] = []

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def position(self, tp: TP) -> int:
        return self.positions[tp]

    def highwater(self, tp: TP) -> int | None:
        return self.ends[tp] if self.with_highwater else None

    async def end_offsets(self, tps: Any) -> dict[TP, int]:
        tps = list(tps)
        self.end_offset_calls.append(tps)
        return {tp: self.ends[tp] for tp in tps}


class Route:
    def __init__(self, topic: str) -> None:
        self.topic = topic


ORDERS, USERS = TP("orders", 0), TP("users", 0)


def aligner(max_idle: float = 0.0, bootstrap: bool = False) -> tuple[Aligner, Route, Route]:
    a = Aligner(max_idle, buffer_limit=3)
    orders, users = Route("orders"), Route("users")
    a.register(orders, 0, "orders", 0, table=False, bootstrap=False)
    a.register(users, 0, "users", 0, table=True, bootstrap=bootstrap)
    a.assign({ORDERS, USERS})
    return a, orders, users


def fetch(a: Aligner, consumer: FakeConsumer, tp: TP, *times: int) -> None:
    """The consumer hands out records of `tp` (its position moves) and the worker queues them."""
    start = consumer.positions[tp]
    messages = [Message(tp.topic, tp.partition, start + i, None, b"{}", t) for i, t in enumerate(times)]
    consumer.positions[tp] = start + len(times)
    a.push(tp, messages, lambda route: [(None, m.offset, m.timestamp, m) for m in messages])


def drain(a: Aligner, consumer: FakeConsumer, now: float = 0.0) -> list[tuple[str, list[int]]]:
    out: list[tuple[str, list[int]]] = []
    asyncio.run(a.refresh(consumer))  # type: ignore[arg-type]
    a.run(consumer, now, lambda route, batch: out.append((route.topic, [r[2] for r in batch])))  # type: ignore[arg-type]
    return out


def test_a_stream_waits_for_table_records_known_to_be_in_the_log():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 2, USERS: 2})
    fetch(a, consumer, ORDERS, 10, 20)
    assert drain(a, consumer) == []  # users has 2 unread records
    assert a.buffered == 2 and a.progress() == {}  # nothing of orders is done
    fetch(a, consumer, USERS, 5, 15)
    assert drain(a, consumer) == [("users", [5]), ("orders", [10]), ("users", [15]), ("orders", [20])]
    assert a.buffered == 0
    assert a.progress() == {ORDERS: 1, USERS: 1}  # ack up to the last offsets: commit 2 and 2


def test_a_caught_up_input_is_not_waited_for_with_max_task_idle_zero():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 2, USERS: 0})
    fetch(a, consumer, ORDERS, 10, 20)
    assert drain(a, consumer) == [("orders", [10, 20])]


def test_a_caught_up_input_is_waited_for_max_task_idle():
    a, _, _ = aligner(max_idle=5.0)
    consumer = FakeConsumer({ORDERS: 2, USERS: 0})
    fetch(a, consumer, ORDERS, 10, 20)
    assert drain(a, consumer, now=100.0) == []  # found empty and caught up at 100
    assert drain(a, consumer, now=104.9) == []
    consumer.ends[USERS] = 1  # a user arrives in time
    fetch(a, consumer, USERS, 15)
    assert drain(a, consumer, now=104.95) == [("orders", [10]), ("users", [15])]
    # users ran dry again: the stream waits again, up to max_task_idle (as Kafka Streams does)
    assert drain(a, consumer, now=109.9) == []
    assert drain(a, consumer, now=109.95) == [("orders", [20])]


def test_the_idle_wait_ends_after_max_task_idle():
    a, _, _ = aligner(max_idle=5.0)
    consumer = FakeConsumer({ORDERS: 2, USERS: 0})
    fetch(a, consumer, ORDERS, 10, 20)
    assert drain(a, consumer, now=100.0) == []
    assert drain(a, consumer, now=105.0) == [("orders", [10, 20])]


def test_the_log_end_is_read_when_a_queue_runs_dry_not_per_batch():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 4, USERS: 2}, highwater=False)
    fetch(a, consumer, USERS, 1, 2)
    fetch(a, consumer, ORDERS, 3, 4)
    assert drain(a, consumer) == [("users", [1, 2])]  # users ran dry: is it caught up?
    assert consumer.end_offset_calls == []  # nothing was empty when it looked
    assert drain(a, consumer) == [("orders", [3, 4])]  # its end was read once: yes
    assert consumer.end_offset_calls == [[USERS]]
    fetch(a, consumer, ORDERS, 5, 6)
    assert drain(a, consumer) == [("orders", [5, 6])]
    assert consumer.end_offset_calls == [[USERS]]  # not read again for another batch
    fetch(a, consumer, ORDERS, 7)
    consumer.ends[ORDERS] = 5
    assert drain(a, consumer) == [("orders", [7])]  # users still dry and known caught up: not read again
    assert consumer.end_offset_calls == [[USERS]]


def test_a_bootstrap_table_is_read_to_its_end_before_the_stream_whatever_the_times():
    a, _, _ = aligner(bootstrap=True)
    consumer = FakeConsumer({ORDERS: 2, USERS: 3})
    fetch(a, consumer, ORDERS, 1, 2)
    fetch(a, consumer, USERS, 50)
    assert drain(a, consumer) == [("users", [50])]  # the orders wait for the rest of the table
    fetch(a, consumer, USERS, 60, 70)
    assert drain(a, consumer) == [("users", [60, 70]), ("orders", [1, 2])]
    # read to its end: later table updates are taken in time order like any table's
    consumer.ends.update({ORDERS: 3, USERS: 4})
    fetch(a, consumer, ORDERS, 100)
    fetch(a, consumer, USERS, 80)
    assert drain(a, consumer) == [("users", [80]), ("orders", [100])]


def test_revoking_drops_buffered_records_and_their_offsets_are_not_done():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 2, USERS: 1})
    fetch(a, consumer, ORDERS, 10, 20)
    assert drain(a, consumer) == []
    assert a.progress() == {}
    a.revoke({ORDERS})
    assert a.buffered == 0 and a.progress() == {}


def test_a_rewind_returns_the_first_offset_not_done():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 3, USERS: 1})
    fetch(a, consumer, USERS, 15)
    fetch(a, consumer, ORDERS, 10, 20, 30)
    assert drain(a, consumer) == [("orders", [10]), ("users", [15]), ("orders", [20, 30])]
    consumer.ends[ORDERS] = 5
    fetch(a, consumer, ORDERS, 40, 50)
    assert a.rewind(ORDERS) == 3 and a.buffered == 0


def test_partitions_whose_queues_are_full_are_paused_and_resumed():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 10, USERS: 1})
    fetch(a, consumer, ORDERS, 10, 20, 30)
    assert drain(a, consumer) == []
    assert a.flow_control() == ([ORDERS], [])
    assert a.flow_control() == ([], [])
    fetch(a, consumer, USERS, 5)
    drain(a, consumer)
    assert a.flow_control() == ([], [ORDERS])


@pytest.mark.parametrize("repeat", [1, 2])
def test_assignment_callbacks_may_repeat_partitions(repeat):
    a, _, _ = aligner()
    for _ in range(repeat):
        a.assign({ORDERS, USERS})
    consumer = FakeConsumer({ORDERS: 1, USERS: 1})
    fetch(a, consumer, ORDERS, 10)
    fetch(a, consumer, USERS, 5)
    assert drain(a, consumer) == [("users", [5]), ("orders", [10])]


def test_progress_stops_before_the_first_buffered_record_and_passes_dead_letters():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 4, USERS: 1})
    messages = [Message("orders", 0, i, None, b"{}", t) for i, t in enumerate((10, 20, 30, 40))]
    consumer.positions[ORDERS] = 4
    # offset 1 did not decode (it went to the dead letters when fetched): it is not queued
    a.push(ORDERS, messages, lambda route: [(None, m.offset, m.timestamp, m) for m in messages if m.offset != 1])
    fetch(a, consumer, USERS, 25)
    assert drain(a, consumer) == [("orders", [10]), ("users", [25]), ("orders", [30, 40])]
    assert a.progress() == {ORDERS: 3, USERS: 0}
    assert a.progress() == {}  # reported once


def test_progress_of_a_partly_taken_queue():
    a, _, _ = aligner()
    consumer = FakeConsumer({ORDERS: 3, USERS: 2})
    fetch(a, consumer, ORDERS, 10, 20, 30)
    fetch(a, consumer, USERS, 15)
    assert drain(a, consumer) == [("orders", [10]), ("users", [15])]  # users has one more unread
    assert a.progress() == {ORDERS: 0, USERS: 0}  # commit orders at 1: offsets 1 and 2 are still queued


# ---------------------------------------------------------------------- internal topics: bounded by watermarks
def test_an_empty_internal_input_bounds_the_others_by_its_watermark():
    table_first = choose([Head(5, table=True), Head(None, complete_until=8)], now=0.0, max_idle=0.0)
    assert table_first == Take(0, (8, 1, 1))  # every table record up to the stream's watermark
    assert choose([Head(8, table=True), Head(None, complete_until=8)], 0.0, 0.0) == Take(0, (8, 1, 1))
    assert choose([Head(9, table=True), Head(None, complete_until=8)], 0.0, 0.0) == Wait(None, watermark=True)
    assert choose([Head(1, table=True), Head(None, complete_until=float("-inf"))], 0.0, 0.0) == \
        Wait(None, watermark=True)  # not every upstream partition has reported yet
    assert choose([Head(1, table=True), Head(None, complete_until=float("inf"))], 0.0, 0.0) == Take(0, None)


def test_a_queued_internal_input_is_bounded_by_its_watermark_too():
    # its own records past the watermark wait: a slower upstream partition may send earlier ones
    assert choose([Head(9, table=True), Head(4, complete_until=6)], 0.0, 0.0) == Take(1, (6, 1, 1))
    assert choose([Head(9, table=True), Head(6, complete_until=6)], 0.0, 0.0) == Wait(None, watermark=True)
    assert choose([Head(3, table=True), Head(4, complete_until=6)], 0.0, 0.0) == Take(0, (4, 1, 1))


def test_max_task_idle_does_not_apply_to_an_input_with_a_watermark():
    assert choose([Head(5, table=True), Head(None, complete_until=9)], now=0.0, max_idle=10.0) == Take(0, (9, 1, 1))


REPART = TP("repart", 0)


def by_time_aligner(marks: dict[TP, float | None]) -> tuple[Aligner, FakeConsumer]:
    a = Aligner(0.0, buffer_limit=3, complete_until=lambda tp: marks.get(tp))
    a.register(Route("repart"), 0, "repart", 0, table=False, bootstrap=False, by_time=True)
    a.register(Route("users"), 0, "users", 0, table=True, bootstrap=False)
    a.assign({REPART, USERS})
    return a, FakeConsumer({REPART: 0, USERS: 0})


def test_an_internal_queue_is_kept_in_time_order_and_its_progress_stops_at_its_lowest_offset():
    marks: dict[TP, float | None] = {REPART: 0}
    a, consumer = by_time_aligner(marks)
    consumer.ends.update({REPART: 4, USERS: 1})
    fetch(a, consumer, REPART, 30, 10)  # two upstream partitions interleaved
    fetch(a, consumer, REPART, 40, 20)
    fetch(a, consumer, USERS, 15)
    assert drain(a, consumer) == []  # the watermark (0) holds everything
    marks[REPART] = 25
    assert drain(a, consumer) == [("repart", [10]), ("users", [15]), ("repart", [20])]
    assert a.progress() == {USERS: 0}  # repart: offset 0 (time 30) is still queued, so nothing is done
    marks[REPART] = float("inf")  # every upstream partition ended
    assert drain(a, consumer) == [("repart", [30, 40])]
    assert a.progress() == {REPART: 3}


def test_no_input_of_a_task_held_by_a_watermark_is_paused():
    marks: dict[TP, float | None] = {REPART: 5}
    a, consumer = by_time_aligner(marks)
    consumer.ends.update({REPART: 4, USERS: 4})
    fetch(a, consumer, REPART, 10, 11, 12, 13)
    fetch(a, consumer, USERS, 20, 21, 22, 23)
    assert drain(a, consumer) == [] and a.held_by_watermarks
    assert a.flow_control() == ([], [])  # full queues, but what moves the watermark is further on


@given(st.lists(st.lists(st.integers(0, 30), max_size=8).map(sorted), min_size=1, max_size=3),
       st.lists(st.integers(0, 30), max_size=8).map(sorted), st.randoms(use_true_random=False))
def test_a_join_over_an_interleaved_internal_topic_sees_the_table_as_of_each_record(origins, table, rng):
    """Upstream partitions (`origins`, each in time order) are written into one internal
    partition in random runs, each run followed by the watermark it makes known; the table's
    records are in its log and come in random fetches. Whatever the interleaving, each stream
    record is processed after exactly the table records at or before its time: the
    reference join."""
    progress: dict[int, int] = {}  # origin -> highest time written so far
    ended: set[int] = set()

    def watermark(tp: TP) -> float | None:
        active = [o for o in range(len(origins)) if o not in ended]
        if not active:
            return float("inf")
        if any(o not in progress for o in active):
            return float("-inf")
        return min(progress[o] for o in active)

    a = Aligner(0.0, buffer_limit=4, complete_until=watermark)
    a.register(Route("repart"), 0, "repart", 0, table=False, bootstrap=False, by_time=True)
    a.register(Route("users"), 0, "users", 0, table=True, bootstrap=False)
    a.assign({REPART, USERS})
    consumer = FakeConsumer({REPART: 0, USERS: len(table)})  # the table is in the log, not fetched yet
    pending = {o: list(times) for o, times in enumerate(origins)}
    table_left = list(table)
    order: list[tuple[str, int]] = []

    def step() -> None:
        asyncio.run(a.refresh(consumer))  # type: ignore[arg-type]
        a.run(consumer, 0.0, lambda route, batch: order.extend((route.topic, r[2]) for r in batch))  # type: ignore[arg-type]

    while any(pending.values()) or table_left or len(ended) < len(origins):
        choices = [o for o, times in pending.items() if times] + (["t"] if table_left else []) + \
            [("end", o) for o in pending if not pending[o] and o not in ended]
        pick = rng.choice(choices)
        if pick == "t":
            n = rng.randint(1, len(table_left))
            fetch(a, consumer, USERS, *table_left[:n])
            del table_left[:n]
        elif isinstance(pick, tuple):
            ended.add(pick[1])
        else:
            n = rng.randint(1, len(pending[pick]))
            run, pending[pick] = pending[pick][:n], pending[pick][n:]
            consumer.ends[REPART] += n
            fetch(a, consumer, REPART, *run)
            progress[pick] = run[-1]
        step()
    step()
    assert a.buffered == 0
    seen_table = 0
    for topic, t in order:
        if topic == "users":
            seen_table += 1
        else:
            assert seen_table == sum(1 for u in table if u <= t), (order, origins, table)
