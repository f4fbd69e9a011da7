"""Backoff arithmetic: delay growth, jitter and the sliding restart window.

Pure: no trio import; every function takes the current time as an argument.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
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
    """Why the restart path gives up now (SPEC §4, steps 1 and 2), or ``None`` to go on.

    *restart_count* counts the restarts since the last manual start, restart or
    reset; *in_window* the restarts still within *restart_window* at this moment.
    The reason is what the ``ServiceFailed`` event and the log say.
    """
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
        reason: why it is marked ``FAILED``, as the runner says it
            (``"max_restarts=3 reached"``), or ``None``.
        forever: it is never marked ``FAILED``, however many failures: there is
            no ``max_restarts`` and the restarts within the window have settled
            below ``max_restarts_in_window`` (or there is no window limit). Only
            known once the preview has gone that far; jitter, which only
            lengthens the delays, does not change it.
        max_jitter: each delay may be up to this factor longer (``1 + jitter``).
    """

    starts: tuple[float, ...]
    delays: tuple[float, ...]
    failed_at: float | None
    reason: str | None = None
    forever: bool = False
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
    now: float = 0.0,
    restarts: int = 0,
    window_times: Iterable[float] = (),
    delay: float | None = None,
) -> Schedule:
    """Replay the restart path of SPEC §4 for up to *failures* immediate failures.

    It stops early when the service gives up. The decisions are `give_up_reason`,
    `RestartWindow` and `next_delay`, as in the runner. By default the service
    starts afresh at 0; a service's state can be given instead: the first
    attempt at *now*, *restarts* counted already (``restart_count``), the times
    of the restarts still in the window (*window_times*, at most *now*), and the
    *delay* before the next restart (``current_delay``).
    """
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError(f"failures must be a non-negative int, not {failures!r}")
    starts = [now]
    delays: list[float] = []
    window = RestartWindow()
    for t in window_times:
        window.record(t, max_restarts_in_window)
    delay = restart_delay if delay is None else delay
    failed_at: float | None = None
    reason: str | None = None
    # For ever: once the last max_restarts_in_window delays all equal the next one
    # (growth has stopped) and a decision let it go on, every later decision sees
    # the same window and says the same.
    forever = max_restarts == 0 and max_restarts_in_window == 0
    same = 0  # how many of the last delays equal the last one
    for _ in range(failures):
        reason = give_up_reason(
            restart_count=restarts + len(delays),
            max_restarts=max_restarts,
            in_window=window.count(now, restart_window),
            max_restarts_in_window=max_restarts_in_window,
            restart_window=restart_window,
        )
        if reason is not None:
            failed_at = now
            break
        if not max_restarts and same >= max_restarts_in_window and delays and delays[-1] == delay:
            forever = True
        now += delay
        same = same + 1 if delays and delays[-1] == delay else 1
        delays.append(delay)
        starts.append(now)
        window.record(now, max_restarts_in_window)
        delay = next_delay(delay, backoff_multiplier, max_restart_delay)
    return Schedule(
        starts=tuple(starts),
        delays=tuple(delays),
        failed_at=failed_at,
        reason=reason,
        forever=forever,
        max_jitter=1.0 + jitter,
    )
