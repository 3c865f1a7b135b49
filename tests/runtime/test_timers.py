"""@app.task, @app.timer and @app.crontab, driven by a fake clock (no timed assertions)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from dataflow.runtime.app import App
from dataflow.runtime.testing import FakeClock
from dataflow.runtime.timers import Crontab, Timer


async def run_until(task_count: int, runs: list, job) -> None:  # type: ignore[no-untyped-def]
    """Run a timer or cron job until it has run ``task_count`` times."""
    app = App("timers-test")
    future = asyncio.ensure_future(job.run(app))
    while len(runs) < task_count:
        await asyncio.sleep(0)
    future.cancel()
    await asyncio.gather(future, return_exceptions=True)


async def test_timer_runs_on_a_fixed_grid_correcting_run_time_and_late_wakeups() -> None:
    clock = FakeClock(start=1000.0, lateness=0.01)  # every wake-up is 10 ms late
    durations = [0.3, 0.1, 4.5, 0.0, 0.0]           # the third run overruns two ticks
    runs: list[float] = []

    async def tick() -> None:
        runs.append(round(clock(), 6))
        clock.advance(durations[len(runs) - 1])

    timer = Timer(tick, 2.0, clock=clock, sleep=clock.sleep)
    await run_until(5, runs, timer)

    # Each run starts on the grid 1000 + 2n (plus the 10 ms wake-up), whatever the last
    # run cost; a naive sleep(2.0) loop would start them at 1002.01, 1004.32, 1006.43 ...
    assert runs == [1002.01, 1004.01, 1006.01, 1012.01, 1014.01]
    assert clock.sleeps[:5] == [2.0, 1.69, 1.89, 1.49, 1.99]
    assert (timer.runs, timer.skipped, timer.errors) == (5, 2, 0)   # the ticks at 1008 and 1010


async def test_a_failing_timer_run_is_logged_and_the_timer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(clock())
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    timer = Timer(flaky, 5.0, clock=clock, sleep=clock.sleep, name="flaky")
    await run_until(3, runs, timer)
    assert runs == [5.0, 10.0, 15.0]
    assert timer.errors == 1
    assert "timer flaky of app timers-test failed" in caplog.text and "first run fails" in caplog.text


def test_timer_interval_must_be_positive() -> None:
    async def noop() -> None: ...

    with pytest.raises(ValueError, match="timer interval must be > 0 seconds, got 0"):
        Timer(noop, 0)
    with pytest.raises(TypeError, match="must be an async def function"):
        Timer(lambda: None, 1.0)


async def test_crontab_runs_at_the_cron_times_in_its_time_zone() -> None:
    start = datetime(2024, 1, 1, 12, 0, 10, tzinfo=timezone.utc).timestamp()
    clock = FakeClock(start=start)
    runs: list[str] = []

    async def report() -> None:
        runs.append(datetime.fromtimestamp(clock(), timezone.utc).strftime("%d %H:%M:%S"))
        clock.advance(3.0)  # a run takes a while: the next time is still the next slot

    await run_until(3, runs, Crontab(report, "*/15 * * * *", clock=clock, sleep=clock.sleep))
    assert runs == ["01 12:15:00", "01 12:30:00", "01 12:45:00"]

    oslo_winter = timezone(timedelta(hours=1))
    clock2 = FakeClock(start=start)
    runs2: list[str] = []

    async def evening() -> None:
        runs2.append(datetime.fromtimestamp(clock2(), timezone.utc).strftime("%d %H:%M"))

    await run_until(2, runs2, Crontab(evening, "30 18 * * *", tz=oslo_winter, clock=clock2, sleep=clock2.sleep))
    assert runs2 == ["01 17:30", "02 17:30"]  # 18:30 at UTC+1


def test_crontab_rejects_a_bad_spec() -> None:
    async def noop() -> None: ...

    with pytest.raises(ValueError, match=r"invalid cron spec '61 \* \* \* \*'; hint: five fields"):
        Crontab(noop, "61 * * * *")


async def test_app_task_runs_once_after_start_and_timers_run_until_stop() -> None:
    app = App("scheduled", broker="memory://")
    numbers = app.topic("numbers")
    seen: list[int] = []
    started_with: list[tuple[str, bool]] = []

    @app.agent(numbers)
    async def collect(stream):
        async for value in stream:
            seen.append(value)

    @app.task
    async def seed(app):  # type: ignore[no-untyped-def]
        # After start: the agent waits on its stream and the consumer has joined.
        started_with.append((app.name, collect.actors[0].ready.is_set()))
        await numbers.send(value=0)

    clock = FakeClock()
    ticks: list[float] = []

    @app.timer(interval=10.0)
    async def every_ten() -> None:
        ticks.append(clock())
        await numbers.send(value=len(ticks))

    timer = app.tasks[1]
    timer.clock, timer.sleep = clock, clock.sleep  # type: ignore[attr-defined]
    await app.start()
    while len(ticks) < 3:
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="declared after app 'scheduled' started"):
        app.timer(1.0)(every_ten)
    await app.stop()
    assert started_with == [("scheduled", True)]
    assert ticks[:3] == [10.0, 20.0, 30.0]
    assert seen[:4] == [0, 1, 2, 3] and sorted(seen) == list(range(len(ticks) + 1))


async def test_run_until_idle_waits_for_tasks() -> None:
    app = App("batch", broker="memory://")
    done: list[str] = []
    release = asyncio.Event()

    @app.task()
    async def slow_start() -> None:
        await release.wait()
        done.append("task")

    asyncio.get_running_loop().call_soon(release.set)
    await app.run_until_idle()
    assert done == ["task"]
