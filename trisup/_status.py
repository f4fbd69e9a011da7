"""Enums, the `Metric` and `ServiceInfo` snapshots, and their JSON encoding.

Pure: no trio import. The JSON form is the Go package's: durations in integer
nanoseconds, ``current_delay`` as a Go duration string, times as RFC 3339 UTC.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import final

__all__ = [
    "ExitStatus",
    "Metric",
    "Phase",
    "RestartPolicy",
    "ServiceInfo",
    "ServiceStatus",
    "go_duration",
    "rfc3339",
    "to_nanoseconds",
]

ZERO_TIME = "0001-01-01T00:00:00Z"


class RestartPolicy(enum.IntEnum):
    """When a service that ended is started again."""

    ALWAYS = 0
    ON_FAILURE = 1
    NEVER = 2


class ServiceStatus(enum.StrEnum):
    """What a service is doing; see the status rules in the design notes."""

    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"
    CRASHING = "crashing"
    FAILED = "failed"
    COMPLETED = "completed"


class Phase(enum.StrEnum):
    """What a service's instance is doing now (``ServiceInfo.phase``).

    The lifecycle and its moves are written out in the design notes; the
    status is derived from the phase.

    .. versionadded:: 0.1.0
    """

    IDLE = "idle"
    WAITING_DEPS = "waiting_deps"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    GROUP_WAIT = "group_wait"
    COMPLETED = "completed"
    FAILED = "failed"
    REMOVED = "removed"


class ExitStatus(enum.IntEnum):
    """Exit codes of a supervised program, as carried by a `FatalError`."""

    SUCCESS = 0
    ERROR = 1
    NO_UPGRADE_AVAILABLE = 2
    RESTART = 3
    UPGRADE = 4

    def as_int(self) -> int:
        """Return the status as a plain ``int`` (for ``sys.exit``)."""
        return int(self)


def to_nanoseconds(seconds: float) -> int:
    """Round a duration in seconds to integer nanoseconds (Go's ``time.Duration``)."""
    if not math.isfinite(seconds):
        return (1 << 63) - 1 if seconds > 0 else -(1 << 63)
    return round(seconds * 1e9)


def _fraction(value: int, digits: int) -> str:
    """Format ``value / 10**digits`` the way Go does: no trailing zeros."""
    whole, frac = divmod(value, 10**digits)
    text = str(whole)
    if frac:
        text += "." + str(frac).rjust(digits, "0").rstrip("0")
    return text


def go_duration(seconds: float) -> str:
    """Format a duration as Go's ``time.Duration.String()`` does.

    >>> go_duration(0), go_duration(0.5), go_duration(1.5), go_duration(5400)
    ('0s', '500ms', '1.5s', '1h30m0s')
    """
    ns = to_nanoseconds(seconds)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_fraction(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_fraction(ns, 6)}ms"
    hours, rest = divmod(ns, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def rfc3339(moment: datetime | None) -> str:
    """Format a time as Go's JSON encoding of ``time.Time`` does, in UTC.

    A snapshot's times repeat from one snapshot to the next (a creation time
    never changes), so the text of a UTC time is cached (bounded); `_rfc3339`
    formats.
    """
    if moment is None:
        return ZERO_TIME
    if moment.tzinfo is not UTC:  # a naive time reads as local time: not cached
        return _rfc3339(moment)
    return _rfc3339_utc(moment)


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


_rfc3339_utc = functools.lru_cache(maxsize=8192)(_rfc3339)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """Counters and times of one service, as the manager has recorded them.

    Durations are float seconds; times are timezone-aware UTC datetimes or
    ``None`` when unset.
    """

    name: str
    status: ServiceStatus
    start_count: int
    error_count: int
    success_count: int
    consec_failures: int
    last_error: str
    last_error_time: datetime | None
    last_start_time: datetime | None
    last_stop_time: datetime | None
    current_uptime: float
    total_uptime: float
    average_uptime: float
    created_at: datetime | None
    current_delay: float
    restarts_in_window: int


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """A snapshot of one service: its `Metric` plus the runtime state.

    ``window_restarts`` equals ``metric.restarts_in_window``; ``error`` is the
    last exception object (not part of the JSON). ``details`` is what the
    service's own ``details()`` method returned, if it has one (a
    `ProcessService` gives its pid, last exit and output); not part of the JSON.
    ``running`` is whether an attempt runs now: true while the service is
    ``STARTING``, and while a ``RUNNING`` or ``CRASHING`` service is inside
    ``serve``; false while it waits out a backoff and whenever it is not running.
    Not part of the JSON either. ``phase`` is what its instance is doing
    (`Phase`); the HTTP API adds it to the JSON. ``critical`` is the service's
    ``ServiceConfig.critical``: whether ``/readyz`` counts it (in the HTTP JSON too).
    ``depends_on`` names its direct dependencies, as given to `Manager.add` (in the
    HTTP JSON too). ``next_attempt`` is when its backoff wait ends (jitter
    applied) while its phase is ``BACKOFF``, else ``None``; not part of the JSON.
    """

    metric: Metric
    stopped: bool
    failed: bool
    restart_count: int
    window_restarts: int
    current_delay: float
    window_start: datetime | None
    last_service_start: datetime | None
    error: BaseException | None
    details: Mapping[str, object] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )
    running: bool = False
    phase: Phase = Phase.IDLE
    critical: bool = True
    depends_on: tuple[str, ...] = ()
    next_attempt: datetime | None = None

    @property
    def name(self) -> str:
        """The service's name."""
        return self.metric.name

    @property
    def status(self) -> ServiceStatus:
        """The service's status."""
        return self.metric.status

    def to_dict(self) -> dict[str, object]:
        """Return the JSON object of the Go package, with exactly its keys."""
        m = self.metric
        return {
            "name": m.name,
            "status": str(m.status),
            "start_count": m.start_count,
            "error_count": m.error_count,
            "success_count": m.success_count,
            "last_error": m.last_error,
            "last_error_time": rfc3339(m.last_error_time),
            "last_start_time": rfc3339(m.last_start_time),
            "last_stop_time": rfc3339(m.last_stop_time),
            "current_uptime": to_nanoseconds(m.current_uptime),
            "total_uptime": to_nanoseconds(m.total_uptime),
            "average_uptime": to_nanoseconds(m.average_uptime),
            "created_at": rfc3339(m.created_at),
            "restarts_in_window": m.restarts_in_window,
            "stopped": self.stopped,
            "failed": self.failed,
            "restart_count": self.restart_count,
            "consec_failures": m.consec_failures,
            "window_restarts": self.window_restarts,
            "current_delay_ns": to_nanoseconds(self.current_delay),
            "current_delay": go_duration(self.current_delay),
            "window_start": rfc3339(self.window_start),
            "last_service_start": rfc3339(self.last_service_start),
        }
