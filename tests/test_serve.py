"""serve, shutdown, hooks, on_close, nested managers, run and serve_background (SPEC §4, §7, §8)."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import outcome
import pytest
import trio
import trio.testing

import trisup
from trisup import ExitStatus, ServiceStatus

S = ServiceStatus


def sleeper(
    log: list[str], name: str, *, ready_after: float | None = None, exit_delay: float = 0
) -> trisup.Service:
    """A service that logs its start, readiness and stop."""

    async def body(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        log.append(f"start {name}")
        try:
            if ready_after is not None:
                await trio.sleep(ready_after)
                log.append(f"ready {name}")
            task_status.started()
            await trio.sleep_forever()
        finally:
            if exit_delay:
                with trio.CancelScope(shield=True):
                    await trio.sleep(exit_delay)
            log.append(f"stop {name}")

    if ready_after is None:

        async def plain() -> None:
            log.append(f"start {name}")
            try:
                await trio.sleep_forever()
            finally:
                if exit_delay:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(exit_delay)
                log.append(f"stop {name}")

        return trisup.new_service(name, plain)
    return trisup.new_service(name, body)


async def test_startup_order_and_readiness(autojump_clock: trio.testing.MockClock) -> None:
    """Services start in registration order; readiness is awaited before the next one."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(sleeper(log, "a", ready_after=2))
    m.add(sleeper(log, "b"))
    m.add(sleeper(log, "c", ready_after=1))
    m.before_start(lambda: log.append("before_start"))
    m.after_start(lambda: log.append(f"after_start {trio.current_time():g}"))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        log.append(f"ready {trio.current_time():g}")
        n.cancel_scope.cancel()
    assert log[:3] == ["before_start", "start a", "ready a"]
    # b is plain: spawned without waiting, in the same batch as c's first step
    assert sorted(log[3:5]) == ["start b", "start c"]
    assert log[5:7] == ["ready c", "after_start 3"]
    assert log[7] == "ready 3"


async def test_shutdown_sequence(autojump_clock: trio.testing.MockClock) -> None:
    """Shutdown: before_stop -> services (reverse position) -> on_close -> after_stop."""
    log: list[str] = []
    m = trisup.Manager()
    for name in ("a", "b", "c"):
        m.add(sleeper(log, name, exit_delay=0.5))

    async def slow_before_stop() -> None:
        await trio.sleep(1)  # services must not stop before this returns
        log.append("before_stop 1")

    m.before_stop(slow_before_stop)
    m.before_stop(lambda: log.append("before_stop 2"))
    m.on_close(lambda: log.append("on_close 1"))
    m.on_close(lambda: log.append("on_close 2"))
    m.after_stop(lambda: log.append("after_stop 1"))
    m.after_stop(lambda: log.append("after_stop 2"))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await trio.testing.wait_all_tasks_blocked()
        await m.restart_service("a")  # a restart keeps a's position: first
        log.clear()
        n.cancel_scope.cancel()
    assert log == [
        "before_stop 2",
        "before_stop 1",
        "stop c",
        "stop b",
        "stop a",
        "on_close 2",
        "on_close 1",
        "after_stop 2",
        "after_stop 1",
    ]
    assert trio.current_time() == 0.5 + 1 + 1.5
    assert all(i.status is S.IDLE for i in m.get_services_info())
    assert all(not i.stopped for i in m.get_services_info())


async def test_hook_failures_logged_rest_run(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop hook that raises or hangs is logged; the rest still run."""
    caplog.set_level(logging.WARNING, logger="trisup")
    log: list[str] = []
    m = trisup.Manager(stop_timeout=2)

    def broken() -> None:
        raise RuntimeError("hook broke")

    async def hangs() -> None:
        await trio.sleep_forever()

    m.before_stop(lambda: log.append("before_stop"))
    m.before_stop(broken)
    m.on_close(hangs)
    m.after_stop(lambda: log.append("after_stop"))
    with trio.move_on_after(1):
        await m.serve()
    assert log == ["before_stop", "after_stop"]
    assert trio.current_time() == 1 + 2
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f"before_stop hook {broken!r} of manager trisup failed"),
        (logging.WARNING, f"on_close hook {hangs!r} of manager trisup timed out after 2s"),
    ]


async def test_start_hook_error_aborts_serve(autojump_clock: trio.testing.MockClock) -> None:
    """A start hook that raises aborts serve: shutdown runs, the error comes out bare."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(sleeper(log, "a", ready_after=0))
    m.on_close(lambda: log.append("on_close"))
    err = OSError("no config")

    def fail_hook() -> None:
        raise err

    m.after_start(fail_hook)
    async with trio.open_nursery() as n:
        with pytest.raises(OSError) as caught:
            await n.start(m.serve)
    assert caught.value is err
    assert log == ["start a", "ready a", "stop a", "on_close"]


async def test_on_close_runs_once_per_serve(autojump_clock: trio.testing.MockClock) -> None:
    """on_close: two closures from one lambda both run; never on stop/restart/delete."""
    calls: list[int] = []
    m = trisup.Manager()
    m.add(sleeper([], "a"))
    for i in range(2):
        m.on_close(lambda i=i: calls.append(i))  # closures from one lambda

    @m.on_close
    async def async_close() -> None:
        calls.append(99)

    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.stop_service("a")
        await m.start_service("a")
        await m.restart_service("a")
        await m.delete("a")
        assert calls == []
        assert m.services() == []
        n.cancel_scope.cancel()
    assert calls == [99, 1, 0]
    with trio.move_on_after(1):
        await m.serve()
    assert calls == [99, 1, 0, 99, 1, 0]


async def test_stop_phase_bounded_by_manager_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The service phase is bounded by the manager's stop_timeout; stragglers are named."""
    caplog.set_level(logging.WARNING, logger="trisup")
    log: list[str] = []
    m = trisup.Manager(stop_timeout=5)
    m.add(sleeper(log, "a", exit_delay=20))
    m.add(sleeper(log, "b", exit_delay=3), stop_timeout=2)
    m.on_close(lambda: log.append(f"on_close {trio.current_time():g}"))
    with trio.move_on_after(1):
        await m.serve()
    # b (started last) is given 2 s, then a gets the remaining 3 s of the phase
    assert sorted(log[:2]) == ["start a", "start b"]  # plain services start in one batch
    assert log[2:] == ["stop b", "on_close 6", "stop a"]
    assert trio.current_time() == 23  # a was cancelled at 3 and shields for 20 s
    warnings = [r for r in caplog.records if r.__dict__.get("event") == "stop_phase_timed_out"]
    assert [(w.__dict__["services"], w.getMessage()) for w in warnings] == [
        ("a", "manager trisup: services still running after the stop phase: a")
    ]
    # b's own stop timed out (as a verb's would); a was cut by the phase's bound
    timed_out = [r for r in caplog.records if r.__dict__.get("event") == "stop_timed_out"]
    assert [r.getMessage() for r in timed_out] == ["service b did not stop within 2s"]


async def test_each_stop_gets_its_own_stop_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Stops in sequence: each is bounded from its own start, not from the first one's.

    c is stopped first and takes 3 s of its 5; b then takes 4 s of its 5 (until 7,
    beyond the 5 s after the first stop began) and is not cut short; a overruns its
    2 s and is left to the stragglers.
    """
    caplog.set_level(logging.WARNING, logger="trisup")

    class Stamped(list[str]):
        def append(self, line: str) -> None:
            super().append(f"{line} {trio.current_time():g}")

    log = Stamped()
    m = trisup.Manager(stop_timeout=20)
    m.add(sleeper(log, "a", exit_delay=30), stop_timeout=2)
    m.add(sleeper(log, "b", exit_delay=4), stop_timeout=5)
    m.add(sleeper(log, "c", exit_delay=3), stop_timeout=5)
    with trio.move_on_after(1):
        await m.serve()
    # c: 1 -> 4; b: 4 -> 8 (its own 5 s, past the 6 that c's stop began with);
    # a: cancelled at 8, its stop times out at 10, its cleanup shields until 38
    assert [line for line in log if line.startswith("stop")] == [
        "stop c 4",
        "stop b 8",
        "stop a 38",
    ]
    warnings = [r for r in caplog.records if r.__dict__.get("event") == "stop_phase_timed_out"]
    assert [w.__dict__["services"] for w in warnings] == ["a"]
    timed_out = [r for r in caplog.records if r.__dict__.get("event") == "stop_timed_out"]
    assert [r.getMessage() for r in timed_out] == ["service a did not stop within 2s"]


async def test_fatal_from_nested_manager_ends_root(autojump_clock: trio.testing.MockClock) -> None:
    """A fatal error three levels down ends the root with its exit status."""
    log: list[str] = []
    fatal = trisup.as_fatal(RuntimeError("bad disk"), ExitStatus.NO_UPGRADE_AVAILABLE)

    async def doomed() -> None:
        await trio.sleep(3)
        raise fatal

    leaf = trisup.Manager("leaf")
    leaf.add(trisup.new_service("doomed", doomed))
    leaf.add(sleeper(log, "leaf-sibling"))
    mid = trisup.Manager("mid")
    mid.add(leaf)
    root = trisup.Manager("root")
    root.add(sleeper(log, "root-sibling"))
    root.add(mid)
    assert await root.run() is ExitStatus.NO_UPGRADE_AVAILABLE
    assert trio.current_time() == 3
    # started in registration order; the leaf shuts down first, then the root
    assert log == [
        "start root-sibling",
        "start leaf-sibling",
        "stop leaf-sibling",
        "stop root-sibling",
    ]
    assert root.get_service_info("mid").status is S.FAILED
    assert mid.get_service_info("leaf").status is S.FAILED


async def test_nested_manager_readiness(autojump_clock: trio.testing.MockClock) -> None:
    """A child manager is STARTING until its own startup is done."""
    child = trisup.Manager("child")
    child.add(sleeper([], "slow", ready_after=4))
    root = trisup.Manager("root")
    root.add(child)
    async with trio.open_nursery() as n:
        await n.start(root.serve)
        assert trio.current_time() == 4
        assert root.get_service_info("child").status is S.RUNNING
        await root.stop_service("child")
        assert child.get_service_info("slow").status is S.IDLE
        n.cancel_scope.cancel()


async def test_fatal_before_readiness_raised_from_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fatal error before readiness comes out of nursery.start(m.serve)."""
    fatal = trisup.FatalError(None, ExitStatus.RESTART)

    async def bad(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(1)
        raise fatal

    later: list[str] = []
    m = trisup.Manager()
    m.add(trisup.new_service("bad", bad))
    m.add(sleeper(later, "later"))
    async with trio.open_nursery() as n:
        with pytest.raises(trisup.FatalError) as caught:
            await n.start(m.serve)
    assert caught.value is fatal
    assert later == []


async def test_startup_cancellable(autojump_clock: trio.testing.MockClock) -> None:
    """A service that never becomes ready does not make startup uncancellable."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(sleeper(log, "never", ready_after=10_000))
    with trio.move_on_after(5):
        async with trio.open_nursery() as n:
            await n.start(m.serve)
    assert trio.current_time() == 5
    assert log == ["start never", "stop never"]


async def test_serve_twice_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    """A concurrent second serve raises RuntimeError; serving again later works."""
    m = trisup.Manager()
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        with pytest.raises(RuntimeError, match="already serving"):
            await m.serve()
        n.cancel_scope.cancel()
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        n.cancel_scope.cancel()


async def test_reserve_starts_afresh(autojump_clock: trio.testing.MockClock) -> None:
    """Serving again starts every service not stopped by hand afresh."""

    async def bad() -> None:
        raise ValueError("x")

    m = trisup.Manager()
    m.add(trisup.new_service("bad", bad), max_restarts=1)
    m.add(sleeper([], "off"))
    with trio.move_on_after(10):
        async with trio.open_nursery() as n:
            await n.start(m.serve)
            await m.stop_service("off")
    assert m.get_service_info("bad").status is S.FAILED
    with trio.move_on_after(0.5):
        await m.serve()
    info = m.get_service_info("bad")
    assert info.status is S.ERROR
    assert info.metric.start_count == 3
    assert info.restart_count == 0
    assert m.get_service_info("off").status is S.STOPPED


async def test_add_while_serving_starts(autojump_clock: trio.testing.MockClock) -> None:
    """A service added while serving starts at once (unless auto_start is off)."""
    log: list[str] = []
    m = trisup.Manager()
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        m.add(sleeper(log, "late"))
        m.add(sleeper(log, "manual"), auto_start=False)
        await m.wait_status("late", S.RUNNING)
        assert m.get_service_info("manual").status is S.STOPPED
        n.cancel_scope.cancel()
    assert log == ["start late", "stop late"]


async def test_serve_background(autojump_clock: trio.testing.MockClock) -> None:
    """serve_background returns after startup; cancel gives Value(None); errors in the outcome."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(sleeper(log, "a", ready_after=2))
    async with trio.open_nursery() as n:
        handle = await m.serve_background(n)
        assert trio.current_time() == 2
        assert not handle.done
        handle.cancel()
        assert await handle.wait() == outcome.Value(None)
    assert log == ["start a", "ready a", "stop a"]

    fatal = trisup.FatalError(None, ExitStatus.UPGRADE)

    async def boom(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise fatal

    m2 = trisup.Manager()
    m2.add(trisup.new_service("boom", boom))
    async with trio.open_nursery() as n:
        handle = await m2.serve_background(n)
        result = await handle.wait()
    assert isinstance(result, outcome.Error)
    assert result.error is fatal

    m3 = trisup.Manager()
    m3.add(trisup.new_service("later", trio.sleep, 4))
    m3.add(trisup.new_service("fatal", _raise_later, fatal))
    async with trio.open_nursery() as n:
        t0 = trio.current_time()
        handle = await m3.serve_background(n)
        result = await handle.wait()
        assert trio.current_time() - t0 == 1
    assert isinstance(result, outcome.Error)
    assert result.error is fatal


async def _raise_later(exc: BaseException) -> None:
    await trio.sleep(1)
    raise exc


async def test_run_exit_statuses(autojump_clock: trio.testing.MockClock) -> None:
    """run returns the fatal status, ERROR for other errors, SUCCESS after a signal."""
    m = trisup.Manager()
    m.add(trisup.new_service("f", _raise_later, trisup.FatalError(None, ExitStatus.RESTART)))
    assert await m.run() is ExitStatus.RESTART

    m = trisup.Manager()

    def broken() -> None:
        raise RuntimeError("bad hook")

    m.before_start(broken)
    assert await m.run() is ExitStatus.ERROR

    m = trisup.Manager()
    m.add(trisup.new_service("t", _raise_later, trisup.TerminateSupervisor("done")))
    assert await m.run() is ExitStatus.ERROR

    log: list[str] = []
    m = trisup.Manager()
    m.add(sleeper(log, "a"))

    @m.after_start
    async def signal_self() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with trio.fail_after(5):
        assert await m.run() is ExitStatus.SUCCESS
    assert log == ["start a", "stop a"]


async def test_second_signal_stops_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """A second SIGINT cuts a slow shutdown short."""
    log: list[str] = []
    m = trisup.Manager(stop_timeout=1000)

    @m.after_start
    def first() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    @m.before_stop
    async def slow() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(500)
        log.append("slow finished")

    m.on_close(lambda: log.append("on_close"))
    with trio.fail_after(10):
        assert await m.run() is ExitStatus.SUCCESS
    assert log == []
    assert trio.current_time() == 0  # neither the hook's 500 s nor anything else waited


async def test_logging_extra(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Log records carry the service under `service`; identical failures repeat at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="trisup")
    messages = iter(["same", "same", "same", "other"])

    async def bad() -> None:
        raise ValueError(next(messages))

    m = trisup.Manager()
    m.add(trisup.new_service("bad", bad), max_restarts=3)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.wait_status("bad", S.FAILED)
        n.cancel_scope.cancel()
    exits = [r for r in caplog.records if r.__dict__.get("event") == "exited"]
    assert [(r.levelno, r.__dict__["error"]) for r in exits] == [
        (logging.WARNING, "same"),
        (logging.DEBUG, "same"),
        (logging.DEBUG, "same"),
        (logging.WARNING, "other"),
    ]
    assert all(r.__dict__["service"] == "bad" for r in exits)
    statuses = [r for r in caplog.records if r.__dict__.get("event") == "status"]
    assert [(r.levelno, r.__dict__["service"], r.getMessage()) for r in statuses] == [
        (logging.DEBUG, "bad", "bad: idle -> starting"),
        (logging.DEBUG, "bad", "bad: starting -> running"),
        (logging.DEBUG, "bad", "bad: running -> crashing"),
        (logging.DEBUG, "bad", "bad: crashing -> failed"),
    ]
    assert [(r.__dict__["old"], r.__dict__["new"]) for r in statuses] == [
        (S.IDLE, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.CRASHING),
        (S.CRASHING, S.FAILED),
    ]


async def test_timestamps_follow_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    """Timestamps advance with the virtual clock, anchored to the wall clock."""
    before = datetime.fromtimestamp(time.time(), UTC)
    m = trisup.Manager()
    m.add(trisup.new_service("bad", _raise_later, ValueError("x")), max_restarts=1)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.wait_status("bad", S.FAILED)
        n.cancel_scope.cancel()
    after = datetime.fromtimestamp(time.time(), UTC)
    info = m.get_service_info("bad")
    metric = info.metric
    assert metric.created_at is not None and metric.last_start_time is not None
    assert metric.last_error_time is not None
    # added (outside serve) at the wall clock; virtual 0 is the wall clock when serve began
    tick = timedelta(microseconds=1)  # each time is a float rounded to the microsecond
    assert metric.created_at.tzinfo is UTC
    assert before - tick <= metric.created_at <= after + tick
    # started at 0, failed at 1, restarted at 2, failed again at 3
    anchor = metric.last_start_time - timedelta(seconds=2)
    assert before - tick <= anchor <= after + tick
    assert abs(metric.last_error_time - anchor - timedelta(seconds=3)) <= tick
    assert metric.last_stop_time == metric.last_error_time
    assert info.window_start == info.last_service_start == metric.last_start_time
