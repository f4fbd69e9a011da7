"""Shown phases, readiness, summaries and the API's JSON, read from ServiceInfo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

import trisup
from trisup import Metric, Phase, ServiceInfo, ServiceStatus
from trisup._health import SHOWN, api_dict, is_ready, not_ready, shown, shown_phase, summary
from trisup._lifecycle import status_of

P = Phase
S = ServiceStatus
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def make(name: str, phase: Phase, *, stopped: bool = False) -> ServiceInfo:
    """An info in *phase* (its status derived as the runner derives it)."""
    status = status_of(phase, held=stopped, consec_failures=0, ready=True)
    metric = Metric(
        name=name,
        status=status,
        start_count=1,
        error_count=0,
        success_count=0,
        consec_failures=0,
        last_error="",
        last_error_time=None,
        last_start_time=T0,
        last_stop_time=None,
        current_uptime=0.0,
        total_uptime=0.0,
        average_uptime=0.0,
        created_at=T0,
        current_delay=1.0,
        restarts_in_window=0,
    )
    return ServiceInfo(
        metric=metric,
        stopped=stopped,
        failed=phase is P.FAILED,
        restart_count=0,
        window_restarts=0,
        current_delay=1.0,
        window_start=None,
        last_service_start=T0,
        error=None,
        phase=phase,
    )


@pytest.mark.parametrize("phase", list(Phase))
def test_readiness_and_shown_phase_of_every_phase(phase: Phase) -> None:
    """Ready only running or completed; a held service is shown stopped and never counted."""
    info = make("a", phase)
    assert is_ready(info) is (phase in (P.RUNNING, P.COMPLETED))
    assert not_ready([info]) == ([] if phase in (P.RUNNING, P.COMPLETED) else ["a"])
    assert shown_phase(info) == shown(phase, False) == phase.value
    held = make("a", phase, stopped=True)
    assert shown_phase(held) == shown(phase, True) == "stopped"
    assert not_ready([held]) == []


def test_shown_lists_every_phase_and_stopped() -> None:
    """The summary order names each phase once, and stopped."""
    assert sorted(SHOWN) == sorted([*(p.value for p in Phase), "stopped"])


def test_not_ready_skips_held_and_excluded() -> None:
    """Held services never count; the others keep their order."""
    infos = [
        make("web", P.STARTING),
        make("db", P.RUNNING),
        make("manual", P.IDLE, stopped=True),
        make("job", P.IDLE),
        make("retry", P.BACKOFF),
        make("batch", P.COMPLETED),
        make("me", P.STARTING),
    ]
    assert not_ready(infos, exclude=["me"]) == ["web", "job", "retry"]
    assert not_ready([]) == []


def test_summary() -> None:
    """The summary counts shown phases in a fixed order and omits zeros."""
    infos = [
        make("a", P.RUNNING),
        make("b", P.RUNNING),
        make("c", P.BACKOFF),
        make("d", P.FAILED),
        make("e", P.IDLE, stopped=True),
        make("f", P.WAITING_DEPS),
    ]
    assert summary("app", infos) == (
        "app: 6 services, 2 running, 1 waiting_deps, 1 backoff, 1 stopped, 1 failed"
    )
    assert summary("app", infos[:1]) == "app: 1 service, 1 running"
    assert summary("app", []) == "app: 0 services"


def test_api_dict_is_the_seed_keys_then_the_phase() -> None:
    """The API's JSON is to_dict() unchanged, with phase added last."""
    info = make("a", P.GROUP_WAIT)
    data = api_dict(info)
    assert list(data) == [*info.to_dict(), "phase", "critical", "depends_on"]
    assert data == {
        **info.to_dict(),
        "phase": "group_wait",
        "critical": True,
        "depends_on": list(info.depends_on),
    }
    assert "phase" not in info.to_dict()


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom")


async def _ready_after(t: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


async def test_readiness_of_a_live_manager(autojump_clock: trio.testing.MockClock) -> None:
    """Read from real snapshots: a crashing service is ready while it runs, not in backoff."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("flappy", _fail_after, 2.5), restart_delay=1)
    m.add(trisup.new_service("warm", _ready_after, 2))
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    seen: list[tuple[float, list[str], str]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.serve)
        for t in (1, 2.25, 3, 4.25):
            await trio.sleep_until(t)
            infos = m.get_services_info()
            seen.append((t, not_ready(infos), summary("app", infos)))
        assert m.get_service_info("flappy").status is S.CRASHING
        nursery.cancel_scope.cancel()
    assert seen == [
        (1, ["warm"], "app: 3 services, 1 running, 1 starting, 1 stopped"),
        (2.25, [], "app: 3 services, 2 running, 1 stopped"),
        (3, ["flappy"], "app: 3 services, 1 running, 1 backoff, 1 stopped"),
        (4.25, [], "app: 3 services, 2 running, 1 stopped"),
    ]
