"""Timers declared in a pipeline, at run time: the schedule on a fake clock, the worker's
records, dead letters, `until_idle`, and one `dataflow run` end to end.

Every test but the last drives time with a fake clock; none asserts on how long anything took.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from dataflow import Flow, agg, col, fn, timestamp, udf
from dataflow.ir import nodes as n
from dataflow.ir.expr import Literal, MakeRecord, Meta
from dataflow.planner import plan
from dataflow.runtime.flow_timers import FlowTimer, TimerStep, stop_timers
from dataflow.runtime.testing import FakeClock
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, ProducerRecord
from dataflow.transport.memory import MemoryTransport

REPO = Path(__file__).resolve().parents[2]


class GatedClock(FakeClock):
    """A FakeClock that grants `limit` sleeps; the next one waits until the timer is cancelled.

    `late` maps the index of a sleep to extra seconds it oversleeps (a stalled event loop).
    """

    def __init__(self, start: float, limit: int, *, lateness: float = 0.0, late: dict[int, float] | None = None):
        super().__init__(start, lateness=lateness)
        self.limit = limit
        self.late = late or {}

    async def sleep(self, seconds: float) -> None:
        if len(self.sleeps) >= self.limit:
            await asyncio.Event().wait()
        self.now += self.late.get(len(self.sleeps), 0.0)
        await super().sleep(seconds)


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition the code under test will make true (bounded, so a bug fails, not hangs)."""
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(wait(), 30)
    except asyncio.TimeoutError:
        pytest.fail(f"never happened: {what}")


# ---------------------------------------------------------------------------- the schedule


async def run_ticks(timer: FlowTimer, ticks: list[float], count: int) -> None:
    task = asyncio.ensure_future(timer.run())
    await until(lambda: len(ticks) >= count, f"{count} ticks")
    await stop_timers([task])


async def test_ticks_keep_to_the_grid_however_late_the_wakeups_and_slow_the_ticks() -> None:
    clock, ticks = GatedClock(start=0.0, limit=4, lateness=0.01), []

    async def fire(tick: float) -> None:
        ticks.append(tick)
        clock.advance(0.5)  # each tick takes half a second

    timer = FlowTimer("hb", 2.0, fire, clock=clock, sleep=clock.sleep)
    await run_ticks(timer, ticks, 4)
    assert ticks == [2.0, 4.0, 6.0, 8.0]
    assert clock.sleeps == [2.0, 1.49, 1.49, 1.49]  # drift correction: each sleep is shortened
    assert (timer.ticks, timer.skipped, timer.errors) == (4, 0, 0)


async def test_a_tick_that_overruns_skips_the_ticks_it_missed_instead_of_bursting() -> None:
    clock, ticks = GatedClock(start=0.0, limit=2), []

    async def fire(tick: float) -> None:
        ticks.append(tick)
        clock.advance(5.3 if tick == 2.0 else 0.1)  # the first tick runs until 7.3

    timer = FlowTimer("hb", 2.0, fire, clock=clock, sleep=clock.sleep)
    await run_ticks(timer, ticks, 3)
    assert ticks == [2.0, 6.0, 8.0]  # 4.0 was missed; 6.0 fires late, once, at 7.3
    assert timer.skipped == 1
    assert clock.sleeps == [2.0, 0.6]


async def test_a_late_wakeup_fires_once_stamped_with_the_latest_grid_time() -> None:
    clock, ticks = GatedClock(start=100.0, limit=3, late={1: 7.0}), []

    async def fire(tick: float) -> None:
        ticks.append(tick)

    timer = FlowTimer("hb", 2.0, fire, clock=clock, sleep=clock.sleep)
    await run_ticks(timer, ticks, 3)
    assert ticks == [102.0, 110.0, 112.0]  # the second sleep woke at 111: 104..108 skipped
    assert timer.skipped == 3


async def test_stopping_lets_the_tick_in_progress_finish() -> None:
    clock, release, done = FakeClock(), asyncio.Event(), []

    async def fire(tick: float) -> None:
        await release.wait()
        done.append(tick)

    timer = FlowTimer("hb", 1.0, fire, clock=clock, sleep=clock.sleep)
    task = asyncio.ensure_future(timer.run())
    await until(lambda: clock.sleeps, "the first sleep")
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(stop_timers([task]))
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the tick
    release.set()
    await stopping
    assert done == [1.0] and task.cancelled()


async def test_a_failing_tick_is_counted_and_logged_and_the_schedule_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    clock, ticks = GatedClock(start=0.0, limit=3), []

    async def fire(tick: float) -> None:
        ticks.append(tick)
        if tick == 1.0:
            raise RuntimeError("broker gone")

    timer = FlowTimer("hb", 1.0, fire, clock=clock, sleep=clock.sleep)
    await run_ticks(timer, ticks, 3)
    assert ticks == [1.0, 2.0, 3.0]
    assert (timer.ticks, timer.errors) == (2, 1)
    assert "timer hb failed at tick 1.000" in caplog.text and "broker gone" in caplog.text


@pytest.mark.parametrize("interval", [0, -1.0])
def test_an_interval_must_be_above_zero(interval: float) -> None:
    async def fire(tick: float) -> None:
        pass

    with pytest.raises(ValueError, match="needs an interval above zero"):
        FlowTimer("hb", interval, fire)


def test_a_timer_step_makes_one_record_per_tick_and_dead_letters_a_failing_value() -> None:
    dead: list = []
    good = TimerStep(n.Timer("hb", interval_ms=1000, value=MakeRecord((("at", Meta("timestamp")),
                                                                          ("up", Literal(True))))), dead.append)
    seen: list = []
    sink = TimerStep(n.Timer("x", interval_ms=1, value=Literal(0)), dead.append)
    sink.push = seen.extend  # type: ignore[method-assign]
    good.successors.append(sink)
    assert good.fire(5000) is True
    assert seen == [(None, {"at": 5000, "up": True}, 5000, None)]

    bad = TimerStep(n.Timer("bad", interval_ms=1000, value=udf("math:sqrt", -1).expr), lambda *a: dead.append(a))
    assert bad.fire(7000) is False
    (rec, error, stage), = dead
    assert (rec, type(error), stage) == ((None, None, 7000, None), ValueError, "bad")


# ---------------------------------------------------------------------------- in the worker


async def started(flow: Flow, clock: FakeClock) -> tuple[MemoryTransport, Worker]:
    transport = MemoryTransport()
    await transport.start()
    worker = Worker(plan(flow.topology()), transport,
                    WorkerOptions(poll_timeout=0.005, timer_clock=clock, timer_sleep=clock.sleep))
    await worker.start()
    return transport, worker


async def records(transport: MemoryTransport, topic: str, partitions: int = 1) -> list[tuple]:
    out = []
    for p in range(partitions):
        for m in await transport.broker.read(TP(topic, p), 0, 10_000):
            out.append((orjson.loads(m.key) if m.key is not None else None, orjson.loads(m.value) if m.value is not None else None, m.timestamp,
                        dict((k, v.decode()) for k, v in m.headers if k.startswith("dataflow."))))
    return out


async def run_ticks_of(worker: Worker, clock: GatedClock, sent: dict[str, int]) -> None:
    """Run until the gated clock's ticks are done and `sent` topics have their records, then stop."""
    task = asyncio.ensure_future(worker.run())
    await until(lambda: sum(t.ticks for t in worker.timers) == clock.limit, f"{clock.limit} ticks")
    await until(lambda: all(worker.monitor.sent_by_topic.get(t, 0) >= c for t, c in sent.items()), str(sent))
    worker.request_stop()
    await task
    await worker.stop()


async def test_each_tick_sends_one_record_with_a_null_key_and_the_tick_time() -> None:
    flow = Flow("hb", partitions=1)
    flow.every("10s", value={"service": "fraud", "at": timestamp()}, name="heartbeat").to("heartbeats")
    clock = GatedClock(start=1_000.0, limit=3, lateness=0.004)
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"heartbeats": 3})
    assert await records(transport, "heartbeats") == [
        (None, {"service": "fraud", "at": 1_010_000}, 1_010_000, {}),
        (None, {"service": "fraud", "at": 1_020_000}, 1_020_000, {}),
        (None, {"service": "fraud", "at": 1_030_000}, 1_030_000, {}),
    ]
    assert clock.sleeps == [10.0, 9.996, 9.996]  # drift correction in the worker too
    assert worker.monitor.as_dict()["events_by_agent"] == {"heartbeat": 3}
    await transport.stop()


async def test_a_stalled_worker_skips_ticks_rather_than_sending_a_burst() -> None:
    flow = Flow("hb", partitions=1)
    flow.every("10s", value=timestamp(), name="heartbeat").to("heartbeats")
    clock = GatedClock(start=0.0, limit=3, late={1: 25.0})  # the second sleep wakes at 45 s
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"heartbeats": 3})
    assert [r[2] for r in await records(transport, "heartbeats")] == [10_000, 40_000, 50_000]
    assert worker.timers[0].skipped == 2
    await transport.stop()


async def test_stateless_steps_after_a_timer_run_on_its_records() -> None:
    flow = Flow("hb", partitions=1)
    (flow.every("1s", value={"n": timestamp() / 1000}, name="ticks")
     .filter(col("n") != 2).map({"n": col("n"), "even": col("n") % 2 == 0}).to("out"))
    clock = GatedClock(start=0.0, limit=4)
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"out": 3})
    assert [r[1] for r in await records(transport, "out")] == [
        {"n": 1.0, "even": False}, {"n": 3.0, "even": False}, {"n": 4.0, "even": True}]
    await transport.stop()


async def test_timer_records_reach_a_stateful_step_through_its_repartition_topic() -> None:
    flow = Flow("hb", partitions=2)
    ticks = flow.every("1m", value={"kind": "tick", "at": timestamp()}, name="ticks")
    ticks.group_by("kind").aggregate(n=agg.count(), last=agg.max("at"), name="per_kind").changes().to("counts")
    clock = GatedClock(start=0.0, limit=3)
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"counts": 3})
    assert [r[:2] for r in await records(transport, "counts", partitions=2)] == [
        ("tick", {"n": 1, "last": 60_000}), ("tick", {"n": 2, "last": 120_000}), ("tick", {"n": 3, "last": 180_000})]
    await transport.stop()


async def test_a_timer_merged_with_a_topic() -> None:
    flow = Flow("mix", partitions=1)
    ticks = flow.every("1s", value="tick", name="ticks")
    words = flow.source("words", value=str)
    ticks.merge(words, name="both").map(fn.upper(col("_value"))).to("out")
    clock = GatedClock(start=0.0, limit=2)
    transport, worker = await started(flow, clock)
    await worker.producer.send_batch([ProducerRecord("words", None, b'"a"')])
    await run_ticks_of(worker, clock, {"out": 3})
    assert sorted(r[1] for r in await records(transport, "out")) == ["A", "TICK", "TICK"]
    await transport.stop()


async def test_a_failing_timer_value_goes_to_the_dead_letters_and_the_timer_goes_on() -> None:
    flow = Flow("hb", partitions=1)
    flow.every("1s", value={"root": udf("math:sqrt", -1)}, name="broken").to("out")
    clock = GatedClock(start=0.0, limit=2)
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"hb-dead-letters": 2})
    assert await records(transport, "out") == []
    assert await records(transport, "hb-dead-letters") == [
        (None, None, ts, {"dataflow.stage": "broken", "dataflow.error": "ValueError: math domain error"})
        for ts in (1000, 2000)]
    assert worker.monitor.as_dict()["dead_letters_by_stage"] == {"broken": 2}
    await transport.stop()


async def test_a_step_failing_on_a_timer_record_dead_letters_its_value() -> None:
    flow = Flow("hb", partitions=1)
    flow.every("1s", value={"n": -1}, name="t").map(udf("math:sqrt", col("n")), name="root").to("out")
    clock = GatedClock(start=0.0, limit=1)
    transport, worker = await started(flow, clock)
    await run_ticks_of(worker, clock, {"hb-dead-letters": 1})
    assert await records(transport, "hb-dead-letters") == [
        (None, {"n": -1}, 1000, {"dataflow.stage": "root", "dataflow.error": "ValueError: math domain error"})]
    await transport.stop()


async def test_until_idle_stops_when_the_inputs_are_done_whatever_the_timers() -> None:
    flow = Flow("mix", partitions=1)
    flow.every("1s", value="tick", name="ticks").to("out")
    flow.source("words", value=str).to("out")
    clock = GatedClock(start=0.0, limit=0)  # the timer never gets its first tick
    transport, worker = await started(flow, clock)
    await worker.producer.send_batch([ProducerRecord("words", None, b'"a"')])
    await worker.run(until_idle=True)
    assert [r[1] for r in await records(transport, "out")] == ["a"]
    assert all(task.done() for task in worker._timer_tasks)  # stopped with the run
    await worker.stop()
    await transport.stop()


async def test_a_pipeline_of_timers_alone_has_no_consumer_and_returns_at_once_until_idle() -> None:
    flow = Flow("hb", partitions=1)
    flow.every("1s", value="tick", name="ticks").to("out")
    clock = GatedClock(start=0.0, limit=0)
    transport, worker = await started(flow, clock)
    assert worker.consumer is None
    await worker.run(until_idle=True)
    await worker.stop()
    assert worker.timers[0].ticks == 0
    await transport.stop()


async def test_a_pipeline_of_timers_alone_on_the_local_log_commits_each_tick(tmp_path: Path) -> None:
    """The embedded log writes outputs in transactions; with no consume loop each tick commits."""
    from dataflow.transport.base import open_transport

    flow = Flow("hb", partitions=1)
    flow.every("1s", value=timestamp(), name="ticks").to("out")
    clock = GatedClock(start=0.0, limit=2)
    async with open_transport(None, str(tmp_path)) as transport:
        worker = Worker(plan(flow.topology()), transport, WorkerOptions(timer_clock=clock, timer_sleep=clock.sleep))
        await worker.start()
        task = asyncio.ensure_future(worker.run())
        await until(lambda: worker.timers[0].ticks == 2, "2 ticks")
        consumer = transport.consumer("reader", ["out"])
        await consumer.start()
        assert await consumer.end_offsets({TP("out", 0)}) == {TP("out", 0): 2}  # visible before any stop
        await consumer.stop()
        worker.request_stop()
        await task
        await worker.stop()


# ---------------------------------------------------------------------------- dataflow run


async def test_dataflow_run_sends_heartbeats_until_stopped(tmp_path: Path) -> None:
    (tmp_path / "hb.flow").write_text(
        'pipeline hb\ntopic heartbeats\n'
        'stream heartbeat = every 50ms emit { service: "fraud", at: now(), tick: _timestamp }\n'
        '  | to topic heartbeats\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dataflow.cli", "run", "hb.flow", "--broker", "memory://", "-o", "heartbeats=-",
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        first = orjson.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    finally:
        proc.send_signal(signal.SIGINT)
    rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err.decode()  # stopped by Ctrl-C
    beats = [first, *(orjson.loads(line) for line in rest.splitlines())]
    for beat in beats:
        assert beat["key"] is None and beat["topic"] == "heartbeats"
        assert set(beat["value"]) == {"service", "at", "tick"} and beat["value"]["service"] == "fraud"
        assert beat["value"]["tick"] == beat["timestamp"]
        assert isinstance(beat["value"]["at"], int)
    ticks = [b["timestamp"] for b in beats]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    assert all((b - a) % 50 == 0 for a, b in zip(ticks, ticks[1:]))  # on the grid, missed ticks skipped
    assert "wrote heartbeats:" in err.decode()
