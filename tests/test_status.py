"""The pure encoding helpers: Go duration strings, RFC 3339 times, enums."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import trisup
from trisup._status import go_duration, rfc3339, to_nanoseconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1e-9, "1ns"),
        (1.5e-6, "1.5µs"),
        (0.0005, "500µs"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (90, "1m30s"),
        (5400, "1h30m0s"),
        (3661.25, "1h1m1.25s"),
        (-2, "-2s"),
        (32, "32s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    """Durations format exactly as Go's time.Duration.String()."""
    assert go_duration(seconds) == text


def test_nanoseconds_round_and_saturate() -> None:
    """Durations become integer nanoseconds; infinities saturate like Go's int64."""
    assert to_nanoseconds(1.5) == 1_500_000_000
    assert to_nanoseconds(float("inf")) == 2**63 - 1
    assert to_nanoseconds(float("-inf")) == -(2**63)


def test_rfc3339() -> None:
    """Times are RFC 3339 UTC with trimmed fractions; unset is Go's zero time."""
    assert rfc3339(None) == "0001-01-01T00:00:00Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)) == "2026-01-02T03:04:05.25Z"
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"


def test_enums() -> None:
    """Enum values are the seed's."""
    assert [int(p) for p in trisup.RestartPolicy] == [0, 1, 2]
    assert int(trisup.RestartPolicy.ON_FAILURE) == 1
    assert [str(s) for s in trisup.ServiceStatus] == [
        "idle",
        "starting",
        "running",
        "stopped",
        "error",
        "crashing",
        "failed",
        "completed",
    ]
    assert trisup.ExitStatus.UPGRADE.as_int() == 4
    assert type(trisup.ExitStatus.RESTART.as_int()) is int
    assert [int(s) for s in trisup.ExitStatus] == [0, 1, 2, 3, 4]


def _info(**changes: object) -> trisup.ServiceInfo:
    when = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    metric = trisup.Metric(
        name="svc",
        status=trisup.ServiceStatus.CRASHING,
        start_count=3,
        error_count=2,
        success_count=1,
        consec_failures=2,
        last_error="boom",
        last_error_time=when,
        last_start_time=when + timedelta(seconds=1.5),
        last_stop_time=None,
        current_uptime=0.5,
        total_uptime=2.0,
        average_uptime=2.0 / 3,
        created_at=when - timedelta(minutes=1),
        current_delay=1.5,
        restarts_in_window=2,
    )
    fields: dict[str, object] = {
        "metric": metric,
        "stopped": False,
        "failed": False,
        "restart_count": 2,
        "window_restarts": 2,
        "current_delay": 1.5,
        "window_start": when,
        "last_service_start": when + timedelta(seconds=1.5),
        "error": ValueError("boom"),
    }
    fields.update(changes)
    return trisup.ServiceInfo(**fields)  # type: ignore[arg-type]  # test data


def test_to_dict_literal() -> None:
    """to_dict() has exactly the seed's JSON keys and Go encodings."""
    assert _info().to_dict() == {
        "name": "svc",
        "status": "crashing",
        "start_count": 3,
        "error_count": 2,
        "success_count": 1,
        "last_error": "boom",
        "last_error_time": "2026-03-01T12:00:00Z",
        "last_start_time": "2026-03-01T12:00:01.5Z",
        "last_stop_time": "0001-01-01T00:00:00Z",
        "current_uptime": 500_000_000,
        "total_uptime": 2_000_000_000,
        "average_uptime": 666_666_667,
        "created_at": "2026-03-01T11:59:00Z",
        "restarts_in_window": 2,
        "stopped": False,
        "failed": False,
        "restart_count": 2,
        "consec_failures": 2,
        "window_restarts": 2,
        "current_delay_ns": 1_500_000_000,
        "current_delay": "1.5s",
        "window_start": "2026-03-01T12:00:00Z",
        "last_service_start": "2026-03-01T12:00:01.5Z",
    }


def test_info_shortcuts() -> None:
    """ServiceInfo exposes the metric's name and status."""
    info = _info()
    assert info.name == "svc"
    assert info.status is trisup.ServiceStatus.CRASHING
