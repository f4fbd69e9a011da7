"""Phases, readiness and summaries read from ServiceInfo (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trisup import Metric, ServiceInfo, ServiceStatus
from trisup._health import is_ready, is_running, not_ready, phase, phase_of, summary

S = ServiceStatus
T0 = datetime(2030, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)


def make(
    name: str,
    status: ServiceStatus,
    *,
    uptime: float = 0.0,
    start: datetime | None = None,
    stop: datetime | None = None,
    stopped: bool = False,
    running: bool = False,
) -> ServiceInfo:
    metric = Metric(
        name=name,
        status=status,
        start_count=1,
        error_count=0,
        success_count=0,
        consec_failures=0,
        last_error="",
        last_error_time=None,
        last_start_time=start,
        last_stop_time=stop,
        current_uptime=uptime,
        total_uptime=uptime,
        average_uptime=uptime,
        created_at=T0,
        current_delay=1.0,
        restarts_in_window=0,
    )
    return ServiceInfo(
        metric=metric,
        stopped=stopped,
        failed=status is S.FAILED,
        restart_count=0,
        window_restarts=0,
        current_delay=1.0,
        window_start=None,
        last_service_start=start,
        error=None,
        running=running,
    )


@pytest.mark.parametrize(
    ("info", "running", "expected_phase", "ready"),
    [
        (make("a", S.RUNNING, uptime=2.0, start=T0, running=True), True, "running", True),
        (make("a", S.RUNNING, start=T0, running=True), True, "running", True),
        # the flag, not the timestamps, tells a run from a backoff wait
        (make("a", S.RUNNING, start=T1, stop=T0), False, "backoff", False),
        (make("a", S.RUNNING, start=T0, stop=T1), False, "backoff", False),
        (
            make("a", S.CRASHING, uptime=0.5, start=T1, stop=T0, running=True),
            True,
            "crashing",
            True,
        ),
        (make("a", S.CRASHING, start=T0, stop=T0, running=True), True, "crashing", True),
        (make("a", S.CRASHING, start=T0, stop=T1), False, "backoff", False),
        (make("a", S.CRASHING, start=T0, stop=T0), False, "backoff", False),
        (make("a", S.STARTING, start=T0, running=True), True, "starting", False),
        (make("a", S.COMPLETED, start=T0, stop=T1), False, "completed", True),
        (make("a", S.FAILED, start=T0, stop=T1), False, "failed", False),
        (make("a", S.ERROR, start=T0, stop=T1), False, "error", False),
        (make("a", S.IDLE), False, "idle", False),
        (make("a", S.STOPPED, stopped=True), False, "stopped", False),
    ],
)
def test_phase_and_readiness(
    info: ServiceInfo, running: bool, expected_phase: str, ready: bool
) -> None:
    """Each status maps to running-or-not, a phase and readiness."""
    assert is_running(info) is running
    assert phase(info) == expected_phase
    assert is_ready(info) is ready


def test_phase_of() -> None:
    """Waiting turns running and crashing into backoff, nothing else."""
    assert phase_of(S.RUNNING, True) == "backoff"
    assert phase_of(S.CRASHING, True) == "backoff"
    assert phase_of(S.CRASHING, False) == "crashing"
    assert phase_of(S.FAILED, True) == "failed"


def test_not_ready_skips_stopped_and_excluded() -> None:
    """Stopped services never count; the others keep their order."""
    infos = [
        make("web", S.STARTING, start=T0, running=True),
        make("db", S.RUNNING, uptime=1.0, start=T0, running=True),
        make("manual", S.STOPPED, stopped=True),
        make("job", S.IDLE),
        make("me", S.STARTING, start=T0, running=True),
    ]
    assert not_ready(infos, exclude=["me"]) == ["web", "job"]
    assert not_ready([]) == []


def test_summary() -> None:
    """The summary counts phases in a fixed order and omits zeros."""
    infos = [
        make("a", S.RUNNING, uptime=1.0, start=T0, running=True),
        make("b", S.RUNNING, uptime=1.0, start=T0, running=True),
        make("c", S.CRASHING, start=T0, stop=T1),
        make("d", S.FAILED),
    ]
    assert summary("app", infos) == "app: 4 services, 2 running, 1 backoff, 1 failed"
    assert summary("app", infos[:1]) == "app: 1 service, 1 running"
    assert summary("app", []) == "app: 0 services"
