"""Backoff arithmetic: delay growth, jitter and the sliding restart window.

Pure: no trio import; every function takes the current time as an argument.
"""

from __future__ import annotations

import random
from collections import deque

__all__ = ["RestartWindow", "jittered", "next_delay"]


def next_delay(current: float, multiplier: float, cap: float) -> float:
    """The delay after *current*: multiplied, then capped."""
    return min(current * multiplier, cap)


def jittered(delay: float, jitter: float, rng: random.Random) -> float:
    """*delay* times a uniform factor in ``[1, 1 + jitter]`` (no draw when 0)."""
    if jitter <= 0:
        return delay
    return delay * (1.0 + jitter * rng.random())


class RestartWindow:
    """The times of the restarts within a sliding window.

    A restart at time ``t`` is counted at ``now`` while ``now - t < window``.
    Entries older than the window are dropped whenever the window is counted,
    and at most *limit* entries are kept when a limit is set (a decision never
    needs more), so the history stays bounded.
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._times)

    def record(self, now: float, limit: int) -> None:
        """Count a restart at *now*, keeping at most *limit* entries (0: no cap)."""
        self._times.append(now)
        if limit and len(self._times) > limit:
            self._times.popleft()

    def count(self, now: float, window: float) -> int:
        """Drop the restarts that left the window; return how many remain."""
        times = self._times
        horizon = now - window
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def oldest(self) -> float | None:
        """The time of the oldest restart still held, or ``None``."""
        return self._times[0] if self._times else None

    def clear(self) -> None:
        """Forget every restart."""
        self._times.clear()
