"""trisup.testing: recorder, scripted services, serving, the schedule preview."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus
from trisup import events as ev
from trisup.testing import (
    Starter,
    fail_after,
    hang,
    ready_after,
    record_events,
    run,
    scripted_service,
    serving,
    succeed_after,
)

S = ServiceStatus


async def test_scripted_service_timeline(autojump_clock: trio.testing.MockClock) -> None:
    """A flaky service's whole restart timeline, asserted in a few lines."""
    svc = scripted_service("db", [fail_after(2), run(10), succeed_after(1), hang()])
    m = trisup.Manager()
    m.add(svc)
    async with record_events(m) as rec, serving(m):
        await trio.sleep(30)
    # fails at 2; restarts at 3, runs 11 s and returns cleanly at 14; restarts at 16
    assert svc.starts == [0, 3, 16]
    assert rec.timeline("db", "exited") == [2, 14, 30]
    attempt = ["starting", "ready", "exited"]
    again = ["backing_off", "restarting"]
    assert rec.kinds("db") == [*attempt, *again, *attempt, *again, *attempt, "stopped"]
    assert rec.lost == 0


async def test_ready_after(autojump_clock: trio.testing.MockClock) -> None:
    """ready_after delays readiness; serving waits for it."""
    m = trisup.Manager()
    m.add(scripted_service("slow", [ready_after(3), hang()]))
    async with serving(m):
        assert trio.current_time() == 3
        assert m.get_service_info("slow").status is S.RUNNING


async def test_serving_reraises_fatal(autojump_clock: trio.testing.MockClock) -> None:
    """serving re-raises an error of serve at the end of the block."""

    error = trisup.FatalError(None, trisup.ExitStatus.RESTART)

    async def fatal() -> None:
        await trio.sleep(1)
        raise error

    m = trisup.Manager()
    m.add(trisup.new_service("f", fatal))
    with pytest.raises(trisup.FatalError) as caught:
        async with serving(m):
            await trio.sleep(5)
    assert caught.value is error
    assert trio.current_time() == 5  # serve ended at 1; the block ran to its end


async def test_start_supervised_fixture(
    start_supervised: Starter, autojump_clock: trio.testing.MockClock
) -> None:
    """The fixture serves a manager for the test and tears it down."""
    m = trisup.Manager()
    m.add(scripted_service("w", [hang()]))
    served = await start_supervised(m)
    assert served is m
    assert m.get_service_info("w").status is S.RUNNING


def test_script_validation() -> None:
    """Empty scripts and foreign steps are refused."""
    with pytest.raises(ValueError, match="at least one"):
        scripted_service("x", [])
    with pytest.raises(TypeError, match="steps"):
        scripted_service("x", ["fail"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("config", "starts"),
    [
        ({}, (0, 1, 3, 7, 15, 31)),
        ({"max_restarts": 1}, (0, 1)),
        (
            {"max_restarts": 3, "max_restarts_in_window": 0, "backoff_multiplier": 1.5},
            (0, 1, 2.5, 4.75),
        ),
        (
            {"max_restart_delay": 4.0, "max_restarts_in_window": 0, "max_restarts": 6},
            (0, 1, 3, 7, 11, 15, 19),
        ),
        # the third failure, at 3, finds 2 restarts (at 1 and 3) within the last 5 s
        ({"restart_window": 5.0, "max_restarts_in_window": 2}, (0, 1, 3)),
    ],
)
async def test_schedule_matches_real_timeline(
    config: dict[str, float], starts: tuple[float, ...], autojump_clock: trio.testing.MockClock
) -> None:
    """ServiceConfig.schedule(n) predicts the real restart timeline and reason exactly."""
    cfg = trisup.ServiceConfig(**config)  # type: ignore[arg-type]
    preview = cfg.schedule(50)
    assert (preview.starts, preview.failed_at) == (starts, starts[-1])
    svc = scripted_service("s", [fail_after(0)] * 60)
    m = trisup.Manager()
    m.add_with_config(svc, cfg)
    async with record_events(m) as recorder, serving(m):
        await m.wait_status("s", S.FAILED)
        assert trio.current_time() == starts[-1]
        [failed] = [e for e in recorder.events if isinstance(e, ev.ServiceFailed)]
    assert tuple(svc.starts) == starts
    assert failed.reason == preview.reason
    assert preview.forever is False


def test_schedule_defaults() -> None:
    """The default schedule: 0, 1, 3, 7, 15, 31 s, then failed at 31."""
    s = trisup.ServiceConfig().schedule(100)
    assert s.starts == (0, 1, 3, 7, 15, 31)
    assert s.delays == (1, 2, 4, 8, 16)
    assert s.failed_at == 31
    assert s.reason == "5 restarts within restart_window=300s"
    assert s.forever is False
    unlimited = trisup.ServiceConfig(max_restarts_in_window=0).schedule(3)
    assert unlimited.failed_at is None
    assert unlimited.reason is None
    assert unlimited.forever is True
    assert unlimited.starts == (0, 1, 3, 7)
    with pytest.raises(ValueError, match="failures"):
        trisup.ServiceConfig().schedule(-1)
