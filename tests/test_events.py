"""Events: one per transition, bounded subscriptions, logging from the same events."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus
from trisup import events as ev

S = ServiceStatus


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom")


async def test_event_sequence_of_a_failing_service(autojump_clock: trio.testing.MockClock) -> None:
    """A service failing twice then giving up emits its whole story, in order, timed."""
    m = trisup.Manager("m")
    seen: list[tuple[str, float | None]] = []
    changes: list[tuple[ServiceStatus, ServiceStatus]] = []
    async with m.subscribe() as events, trio.open_nursery() as nursery:
        m.add(trisup.new_service("svc", _fail_after, 1), max_restarts=1)
        await nursery.start(m.serve)
        await m.wait_status("svc", S.FAILED)
        await trio.testing.wait_all_tasks_blocked()
        while (event := events.receive_nowait()) is not None:
            assert event.manager == "m"
            if isinstance(event, ev.ServiceEvent):
                assert event.service == "svc"
            seen.append((event.kind, event.time))
            if isinstance(event, ev.ServiceStatusChanged):
                changes.append((event.old, event.new))
        nursery.cancel_scope.cancel()
    # fails at 1 and 3 (each run lasts 1 s), waits 1 s in between; plain: ready on entry
    assert seen == [
        ("added", 0),
        ("manager_started", 0),
        ("phase", 0),  # idle -> starting: spawned
        ("status", 0),  # idle -> starting
        ("phase", 0),  # starting -> running: plain, ready once in serve
        ("status", 0),  # starting -> running
        ("starting", 0),
        ("ready", 0),
        ("exited", 1),
        ("backing_off", 1),
        ("phase", 1),  # running -> backoff
        ("status", 1),  # running -> crashing
        ("restarting", 2),
        ("phase", 2),  # backoff -> running
        ("starting", 2),
        ("ready", 2),
        ("exited", 3),
        ("phase", 3),  # running -> failed
        ("status", 3),  # crashing -> failed
        ("failed", 3),
    ]
    assert changes == [
        (S.IDLE, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.CRASHING),
        (S.CRASHING, S.FAILED),
    ]


async def test_exited_outcomes(autojump_clock: trio.testing.MockClock) -> None:
    """ServiceExited carries the outcome class and the error."""
    m = trisup.Manager()
    m.add(trisup.new_service("svc", _fail_after, 0.5), restart_policy=trisup.RestartPolicy.NEVER)
    m.add(trisup.new_service("idle", trio.sleep_forever))
    exits: list[ev.ServiceExited] = []
    async with m.subscribe() as events:
        with trio.move_on_after(2):
            await m.serve()
        exits = [e for e in _sync_drain(events) if isinstance(e, ev.ServiceExited)]
    by_name = {e.service: e for e in exits}
    assert by_name["svc"].outcome == "failure"
    assert isinstance(by_name["svc"].error, ValueError)
    assert str(by_name["svc"].error) == "boom"
    assert by_name["svc"].uptime == 0.5
    assert by_name["idle"].outcome == "stopped"
    assert by_name["idle"].uptime == 2


async def test_slow_subscriber_never_blocks(autojump_clock: trio.testing.MockClock) -> None:
    """A subscriber that never reads loses the oldest events and counts them."""
    m = trisup.Manager()
    m.add(
        trisup.new_service("flappy", _fail_after, 0),
        restart_delay=0.5,
        backoff_multiplier=1.0,
        max_restarts_in_window=0,
    )
    async with m.subscribe(max_buffer=8) as events, m.subscribe(max_buffer=1_000) as everything:
        with trio.move_on_after(49.75):
            await m.serve()
        assert trio.current_time() == 49.75
        emitted = _sync_drain(everything)
        kept = _sync_drain(events)
    # 100 starts (0, 0.5, ..., 49.5), each starting, ready, exited and backing_off; 99
    # restarting; 4 status changes (idle, starting, running, crashing, error); 202
    # phase changes (idle -> starting -> running, then running -> backoff at each of
    # the 100 exits and back at each of the 99 restarts, backoff -> idle at the end);
    # manager_started/stopping/stopped; stopped at 49.75
    assert everything.lost == 0
    assert len(emitted) == 4 * 100 + 99 + 4 + (2 + 100 + 99 + 1) + 3 + 1
    assert events.lost == len(emitted) - 8
    assert kept == emitted[-8:]  # the oldest are the ones dropped
    assert kept[-1].kind == "manager_stopped"
    info = m.get_service_info("flappy")
    assert info.metric.start_count == 100  # every 0.5 s from 0 to 49.5


def _sync_drain(events: ev.Subscription) -> list[ev.Event]:
    out: list[ev.Event] = []
    while (event := events.receive_nowait()) is not None:
        out.append(event)
    return out


async def test_receive_waits_and_ends(autojump_clock: trio.testing.MockClock) -> None:
    """receive() waits for the next event; the stream ends when the block exits."""
    m = trisup.Manager()
    got: list[tuple[str, float | None]] = []

    async def reader(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with m.subscribe() as events:
            task_status.started()
            async for event in events:
                if event.kind not in ("status", "phase"):
                    got.append((event.kind, event.time))
                if event.kind == "removed":
                    return

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(reader)
            m.add(trisup.new_service("a", trio.sleep_forever))
            await trio.sleep(1)
            await m.delete("a")
    assert got == [("added", 0), ("removed", 1)]

    async with m.subscribe() as events:
        m.add(trisup.new_service("b", trio.sleep_forever))
    with trio.fail_after(10):  # what was buffered, then the end
        assert [event.kind async for event in events] == ["added"]


async def test_subscribe_validates() -> None:
    """max_buffer must be a positive int."""
    m = trisup.Manager()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_buffer"):
            async with m.subscribe(max_buffer=bad):  # type: ignore[arg-type]
                pass


async def test_logging_made_from_events(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Log records carry the event kind and its fields as extra."""
    caplog.set_level(logging.INFO, logger="trisup")
    m = trisup.Manager("root")
    m.add(trisup.new_service("svc", _fail_after, 1), max_restarts=1)
    with trio.move_on_after(5):
        await m.serve()
    kinds = [(r.__dict__["event"], r.levelno) for r in caplog.records if r.name == "trisup"]
    # starting, ready and restarting log at DEBUG; the second, identical failure too
    assert kinds == [
        ("added", logging.INFO),
        ("manager_started", logging.INFO),
        ("exited", logging.WARNING),
        ("backing_off", logging.INFO),
        ("failed", logging.ERROR),
        ("manager_stopping", logging.INFO),
        ("manager_stopped", logging.INFO),
    ]
    backoff = next(r for r in caplog.records if r.__dict__.get("event") == "backing_off")
    assert backoff.__dict__["delay"] == 1.0
    assert backoff.__dict__["manager"] == "root"
    assert backoff.getMessage() == "service svc restarting in 1s"


async def test_a_stop_emits_service_stop_done(autojump_clock: trio.testing.MockClock) -> None:
    """A stop's exit is a ServiceStopDone (kind "stopped"); the error name is not reused."""
    m = trisup.Manager("m")
    m.add(trisup.new_service("svc", trio.sleep_forever))
    async with m.subscribe() as events, trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await trio.sleep(1.5)
        await m.stop_service("svc")
        done = [e for e in _sync_drain(events) if isinstance(e, ev.ServiceStopDone)]
        nursery.cancel_scope.cancel()
    assert done == [ev.ServiceStopDone(manager="m", time=1.5, service="svc")]
    assert done[0].kind == "stopped"
    assert done[0].message() == "service svc stopped"
    assert "ServiceStopped" not in ev.__all__
    assert not hasattr(ev, "ServiceStopped")
