"""A wall clock that moves only when a test moves it.

The pipeline driver gives this clock to the pipeline's timers (``every 10s emit ...``) as
their clock and their ``sleep``: a timer asks to sleep until its next tick, and the tick
comes when the test advances the clock past it, however long the test really takes.

>>> import asyncio
>>> async def main():
...     clock, woke = ManualClock(100.0), []
...     async def timer():
...         while True:
...             await clock.sleep(10)
...             woke.append(clock())
...     task = asyncio.ensure_future(timer())
...     await asyncio.sleep(0)
...     clock.now = clock.next_deadline()   # what the driver does, one deadline at a time
...     clock.wake_due()
...     await asyncio.sleep(0)
...     sleeping = clock.sleeping   # it sleeps again, till 120
...     task.cancel()
...     return woke, sleeping
>>> asyncio.run(main())
([110.0], 1)
"""
from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["ManualClock"]


class ManualClock:
    """Epoch seconds that stand still until :attr:`now` is set; ``await sleep(s)`` returns
    once :meth:`wake_due` is called with the clock at or past ``now + s``."""

    def __init__(self, start: float) -> None:
        self.now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # sleepers due together wake in the order they slept

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        """The time in epoch milliseconds (how transports stamp records)."""
        return round(self.now * 1000)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        await future

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting for the clock (cancelled ones do not count)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def next_deadline(self) -> float | None:
        """When the earliest waiting sleep is due, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled
        return self._sleepers[0][0] if self._sleepers else None

    def wake_due(self) -> int:
        """Wake every sleep due at the current time; how many woke."""
        woken = 0
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
                woken += 1
        return woken
