"""Shown phases, readiness, summaries and the API's JSON, read from ServiceInfo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

import trisup
from trisup import Metric, Phase, ServiceInfo, ServiceStatus
from trisup._health import (
    SHOWN,
    api_dict,
    error_text,
    error_type,
    is_ready,
    not_ready,
    shown,
    shown_phase,
    summary,
)
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
    """The API's JSON is to_dict() unchanged, with phase, critical and the error's type added."""
    info = make("a", P.GROUP_WAIT)
    data = api_dict(info)
    assert list(data) == [*info.to_dict(), "phase", "critical", "last_error_type", "depends_on"]
    assert data == {
        **info.to_dict(),
        "phase": "group_wait",
        "critical": True,
        "last_error_type": "",
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


class Outer:
    class Refused(Exception):
        """A nested exception class: its __qualname__ names the class it is in."""


def _local_error() -> Exception:
    class Local(Exception):
        pass

    return Local("made inside a function")


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            FileNotFoundError("/etc/shop/credentials.json"),
            "FileNotFoundError",
            "FileNotFoundError: /etc/shop/credentials.json",
        ),
        (ConnectionError(), "ConnectionError", "ConnectionError"),
        (ExceptionGroup("g", [KeyError("k")]), "KeyError", "KeyError: 'k'"),
        (
            ExceptionGroup("two", [KeyError("k"), ValueError("v")]),
            "ExceptionGroup",
            "ExceptionGroup: two (2 sub-exceptions)",
        ),
        (trisup.no_restart(OSError("disk full")), "OSError", "OSError: disk full"),
        (trisup.FatalError(ValueError("bad key")), "ValueError", "ValueError: bad key"),
        (trisup.FatalError(None), "FatalError", "FatalError: fatal error (exit status 1)"),
        (Outer.Refused("no"), "Outer.Refused", "Outer.Refused: no"),
        (_local_error(), "Local", "Local: made inside a function"),
    ],
)
async def test_the_last_error_with_its_type(
    autojump_clock: trio.testing.MockClock, error: Exception, kind: str, text: str
) -> None:
    """error_type names what failed (a wrapper names what it wraps); error_text adds the message."""

    async def fails() -> None:
        raise error

    m = trisup.Manager("app")
    m.add(trisup.new_service("a", fails), restart_policy=trisup.RestartPolicy.NEVER)
    m.add(trisup.new_service("b", trio.sleep_forever))
    if isinstance(error, trisup.FatalError):  # it ends the manager
        with pytest.raises(trisup.FatalError):
            await m.serve()
    else:
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("a", S.FAILED)
            nursery.cancel_scope.cancel()
    failed, healthy = m.get_services_info()
    assert (error_type(failed), error_text(failed)) == (kind, text)
    assert failed.metric.last_error == text.removeprefix(kind).removeprefix(": ") or kind
    assert api_dict(failed)["last_error_type"] == kind
    assert api_dict(failed)["last_error"] == failed.metric.last_error  # the seed's: the message
    assert (error_type(healthy), error_text(healthy), api_dict(healthy)["last_error_type"]) == (
        "",
        "",
        "",
    )


async def test_a_start_timeout_is_named_as_such(autojump_clock: trio.testing.MockClock) -> None:
    """A start that timed out is a ServiceStartTimeout, not the Cancelled that ended it."""

    async def never_ready(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep_forever()

    m = trisup.Manager("app")
    m.add(trisup.new_service("db", never_ready), start_timeout=0.5, restart_delay=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await m.wait_status("db", S.CRASHING)
        info = m.get_service_info("db")
        nursery.cancel_scope.cancel()
    assert error_text(info) == "ServiceStartTimeout: not ready within 0.5s"
    assert trio.current_time() == 0.5


async def test_a_stop_timeout_leaves_the_last_error_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop that times out raises to the caller; the service's last error is unchanged."""

    async def stubborn() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.move_on_after(5, shield=True):
                await trio.sleep(5)

    m = trisup.Manager("app")
    m.add(trisup.new_service("s", stubborn), stop_timeout=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        with pytest.raises(trisup.ServiceStopTimeout):
            await m.stop_service("s")
        info = m.get_service_info("s")
        nursery.cancel_scope.cancel()
    assert (error_type(info), error_text(info), info.metric.last_error) == ("", "", "")
