"""Background work of an app: one-shot tasks, interval timers and cron jobs.

* :class:`Timer` runs a function every ``interval`` seconds on a fixed grid: the n-th run
  is due at ``start + n * interval``. Time spent in the function, and a loop that wakes
  up late, shorten the next sleep instead of pushing every later run back (drift
  correction); a run that overruns whole intervals skips the ticks it missed rather
  than running them back to back.
* :class:`Crontab` runs a function at the times a cron spec names (parsed by
  ``croniter``), in a given time zone.

Both take a ``clock`` and a ``sleep`` so tests can drive them with a fake clock
(:class:`dataflow.runtime.testing.FakeClock`); the app uses the event loop's clock.

>>> round(next_tick(start=100.0, now=100.0, interval=2.0), 6)   # the first run: one interval in
2.0
>>> round(next_tick(start=100.0, now=102.3, interval=2.0), 6)   # the run took 0.3 s: sleep less
1.7
>>> round(next_tick(start=100.0, now=105.1, interval=2.0), 6)   # overran the tick due at 104
0.9
>>> datetime.fromtimestamp(next_cron_time("30 18 * * *", datetime(2024, 1, 1, 12, tzinfo=timezone.utc).timestamp()),
...                        timezone.utc).isoformat()
'2024-01-01T18:30:00+00:00'
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataflow.runtime.app import App

__all__ = ["Crontab", "Task", "Timer", "next_cron_time", "next_tick"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


def next_tick(*, start: float, now: float, interval: float) -> float:
    """Seconds from ``now`` to the next tick of the grid ``start + n * interval`` (n >= 1)
    that is still ahead."""
    ticks = math.floor((now - start) / interval + 1e-9) + 1
    return max(0.0, start + ticks * interval - now)


def next_cron_time(cron_format: str, after: float, tz: tzinfo = timezone.utc) -> float:
    """Epoch seconds of the first time of ``cron_format`` strictly after ``after``."""
    from croniter import croniter

    return float(croniter(cron_format, datetime.fromtimestamp(after, tz)).get_next(float))


def _call_with_app(fun: Callable[..., Any], app: App) -> Any:
    """Faust's convention: the function takes no argument, or the app."""
    try:
        params = inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return fun()
    return fun(app) if params else fun()


class Task:
    """An async function run once when the app has started (``@app.task``)."""

    def __init__(self, fun: Callable[..., Awaitable[Any]], *, name: str | None = None) -> None:
        if not inspect.iscoroutinefunction(fun):
            raise TypeError(f"{getattr(fun, '__name__', fun)!r} must be an async def function")
        self.fun = fun
        self.name = name or fun.__name__
        self.runs = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    async def _run_once(self, app: App) -> None:
        self.runs += 1
        try:
            await _call_with_app(self.fun, app)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failing run must not end the schedule
            self.errors += 1
            logger.exception("%s %s of app %s failed", type(self).__name__.lower(), self.name, app.name)

    async def run(self, app: App) -> None:
        await self._run_once(app)


class Timer(Task):
    """Runs ``fun`` every ``interval`` seconds, the first time one interval after start.

    ``skipped`` counts ticks missed because a run overran.
    """

    def __init__(
        self,
        fun: Callable[..., Awaitable[Any]],
        interval: float,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"timer interval must be > 0 seconds, got {interval!r}")
        super().__init__(fun, name=name)
        self.interval = float(interval)
        self.clock = clock
        self.sleep = sleep
        self.skipped = 0

    async def run(self, app: App) -> None:
        clock = self.clock or asyncio.get_running_loop().time
        start = clock()
        due = start + self.interval
        while True:
            await self.sleep(max(0.0, due - clock()))
            now = clock()
            if now < due:
                continue  # woke up early: sleep the rest
            await self._run_once(app)
            now = clock()
            next_due = now + next_tick(start=start, now=now, interval=self.interval)
            missed = round((next_due - due) / self.interval) - 1
            if missed > 0:
                self.skipped += missed
                logger.warning("timer %s of app %s overran %d tick(s) of %g s; skipped them",
                               self.name, app.name, missed, self.interval)
            due = next_due


class Crontab(Task):
    """Runs ``fun`` at the times of a cron spec (``"*/5 * * * *"``, ``"30 18 * * mon-fri"``),
    evaluated in the time zone ``tz`` (default UTC). ``clock`` is wall-clock epoch seconds.
    """

    def __init__(
        self,
        fun: Callable[..., Awaitable[Any]],
        cron_format: str,
        *,
        tz: tzinfo | None = None,
        name: str | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        from croniter import croniter

        if not croniter.is_valid(cron_format):
            raise ValueError(f"invalid cron spec {cron_format!r}; hint: five fields, e.g. '*/5 * * * *'")
        super().__init__(fun, name=name)
        self.cron_format = cron_format
        self.timezone = tz or timezone.utc
        self.clock = clock
        self.sleep = sleep

    async def run(self, app: App) -> None:
        due = next_cron_time(self.cron_format, self.clock(), self.timezone)
        while True:
            now = self.clock()
            if now < due:
                await self.sleep(due - now)
                continue
            await self._run_once(app)
            due = next_cron_time(self.cron_format, max(due, self.clock()), self.timezone)
