"""The injected clock. Everything that waits or timestamps takes one.

`SimClock` steps a fixed dt as fast as the CPU allows, so a 30-minute session simulates in
seconds, deterministically. `RealClock` paces the same loop in wall time for a real table.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the control loop needs from time."""

    dt: float

    def now(self) -> float:
        """Seconds since the clock started."""
        ...

    def wait_next(self) -> float:
        """Block until the next control period starts; return its time."""
        ...

    def start(self) -> None:
        """Mark the start of the paced run (set-up may take a while before it)."""
        ...

    @property
    def simulated(self) -> bool:
        """True when time is simulated (no waiting)."""
        ...


class SimClock:
    """Fixed-step simulated time; `wait_next` only advances the counter."""

    def __init__(self, dt: float) -> None:
        if not dt > 0.0:
            raise ValueError(f"dt must be > 0 s, got {dt}")
        self.dt = dt
        self._ticks = 0

    def now(self) -> float:
        """Simulated seconds."""
        return self._ticks * self.dt

    def wait_next(self) -> float:
        """Advance one period and return the new time."""
        self._ticks += 1
        return self.now()

    def advance(self, ticks: int) -> float:
        """Advance several periods at once (block simulation)."""
        self._ticks += ticks
        return self.now()

    def start(self) -> None:
        """Nothing to pace."""

    @property
    def simulated(self) -> bool:
        return True


class RealClock:
    """Wall-time clock on the monotonic counter, pacing periods of `dt` seconds.

    Periods are scheduled on absolute deadlines, so a late period does not push every later
    one back (no drift); a period that is overrun is counted, not silently absorbed.
    """

    def __init__(self, dt: float, *, speed: float = 1.0) -> None:
        if not dt > 0.0:
            raise ValueError(f"dt must be > 0 s, got {dt}")
        if not speed > 0.0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.dt = dt
        self.speed = speed
        self._t0 = time.monotonic()
        self._ticks = 0
        self.overruns = 0

    def start(self) -> None:
        """Restart the deadlines now, so time spent in set-up is not caught up in a burst."""
        self._t0 = time.monotonic()
        self._ticks = 0

    def now(self) -> float:
        """Session seconds (scaled by speed)."""
        return self._ticks * self.dt

    def wall(self) -> float:
        """Wall seconds since start."""
        return time.monotonic() - self._t0

    def wait_next(self) -> float:
        """Sleep until the next period's deadline."""
        self._ticks += 1
        deadline = self._t0 + self._ticks * self.dt / self.speed
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        else:
            self.overruns += 1
        return self.now()

    def advance(self, ticks: int) -> float:
        """Advance several periods, sleeping until the last one's deadline."""
        self._ticks += ticks - 1
        return self.wait_next()

    @property
    def simulated(self) -> bool:
        return False
