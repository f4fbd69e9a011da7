"""Shown phases, readiness, summaries and the API's JSON of services, read from their info.

Pure (no trio import). Shared by the HTTP control plane (``trisup.http``), the
systemd notifier (``trisup.systemd``) and the command line's tables. Every answer
is read from `ServiceInfo.phase` (written by the service's runner), so it is exact
at the moment of the snapshot: nothing is inferred from other fields or events.

Where one word stands for a service (the console's badge and timeline, the tables'
PHASE column, summaries), it is its *shown phase*: ``"stopped"`` when it is held
(stopped by hand, ``ServiceInfo.stopped``), else its phase. Readiness: a service
counts when it is meant to run (not held); it is ready when its phase is
``running`` (in ``serve`` and ready) or ``completed``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ._backoff import next_delay
from ._config import ServiceConfig
from ._lifecycle import LIVE
from ._status import Phase, RestartPolicy, ServiceInfo

__all__ = [
    "OUTLOOK_FAILURES",
    "SHOWN",
    "Outlook",
    "api_dict",
    "counts",
    "is_ready",
    "not_ready",
    "outlook",
    "shown",
    "shown_phase",
    "summary",
]

SHOWN: tuple[str, ...] = (
    "running",
    "starting",
    "waiting_deps",
    "stopping",
    "backoff",
    "group_wait",
    "stopped",
    "failed",
    "completed",
    "idle",
    "removed",
)
"""Every shown phase (each `Phase` and ``"stopped"``), in the order summaries list them."""

_READY = frozenset({Phase.RUNNING, Phase.COMPLETED})


def shown(phase: Phase, held: bool) -> str:
    """The one word shown for a service in *phase*: ``"stopped"`` if *held*, else the phase."""
    return "stopped" if held else str(phase)


def shown_phase(info: ServiceInfo) -> str:
    """The one word shown for the service of *info* (see `shown`)."""
    return "stopped" if info.stopped else str(info.phase)


def is_ready(info: ServiceInfo) -> bool:
    """Whether the service is ready: running (in ``serve``, ready) or completed."""
    return info.phase in _READY


def not_ready(infos: Iterable[ServiceInfo], *, exclude: Iterable[str] = ()) -> list[str]:
    """The critical services meant to run (not held) that are not ready, in order.

    A service with ``critical=False``, or named in *exclude*, never counts.
    """
    skip = frozenset(exclude)
    return [i.name for i in infos if counts(i) and i.name not in skip and not is_ready(i)]


def counts(info: ServiceInfo) -> bool:
    """Whether readiness counts *info*: a critical service meant to run (not held)."""
    return info.critical and not info.stopped


def api_dict(info: ServiceInfo) -> dict[str, object]:
    """The HTTP API's JSON object of a service: ``to_dict()``'s seed keys, ``phase``,
    ``critical`` and ``depends_on`` (its direct dependencies).

    A service whose details hold a ``pid`` (a `ProcessService`) also gets ``pid``.
    """
    data = info.to_dict()
    data["phase"] = str(info.phase)
    data["critical"] = info.critical
    data["depends_on"] = list(info.depends_on)
    if "pid" in info.details:
        pid = info.details["pid"]
        data["pid"] = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    return data


def summary(manager: str, infos: Iterable[ServiceInfo]) -> str:
    """One line: the manager's name, the number of services and their shown phases.

    >>> summary("app", [])
    'app: 0 services'
    """
    counts: dict[str, int] = dict.fromkeys(SHOWN, 0)
    total = 0
    for info in infos:
        counts[shown_phase(info)] += 1
        total += 1
    parts = [f"{n} {p}" for p, n in counts.items() if n]
    noun = "service" if total == 1 else "services"
    head = f"{manager}: {total} {noun}"
    return ", ".join([head, *parts])


OUTLOOK_FAILURES = 1000
"""How many failures `outlook` replays before it says "not within that many"."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outlook:
    """A service's restart schedule from now, if every attempt fails at once.

    Attributes:
        next_attempt_at: wall-clock seconds of its next attempt while it waits
            out a backoff, else ``None``.
        remaining_failures: the failure that marks it ``FAILED`` (1: the next
            one), 0 if it is failed already, ``None`` if it is restarted for
            ever (or not within `OUTLOOK_FAILURES`: see *forever*).
        gives_up_at: wall-clock seconds of that failure, or ``None`` (also while
            the service does not run: when it starts is not known).
        forever: it is never marked ``FAILED`` however many failures.
        text: the same in words (times of day in UTC).
    """

    next_attempt_at: float | None
    remaining_failures: int | None
    gives_up_at: float | None
    forever: bool
    text: str


def _duration(seconds: float) -> str:
    """``"8 s"``, ``"0.4 s"``, ``"2 min 5 s"``, ``"1 h 2 min"``."""
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _clock(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%H:%M:%S UTC")


def outlook(info: ServiceInfo, config: ServiceConfig, now: float | None = None) -> Outlook:
    """The restart schedule of *info*'s service from *now* (wall-clock seconds; default: now).

    Replayed by `ServiceConfig.schedule` (the runner's own arithmetic) from the
    service's counters: ``restart_count``, ``current_delay``, and the restarts
    in the window (the oldest at ``window_start``, the others taken at its last
    start: the snapshot keeps no more, so the time given is a close bound). In
    ``BACKOFF`` the next attempt is the runner's own deadline
    (``ServiceInfo.next_attempt``, jitter applied); the restart it begins is
    counted as the runner counts it. Later delays are without jitter. A service
    that does not run (held, idle, completed) is previewed as a start would
    leave it (counters cleared), with no time to give up at.
    """
    now = time.time() if now is None else now
    if info.phase is Phase.FAILED:
        text = "failed: not restarted until started by hand"
        return Outlook(
            next_attempt_at=None, remaining_failures=0, gives_up_at=None, forever=False, text=text
        )
    live = info.phase in LIVE and not info.stopped
    times: list[float] = []
    if live and info.window_restarts and info.window_start is not None:
        oldest = info.window_start.timestamp() - now
        last = info.last_service_start
        newest = max(oldest, last.timestamp() - now) if last is not None else oldest
        times = [oldest] + [newest] * (info.window_restarts - 1)
    waiting = info.next_attempt if info.phase is Phase.BACKOFF and live else None
    if waiting is not None:  # the restart counted when the wait ends, as the runner does
        wait = max(0.0, waiting.timestamp() - now)
        times.append(wait)
        start, restarts = wait, info.restart_count + 1
        delay = next_delay(info.current_delay, config.backoff_multiplier, config.max_restart_delay)
        head = f"next attempt in {_duration(wait)}"
    elif live:
        start, restarts, delay = 0.0, info.restart_count, info.current_delay
        head = "no restart pending"
    else:  # a start clears the counters: its schedule is a fresh one, at no known time
        start, restarts, delay = 0.0, 0, config.restart_delay
        head = "not running"
    if config.restart_policy is RestartPolicy.NEVER:
        remaining: int | None = 1
        failed_at: float | None = start
        forever = False
    else:
        plan = config.schedule(
            OUTLOOK_FAILURES, now=start, restarts=restarts, window_times=times, delay=delay
        )
        failed_at, forever = plan.failed_at, plan.forever and plan.failed_at is None
        remaining = None if failed_at is None else len(plan.delays) + 1
    gives_up_at = None if failed_at is None or not live else now + failed_at
    noun = "failure" if remaining == 1 else "failures"
    if remaining is not None and gives_up_at is not None:
        tail = f"gives up after {remaining} more {noun} at {_clock(gives_up_at)}"
    elif remaining is not None:
        tail = f"once started, gives up after {remaining} {noun} in a row"
    elif forever:
        tail = "restarted for ever"
    else:
        tail = f"not given up within {OUTLOOK_FAILURES} failures"
    return Outlook(
        next_attempt_at=None if waiting is None else now + start,
        remaining_failures=remaining,
        gives_up_at=gives_up_at,
        forever=forever,
        text=f"{head}; {tail}",
    )
