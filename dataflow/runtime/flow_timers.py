"""Timers declared in a pipeline (`flow.every(...)`, `stream hb = every 10s emit ...`).

Each timer node of a plan becomes a :class:`TimerStep`, the entry of its compiled agent:
``fire(ts)`` evaluates the timer's value and pushes one record ``(None, value, ts, None)``
through the steps after it (``meta`` is None: the record comes from no message, so a
failing step dead-letters its value, not a message). A :class:`FlowTimer` keeps the
schedule and the worker (``runtime.worker``) does the rest of a tick under its batch
lock: fire, produce the outputs, commit when due.

The schedule is a fixed grid, as for ``@app.timer`` (``runtime.timers``): the n-th tick
is due at ``start + n * interval``, so time spent in a tick and a late wake-up shorten the
next sleep instead of pushing every later tick back (drift correction). A tick that comes
more than an interval late fires once, stamped with the latest grid time that has passed,
and the ticks in between are skipped (counted in ``skipped``), never fired in a burst.
``clock`` (epoch seconds) and ``sleep`` are injectable, so tests drive timers with
:class:`dataflow.runtime.testing.FakeClock`:

>>> from dataflow.runtime.testing import FakeClock
>>> clock, ticks = FakeClock(start=100.0, lateness=0.01), []
>>> async def fire(tick):
...     ticks.append(round(tick, 2))
...     clock.advance(4.2 if tick == 104.0 else 0.5)   # the tick of 104 takes until 108.21
>>> async def main():
...     timer = FlowTimer("hb", 2.0, fire, clock=clock, sleep=clock.sleep)
...     task = asyncio.ensure_future(timer.run())
...     while len(ticks) < 4:
...         await asyncio.sleep(0)
...     await stop_timers([task])
...     return timer.skipped
>>> asyncio.run(main()), ticks, clock.sleeps     # 106 was missed: skipped, and 108 fires late
(1, [102.0, 104.0, 108.0, 110.0], [2.0, 1.49, 1.29])
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..ir import nodes as n
from ..ir.expr import Scope
from ..ir.types import NULL
from .compile_expr import compile_function
from .engine import Dead, Rec, Step

__all__ = ["FlowTimer", "TimerStep", "stop_timers"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class TimerStep(Step):
    """A timer node in a compiled agent: each `fire(ts)` makes one record and pushes it on."""

    def __init__(self, node: n.Timer, dead: Dead):
        super().__init__(node.name)
        self.interval_ms = node.interval_ms
        self.value = compile_function(node.value, Scope(NULL, NULL))
        self.dead = dead

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        self.emit(batch)

    def fire(self, ts: int) -> bool:
        """Evaluate the value at tick time `ts` (epoch ms) and push the record; False if the
        value failed (it went to the dead letters)."""
        try:
            value = self.value(None, None, ts)
        except Exception as e:  # noqa: BLE001 - a failing value dead-letters its tick, the timer goes on
            self.dead((None, None, ts, None), e, self.name)
            return False
        self.push([(None, value, ts, None)])
        return True


class FlowTimer:
    """Calls ``await fire(tick)`` every ``interval`` seconds on the grid ``start + n * interval``
    (``tick`` is that grid time, in epoch seconds of ``clock``); the first tick one interval
    after ``run()`` starts.

    Cancelling ``run()`` lets a tick in progress finish first, so a stopping worker never
    leaves one half-produced. ``ticks`` counts the ticks fired, ``skipped`` those missed by
    a busy or late worker, ``errors`` the ticks whose ``fire`` raised (logged).
    """

    def __init__(self, name: str, interval: float, fire: Callable[[float], Awaitable[None]], *,
                 clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"timer {name!r} needs an interval above zero, got {interval!r} s")
        self.name = name
        self.interval = float(interval)
        self.fire = fire
        self.clock = clock or time.time
        self.sleep = sleep or asyncio.sleep
        self.ticks = 0
        self.skipped = 0
        self.errors = 0

    def __repr__(self) -> str:
        return f"<FlowTimer {self.name} every {self.interval:g}s>"

    async def run(self) -> None:
        start = round(self.clock(), 3)  # a whole millisecond, so tick times in ms stay on the grid exactly
        tick = 1  # the grid point due next: start + tick * interval
        while True:
            due = start + tick * self.interval
            now = self.clock()
            if now < due - 1e-9:
                await self.sleep(due - now)
                continue  # woke up early (or just in time): look again
            latest = math.floor((now - start) / self.interval + 1e-9)
            if latest > tick:
                self.skipped += latest - tick
                logger.warning("timer %s is %d tick(s) of %g s behind; skipped them", self.name, latest - tick,
                               self.interval)
                tick = latest
            await self._fire(start + tick * self.interval)
            tick += 1

    async def _fire(self, tick: float) -> None:
        job = asyncio.ensure_future(self._fire_safely(tick))
        try:
            await asyncio.shield(job)
        except asyncio.CancelledError:
            await job  # finish the tick in hand, then stop
            raise

    async def _fire_safely(self, tick: float) -> None:
        try:
            await self.fire(tick)
            self.ticks += 1
        except Exception:  # noqa: BLE001 - one failing tick must not end the schedule
            self.errors += 1
            logger.exception("timer %s failed at tick %.3f", self.name, tick)


async def stop_timers(tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel timer tasks and wait until they are done (a tick in progress completes)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()
