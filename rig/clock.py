"""Time for the rig: one interface, two clocks.

``VirtualClock`` (fast mode) only moves when the runner advances it: deterministic, as fast as the
CPU allows. ``WallClock`` (wire mode) follows ``time.monotonic`` from its start, optionally sped up
(``speed`` > 1 compresses a long scenario; every component still sees one consistent clock).
Both give integer milliseconds since the scenario start.
"""
from __future__ import annotations

import asyncio
import time


class VirtualClock:
    def __init__(self, start_ms: int = 0):
        self._now = int(start_ms)

    def now_ms(self) -> int:
        return self._now

    def advance_to(self, t_ms: int) -> None:
        if t_ms < self._now:
            raise ValueError(f"virtual time cannot go back: {t_ms} < {self._now}")
        self._now = int(t_ms)

    async def sleep_until(self, t_ms: int) -> None:
        """Fast mode never waits: time jumps."""
        self.advance_to(max(self._now, t_ms))


class WallClock:
    def __init__(self, speed: float = 1.0):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = float(speed)
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000 * self.speed)

    async def sleep_until(self, t_ms: int) -> None:
        delay = (t_ms - self.now_ms()) / 1000 / self.speed
        if delay > 0:
            await asyncio.sleep(delay)
