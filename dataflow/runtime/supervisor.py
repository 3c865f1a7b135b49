"""Restart policy for crashed actors: at most ``max_restarts`` within ``over`` seconds.

A crashed actor is restarted while the policy allows it; one crash too many stops the
agent (with a logged error) instead of restarting in a tight loop.

>>> now = [0.0]
>>> sup = Supervisor(max_restarts=2, over=60.0, clock=lambda: now[0])
>>> sup.allow_restart(), sup.allow_restart(), sup.allow_restart()
(True, True, False)
>>> now[0] = 61.0
>>> sup.allow_restart()
True
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Supervisor"]


class Supervisor:
    def __init__(self, max_restarts: int = 10, over: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self.max_restarts = max_restarts
        self.over = over
        self._clock = clock
        self._restarts: deque[float] = deque()
        self.total_restarts = 0

    def allow_restart(self) -> bool:
        """Record a crash; ``True`` if a restart is within the bound."""
        now = self._clock()
        while self._restarts and now - self._restarts[0] >= self.over:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        self.total_restarts += 1
        return True
