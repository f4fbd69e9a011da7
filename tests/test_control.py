"""Runtime control (SPEC §5): every verb in every state, stop timeouts, self-control."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel
import trio.testing

import trisup
from trisup import RestartPolicy, ServiceStatus

S = ServiceStatus


class Probe:
    """A service that counts its instances and can be told how to behave."""

    def __init__(self, name: str, *, fail_at_once: bool = False, ready_after: float | None = None):
        self.name = name
        self.live = 0
        self.max_live = 0
        self.entered: list[float] = []
        self.fail_at_once = fail_at_once
        self.ready_after = ready_after
        self.shield_for = 0.0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.entered.append(trio.current_time())
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        try:
            if self.fail_at_once:
                raise ValueError("boom")
            if self.ready_after is not None:
                await trio.sleep(self.ready_after)
            task_status.started()
            await trio.sleep_forever()
        finally:
            if self.shield_for:
                with trio.CancelScope(shield=True):
                    await trio.sleep(self.shield_for)
            self.live -= 1


@pytest.fixture
async def manager(autojump_clock: trio.testing.MockClock) -> AsyncIterator[trisup.Manager]:
    m = trisup.Manager("m")
    async with trio.open_nursery() as nursery:
        m.add(Probe("steady"))
        await nursery.start(m.serve)
        yield m
        nursery.cancel_scope.cancel()


async def test_stop_and_start_running(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """stop_service stops a running service; start_service runs it again."""
    await manager.stop_service("steady")
    info = manager.get_service_info("steady")
    assert info.status is S.STOPPED
    assert info.stopped
    assert info.metric.success_count == 1
    await manager.stop_service("steady")  # a no-op
    await manager.start_service("steady")
    probe = manager.services()[0]
    assert isinstance(probe, Probe)
    assert probe.live == 1
    assert manager.get_service_info("steady").status is S.RUNNING
    await manager.start_service("steady")  # a no-op while running
    assert len(probe.entered) == 2
    assert trio.current_time() == 0


async def test_start_returns_once_entered_not_ready(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """start_service returns once serve is entered, without waiting for readiness."""
    p = Probe("slow", ready_after=5)
    manager.add(p, auto_start=False)
    assert manager.get_service_info("slow").status is S.STOPPED
    await manager.start_service("slow")
    assert p.entered == [0]
    assert manager.get_service_info("slow").status is S.STARTING
    await manager.start_service("slow")  # starting: a no-op
    assert len(p.entered) == 1
    await manager.wait_status("slow", S.RUNNING)
    assert trio.current_time() == 5


async def test_stop_during_backoff_returns_at_once(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop during a backoff wait returns at once and counts no success."""
    p = Probe("flaky", fail_at_once=True)
    manager.add(p, restart_delay=100)
    await manager.wait_status("flaky", S.CRASHING)
    await trio.testing.wait_all_tasks_blocked()
    await manager.stop_service("flaky")
    assert trio.current_time() == 0
    info = manager.get_service_info("flaky")
    assert info.status is S.STOPPED
    assert info.metric.success_count == 0
    assert info.metric.start_count == 1


async def test_start_while_waiting_restarts_at_once(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """start_service on a service waiting to restart starts it at once, counters cleared."""
    p = Probe("flaky", fail_at_once=True)
    manager.add(p, restart_delay=100)
    await manager.wait_status("flaky", S.CRASHING)
    await trio.testing.wait_all_tasks_blocked()
    p.fail_at_once = False
    await manager.start_service("flaky")
    assert p.entered == [0, 0]
    info = manager.get_service_info("flaky")
    assert info.status is S.RUNNING
    assert info.metric.consec_failures == 0
    assert info.restart_count == 0
    assert info.metric.error_count == 1  # lifetime counters stay


async def test_start_failed_and_completed(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """start_service clears failed and completed and starts afresh."""
    p = Probe("once", fail_at_once=True)
    manager.add(p, restart_policy=RestartPolicy.NEVER)
    await manager.wait_status("once", S.FAILED)
    p.fail_at_once = False
    await manager.start_service("once")
    info = manager.get_service_info("once")
    assert info.status is S.RUNNING
    assert not info.failed
    assert info.metric.consec_failures == 0
    assert info.metric.error_count == 1

    async def quick() -> None:
        await trio.sleep(1)

    manager.add(trisup.new_service("quick", quick), restart_policy=RestartPolicy.ON_FAILURE)
    await manager.wait_status("quick", S.COMPLETED)
    await manager.start_service("quick")
    assert manager.get_service_info("quick").status is S.RUNNING
    await manager.wait_status("quick", S.COMPLETED)
    assert manager.get_service_info("quick").metric.success_count == 2


async def test_stop_failed_completed_stopped(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """Stopping a failed or completed service marks it stopped and returns at once."""
    manager.add(Probe("bad", fail_at_once=True), restart_policy=RestartPolicy.NEVER)
    await manager.wait_status("bad", S.FAILED)
    await manager.stop_service("bad")
    assert manager.get_service_info("bad").status is S.STOPPED
    assert trio.current_time() == 0


async def test_stop_timeout(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """A shielding service makes stop_service raise ServiceStopTimeout after stop_timeout."""
    p = Probe("stubborn")
    p.shield_for = 25
    manager.add(p, stop_timeout=4)
    await manager.wait_status("stubborn", S.RUNNING)
    with pytest.raises(trisup.ServiceStopTimeout):
        await manager.stop_service("stubborn")
    assert trio.current_time() == 4
    assert manager.get_service_info("stubborn").status is S.STOPPED
    assert p.live == 1  # still shielding itself
    # a start waits for the old instance, at most stop_timeout: never two at once
    with pytest.raises(trisup.ServiceStopTimeout):
        await manager.start_service("stubborn")
    assert trio.current_time() == 8
    assert manager.get_service_info("stubborn").phase is trisup.Phase.STOPPING
    # the start stays requested: the new instance follows once the old one exited
    await trio.sleep(20)
    assert p.entered == [0, 25]
    assert p.max_live == 1
    assert p.live == 1
    assert manager.get_service_info("stubborn").metric.start_count == 2


async def test_restart_service(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """restart_service stops, then starts; the instances never overlap."""
    p = Probe("svc")
    p.shield_for = 1
    manager.add(p)
    await manager.wait_status("svc", S.RUNNING)
    await manager.restart_service("svc")
    assert trio.current_time() == 1
    assert p.entered == [0, 1]
    assert p.max_live == 1
    assert manager.get_service_info("svc").metric.start_count == 2


async def test_restart_stopped_and_failed(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """restart_service on a stopped or failed service starts it."""
    manager.add(Probe("off"), auto_start=False)
    await manager.restart_service("off")
    assert manager.get_service_info("off").status is S.RUNNING
    p = Probe("bad", fail_at_once=True)
    manager.add(p, restart_policy=RestartPolicy.NEVER)
    await manager.wait_status("bad", S.FAILED)
    p.fail_at_once = False
    await manager.restart_service("bad")
    assert manager.get_service_info("bad").status is S.RUNNING


async def test_restart_timeout_starts_nothing(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """A restart whose stop times out raises and starts nothing."""
    p = Probe("stubborn")
    p.shield_for = 100
    manager.add(p, stop_timeout=2)
    await manager.wait_status("stubborn", S.RUNNING)
    with pytest.raises(trisup.ServiceStopTimeout):
        await manager.restart_service("stubborn")
    assert trio.current_time() == 2
    assert p.entered == [0]
    assert manager.get_service_info("stubborn").status is S.STOPPED


async def test_reset_service(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """reset_service clears failed and counters, starts nothing; a failed one shows IDLE."""
    p = Probe("bad", fail_at_once=True)
    manager.add(p, max_restarts=1)
    await manager.wait_status("bad", S.FAILED)
    manager.reset_service("bad")
    info = manager.get_service_info("bad")
    assert info.status is S.IDLE
    assert (info.restart_count, info.metric.consec_failures, info.failed) == (0, 0, False)
    assert info.metric.error_count == 2
    await trio.sleep(5)
    assert len(p.entered) == 2
    await manager.stop_service("bad")
    manager.reset_service("bad")
    assert manager.get_service_info("bad").status is S.STOPPED


async def test_reset_keeps_completed(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """reset_service leaves completed alone."""

    async def quick() -> None:
        pass

    manager.add(trisup.new_service("quick", quick), restart_policy=RestartPolicy.NEVER)
    await manager.wait_status("quick", S.COMPLETED)
    manager.reset_service("quick")
    assert manager.get_service_info("quick").status is S.COMPLETED


async def test_reset_while_crashing(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """reset_service during a backoff gives a fresh delay schedule from the next failure."""
    p = Probe("flaky", fail_at_once=True)
    manager.add(p)
    await trio.sleep(3.5)
    assert p.entered == [0, 1, 3]
    manager.reset_service("flaky")
    assert manager.get_service_info("flaky").status is S.RUNNING  # waiting, no failures
    await trio.sleep(5)  # the wait in progress ends at 7; the next delay is 1 again
    assert p.entered == [0, 1, 3, 7, 8]


async def test_delete(manager: trisup.Manager, autojump_clock: trio.testing.MockClock) -> None:
    """delete stops and unregisters; the name can be added again."""
    await manager.delete("steady")
    assert not manager.has("steady")
    assert manager.services() == []
    with pytest.raises(trisup.ServiceNotFound):
        manager.get_service_info("steady")
    again = Probe("steady")
    manager.add(again)
    await manager.wait_status("steady", S.RUNNING)
    assert (again.entered, again.live) == ([0], 1)
    assert manager.get_service_info("steady").metric.start_count == 1  # a fresh registration


async def test_delete_timeout_keeps_registration(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """A delete whose stop times out raises and keeps the service, stopped."""
    p = Probe("stubborn")
    p.shield_for = 10
    manager.add(p, stop_timeout=1)
    await manager.wait_status("stubborn", S.RUNNING)
    with pytest.raises(trisup.ServiceStopTimeout):
        await manager.delete("stubborn")
    assert manager.has("stubborn")
    assert manager.get_service_info("stubborn").status is S.STOPPED
    await trio.sleep(10)
    await manager.delete("stubborn")
    assert not manager.has("stubborn")


async def test_unknown_names(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """Every verb raises ServiceNotFound for an unknown name."""
    for verb in (
        manager.start_service,
        manager.stop_service,
        manager.restart_service,
        manager.delete,
    ):
        with pytest.raises(trisup.ServiceNotFound, match="name=nope"):
            await verb("nope")
    with pytest.raises(trisup.ServiceNotFound):
        manager.reset_service("nope")
    with pytest.raises(trisup.ServiceNotFound):
        manager.get_service_info("nope")
    with pytest.raises(trisup.ServiceNotFound):
        await manager.wait_status("nope", S.RUNNING)
    assert not manager.has("nope")


async def test_remove_services_concurrent(
    manager: trisup.Manager,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """remove_services takes the slowest stop, not the sum; errors are logged."""
    caplog.set_level(logging.ERROR, logger="trisup")
    for name, shield in (("a", 1.0), ("b", 3.0), ("c", 2.0)):
        p = Probe(name)
        p.shield_for = shield
        manager.add(p)
    stubborn = Probe("stubborn")
    stubborn.shield_for = 50
    manager.add(stubborn, stop_timeout=4)
    await trio.testing.wait_all_tasks_blocked()
    await manager.remove_services()
    assert trio.current_time() == 4
    assert [s.name for s in manager.services()] == ["stubborn"]
    failed = [r for r in caplog.records if r.__dict__.get("event") == "remove_failed"]
    assert [(r.levelno, r.__dict__["service"], r.getMessage()) for r in failed] == [
        (
            logging.ERROR,
            "stubborn",
            "remove of service stubborn failed: service did not stop within 4s, name=stubborn",
        )
    ]


async def test_restart_services_concurrent(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """restart_services restarts all concurrently: the slowest stop, not the sum."""
    probes: list[Probe] = []
    for name, shield in (("a", 1.0), ("b", 3.0)):
        p = Probe(name)
        p.shield_for = shield
        manager.add(p)
        probes.append(p)
    await trio.testing.wait_all_tasks_blocked()
    await manager.restart_services()
    assert trio.current_time() == 3
    assert [p.entered for p in probes] == [[0, 1], [0, 3]]
    assert all(i.status is S.RUNNING for i in manager.get_services_info())


async def test_self_control(
    manager: trisup.Manager, autojump_clock: trio.testing.MockClock
) -> None:
    """A service stopping, restarting or deleting itself does not deadlock."""
    calls: list[str] = []

    async def self_stopper() -> None:
        calls.append("stop")
        await manager.stop_service("self_stop")
        await trio.sleep(1)
        calls.append("not reached")

    manager.add(trisup.new_service("self_stop", self_stopper))
    await manager.wait_status("self_stop", S.STOPPED)
    await trio.testing.wait_all_tasks_blocked()
    assert calls == ["stop"]
    assert manager.get_service_info("self_stop").metric.success_count == 1

    restarts = 0

    async def self_restarter() -> None:
        nonlocal restarts
        restarts += 1
        if restarts < 3:
            async with trio.open_nursery() as n:  # from a task it started, too
                n.start_soon(manager.restart_service, "self_restart")
                await trio.sleep_forever()
        await trio.sleep_forever()

    manager.add(trisup.new_service("self_restart", self_restarter))
    await trio.testing.wait_all_tasks_blocked()
    assert restarts == 3
    info = manager.get_service_info("self_restart")
    assert info.status is S.RUNNING
    assert info.metric.start_count == 3
    assert info.restart_count == 0

    async def self_deleter() -> None:
        await manager.delete("self_delete")
        await trio.sleep_forever()

    manager.add(trisup.new_service("self_delete", self_deleter))
    await trio.testing.wait_all_tasks_blocked()
    assert not manager.has("self_delete")
    assert trio.current_time() == 0


async def test_wait_status(manager: trisup.Manager, autojump_clock: trio.testing.MockClock) -> None:
    """wait_status returns at once when matching, raises on delete and without statuses."""
    assert await manager.wait_status("steady", S.RUNNING, S.STOPPED) is S.RUNNING
    assert trio.current_time() == 0  # at once
    with pytest.raises(TypeError):
        await manager.wait_status("steady")
    async with trio.open_nursery() as n:
        n.start_soon(manager.delete, "steady")
        with pytest.raises(trisup.ServiceNotFound):
            await manager.wait_status("steady", S.FAILED)


async def test_add_errors(manager: trisup.Manager, autojump_clock: trio.testing.MockClock) -> None:
    """Bad registrations raise clear errors and register nothing."""
    with pytest.raises(trisup.ServiceAlreadyExists, match="name=steady"):
        manager.add(Probe("steady"), restart_delay=5)
    assert manager.get_service_info("steady").current_delay == 1
    with pytest.raises(TypeError, match="stop_timout"):
        manager.add(Probe("x"), stop_timout=3)  # type: ignore[call-arg]  # deliberately wrong
    with pytest.raises(ValueError, match="restart_window"):
        manager.add(Probe("x"), restart_window=float("nan"))
    with pytest.raises(TypeError, match="max_restarts"):
        manager.add(Probe("x"), max_restarts="3")  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(TypeError, match="name"):
        manager.add(Probe(""))
    with pytest.raises(TypeError, match="serve"):
        manager.add(object())  # type: ignore[arg-type]  # deliberately wrong
    with pytest.raises(TypeError, match="ServiceConfig"):
        manager.add_with_config(Probe("x"), {"restart_delay": 1})  # type: ignore[arg-type]
    assert [s.name for s in manager.services()] == ["steady"]
    manager.add_with_config(Probe("y"), trisup.ServiceConfig(restart_delay=-1))
    assert manager.get_service_info("y").current_delay == 1


async def test_verbs_before_and_after_serve(autojump_clock: trio.testing.MockClock) -> None:
    """Before and after serve, verbs record intent; serve honours it."""
    m = trisup.Manager()
    a, b = Probe("a"), Probe("b")
    m.add(a)
    m.add(b, auto_start=False)
    await m.stop_service("a")
    await m.start_service("b")
    assert m.get_service_info("a").status is S.STOPPED
    assert m.get_service_info("b").status is S.IDLE
    m.reset_service("a")
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        assert (a.live, b.live) == (0, 1)
        n.cancel_scope.cancel()
    await m.restart_service("a")
    await m.delete("b")
    assert [s.name for s in m.services()] == ["a"]
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        assert a.live == 1
        n.cancel_scope.cancel()
    assert m.get_service_info("a").metric.start_count == 1


async def test_grace_period_honoured(autojump_clock: trio.testing.MockClock) -> None:
    """A stop sets stop_requested; a service that returns within grace_period is not cancelled."""
    m = trisup.Manager()
    log: list[str] = []

    async def graceful() -> None:
        svc = trisup.current_service()
        assert svc.name == "g"
        await svc.stop_requested.wait()
        log.append(f"asked {trio.current_time():g}")
        await trio.sleep(2)  # wind down: not cancelled within the grace period
        log.append(f"done {trio.current_time():g}")

    m.add(trisup.new_service("g", graceful), grace_period=5)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await trio.sleep(1)
        await m.stop_service("g")
        assert trio.current_time() == 3
        assert log == ["asked 1", "done 3"]
        info = m.get_service_info("g")
        assert info.status is S.STOPPED
        assert info.metric.success_count == 1
        n.cancel_scope.cancel()


async def test_grace_period_exceeded(autojump_clock: trio.testing.MockClock) -> None:
    """A service that ignores stop_requested is cancelled when the grace period ends."""
    m = trisup.Manager()
    cancelled_at: list[float] = []

    async def stubborn() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled_at.append(trio.current_time())
            raise

    m.add(trisup.new_service("s", stubborn), grace_period=2, stop_timeout=5)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.wait_status("s", S.RUNNING)
        await trio.testing.wait_all_tasks_blocked()
        await m.stop_service("s")
        assert cancelled_at == [2]
        assert trio.current_time() == 2
        n.cancel_scope.cancel()


async def test_grace_period_in_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    """The shutdown sequence gives each service its grace period too."""
    m = trisup.Manager()
    done: list[float] = []

    async def graceful() -> None:
        await trisup.current_service().stop_requested.wait()
        await trio.sleep(1)
        done.append(trio.current_time())

    m.add(trisup.new_service("g", graceful), grace_period=3)
    with trio.move_on_after(1):
        await m.serve()
    assert done == [2]


def test_current_service_outside() -> None:
    """current_service() outside a service is a RuntimeError."""
    with pytest.raises(RuntimeError, match="outside"):
        trisup.current_service()


async def test_current_service_follows_the_task_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """current_service() answers in a service's task and in tasks of its own nurseries.

    A nested manager's service is its own; a task the service starts in a nursery it
    does not own belongs to that nursery's owner, not to the service; outside any
    service (in a task of the caller's nursery) it is a RuntimeError.
    """
    seen: list[str] = []
    outside: trio.Nursery | None = None

    def who() -> str:
        try:
            return trisup.current_service().name
        except RuntimeError:
            return "-"

    async def child(label: str) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(f"{label}:{who()}")

    async def inner_service() -> None:
        seen.append(f"inner:{who()}")
        await trio.sleep_forever()

    async def outer_service() -> None:
        seen.append(f"outer:{who()}")
        async with trio.open_nursery() as own:
            own.start_soon(child, "own-child")
            assert outside is not None
            outside.start_soon(child, "outside-child")
            inner = trisup.Manager("inner")
            inner.add(trisup.new_service("in", inner_service))
            own.start_soon(inner.serve)
            await trio.sleep_forever()

    m = trisup.Manager()
    m.add(trisup.new_service("out", outer_service))
    async with trio.open_nursery() as n:
        outside = n
        await n.start(m.serve)
        await trio.sleep(1)
        seen.append(f"caller:{who()}")
        n.cancel_scope.cancel()
    assert sorted(seen) == sorted(
        ["outer:out", "own-child:out", "outside-child:-", "inner:in", "caller:-"]
    )
