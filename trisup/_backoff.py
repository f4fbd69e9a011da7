"""Backoff arithmetic: delay growth, jitter and the sliding restart window.

Pure: no trio import; every function takes the current time as an argument.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ["RestartWindow", "Schedule", "give_up_reason", "jittered", "next_delay", "preview"]


def next_delay(current: float, multiplier: float, cap: float) -> float:
    """The delay after *current*: multiplied, then capped."""
    return min(current * multiplier, cap)


def give_up_reason(
    *,
    restart_count: int,
    max_restarts: int,
    in_window: int,
    max_restarts_in_window: int,
    restart_window: float,
) -> str | None:
    """Why the restart path marks a service ``FAILED`` now (SPEC §4 steps 1-2), or ``None``."""
    if max_restarts > 0 and restart_count >= max_restarts:
        return f"max_restarts={max_restarts} reached"
    if max_restarts_in_window > 0 and in_window >= max_restarts_in_window:
        return f"{in_window} restarts within restart_window={restart_window:g}s"
    return None


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
    needs more), so the history stays bounded. The deque is created on the
    first restart: most services never restart, and an empty deque costs more
    than the rest of a service's state.
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] | None = None

    def __len__(self) -> int:
        return len(self._times) if self._times is not None else 0

    def record(self, now: float, limit: int) -> None:
        """Count a restart at *now*, keeping at most *limit* entries (0: no cap)."""
        times = self._times
        if times is None:
            times = self._times = deque()
        times.append(now)
        if limit and len(times) > limit:
            times.popleft()

    def count(self, now: float, window: float) -> int:
        """Drop the restarts that left the window; return how many remain."""
        times = self._times
        if not times:
            return 0
        horizon = now - window
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def oldest(self) -> float | None:
        """The time of the oldest restart still held, or ``None``."""
        return self._times[0] if self._times else None

    def clear(self) -> None:
        """Forget every restart."""
        if self._times:
            self._times.clear()


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When a service that fails at once is started, and when it is marked failed.

    Attributes:
        starts: the time of each start, from 0 (jitter not applied).
        delays: the wait before each restart (``starts[i + 1] - starts[i]``).
        failed_at: when it is marked ``FAILED``, or ``None`` if it is still
            being restarted after the failures previewed.
        max_jitter: each delay may be up to this factor longer (``1 + jitter``).
    """

    starts: tuple[float, ...]
    delays: tuple[float, ...]
    failed_at: float | None
    max_jitter: float


def preview(
    *,
    failures: int,
    restart_delay: float,
    max_restart_delay: float,
    backoff_multiplier: float,
    max_restarts: int,
    restart_window: float,
    max_restarts_in_window: int,
    jitter: float,
) -> Schedule:
    """Replay the restart path of SPEC §4 for *failures* immediate failures."""
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError(f"failures must be a non-negative int, not {failures!r}")
    now = 0.0
    starts = [0.0]
    delays: list[float] = []
    window = RestartWindow()
    delay = restart_delay
    failed_at: float | None = None
    for _ in range(failures):
        if max_restarts > 0 and len(delays) >= max_restarts:
            failed_at = now
            break
        if max_restarts_in_window > 0 and (
            window.count(now, restart_window) >= max_restarts_in_window
        ):
            failed_at = now
            break
        now += delay
        delays.append(delay)
        starts.append(now)
        window.record(now, max_restarts_in_window)
        delay = next_delay(delay, backoff_multiplier, max_restart_delay)
    return Schedule(
        starts=tuple(starts), delays=tuple(delays), failed_at=failed_at, max_jitter=1.0 + jitter
    )
