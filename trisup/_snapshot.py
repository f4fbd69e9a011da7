"""A `ServiceInfo` snapshot of one runner (read only: the runner stays the only writer)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._lifecycle import BACKOFF as _BACKOFF
from ._lifecycle import FAILED as _FAILED
from ._service import Service
from ._status import Metric, ServiceInfo

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["snapshot"]


@functools.lru_cache(maxsize=8192)
def _utc(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, UTC)


def _datetime(posix: float | None) -> datetime | None:
    """The UTC datetime of *posix*; cached (bounded), since a runner's times (its
    creation, its last start) repeat in every snapshot until they change."""
    return None if posix is None else _utc(posix)


def _details(service: Service) -> dict[str, object]:
    """A copy of what the service's optional ``details()`` method returns."""
    method: object = getattr(service, "details", None)
    if not callable(method):
        return {}
    try:
        value: object = method()
    except Exception:  # a broken details() must not break get_service_info
        return {}
    return dict(value) if isinstance(value, dict) else {}  # pyright: ignore[reportUnknownArgumentType]


def snapshot(runner: Runner, now: float | None) -> ServiceInfo:
    """*runner*'s info; *now* is the trio time, or ``None`` outside a run."""
    started = runner.run_started
    ctx = runner.ctx
    next_attempt = None
    if runner.phase is _BACKOFF and ctx is not None:  # the runner's own deadline, read only
        next_attempt = _datetime(runner.backoff_deadline + ctx.wall_offset)
    uptime = now - started if (started is not None and now is not None) else 0.0
    total = runner.total_uptime + uptime
    metric = Metric(
        name=runner.name,
        status=runner.status_now(),
        start_count=runner.start_count,
        error_count=runner.error_count,
        success_count=runner.success_count,
        consec_failures=runner.consec_failures,
        last_error=runner.last_error,
        last_error_time=_datetime(runner.last_error_time),
        last_start_time=_datetime(runner.last_start_time),
        last_stop_time=_datetime(runner.last_stop_time),
        current_uptime=uptime,
        total_uptime=total,
        average_uptime=total / runner.start_count if runner.start_count else 0.0,
        created_at=_datetime(runner.created_at),
        current_delay=runner.current_delay,
        restarts_in_window=runner.window_restarts,
    )
    return ServiceInfo(
        metric=metric,
        stopped=runner.held,
        failed=runner.phase is _FAILED,
        restart_count=runner.restart_count,
        window_restarts=runner.window_restarts,
        current_delay=runner.current_delay,
        window_start=_datetime(runner.window_start),
        last_service_start=_datetime(runner.last_start_time),
        error=runner.error,
        details=_details(runner.service),
        running=started is not None,
        phase=runner.phase,
        critical=runner.config.critical,
        depends_on=runner.depends_on,
        next_attempt=next_attempt,
    )
