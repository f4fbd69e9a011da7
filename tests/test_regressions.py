"""Defects found by the reliability tests (model check, fault injection, hostile input).

Each test pins down one defect with the smallest scenario that showed it.
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus

S = ServiceStatus
SIGNALS = (signal.SIGINT, signal.SIGTERM)

pytestmark = pytest.mark.reliability("regression")  # each docstring says what must hold


async def test_no_restart_counted_during_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    """A backoff wait that ends during shutdown neither restarts nor counts a restart."""
    stopped_at: list[float] = []

    async def quick() -> None:
        pass  # returns at once: waits 0.5 s before each restart

    async def slow_to_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)
            stopped_at.append(trio.current_time())

    m = trisup.Manager()
    m.add(trisup.new_service("quick", quick), restart_delay=0.5)
    m.add(trisup.new_service("slow", slow_to_stop))
    with trio.move_on_after(0.25):
        await m.serve()
    # slow (started last) is stopped first and takes until 1.25; quick's wait ended at 0.5
    assert stopped_at == [1.25]
    assert trio.current_time() == 1.25
    info = m.get_service_info("quick")
    assert info.metric.start_count == 1
    assert info.restart_count == 0
    assert info.window_restarts == 0
    assert info.window_start is None
    assert info.status is S.IDLE


async def test_no_group_restart_counted_during_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A rest-for-one group restart whose wait ends during shutdown counts no restart."""

    async def fails() -> None:
        raise ValueError("crashed")  # at once: its group restarts after 1 s

    async def doomed() -> None:
        await trio.sleep(0.25)
        raise trisup.FatalError(None)

    async def slow_stop_hook() -> None:
        await trio.sleep(2)  # the shutdown is still running when the group's wait ends

    m = trisup.Manager(strategy=trisup.Strategy.REST_FOR_ONE)
    m.add(trisup.new_service("doomed", doomed))
    m.add(trisup.new_service("fails", fails))
    m.add(trisup.new_service("later", trio.sleep_forever))
    m.before_stop(slow_stop_hook)
    with pytest.raises(trisup.FatalError):
        await m.serve()
    assert trio.current_time() == 2.25
    info = m.get_service_info("fails")
    assert info.metric.start_count == 1
    assert info.restart_count == 0
    assert info.current_delay == 1
    assert info.status is S.ERROR


async def test_fatal_error_ends_a_readiness_wait(autojump_clock: trio.testing.MockClock) -> None:
    """A fatal error while startup waits for another service's readiness ends serve at once."""
    log: list[str] = []
    fatal = trisup.FatalError(None, trisup.ExitStatus.RESTART)

    async def doomed() -> None:
        await trio.sleep(1)
        raise fatal

    async def slow_ready(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await trio.sleep(100)
            task_status.started()
            await trio.sleep_forever()
        finally:
            log.append(f"slow stopped at {trio.current_time():g}")

    m = trisup.Manager()
    m.add(trisup.new_service("doomed", doomed))
    m.add(trisup.new_service("slow", slow_ready))
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            with pytest.raises(trisup.FatalError) as caught:
                await nursery.start(m.serve)
    assert caught.value is fatal
    assert trio.current_time() == 1
    assert log == ["slow stopped at 1"]
    assert m.get_service_info("doomed").status is S.FAILED


async def test_keyboard_interrupt_in_shutdown_still_cancels_services(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A KeyboardInterrupt from a stop hook propagates and the services are cancelled at once."""
    log: list[str] = []

    async def worker() -> None:
        try:
            await trio.sleep(50)
        finally:
            log.append(f"worker ended at {trio.current_time():g}")

    def interrupted() -> None:
        raise KeyboardInterrupt

    m = trisup.Manager()
    m.add(trisup.new_service("worker", worker))
    m.before_stop(interrupted)
    m.on_close(lambda: log.append("on_close"))
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        with trio.move_on_after(1):
            await m.serve()
    # before the fix the worker ran on until 50, unstoppable behind its shield
    assert log == ["worker ended at 1"]
    assert trio.current_time() == 1


async def test_keyboard_interrupt_before_readiness_is_not_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A KeyboardInterrupt before a service is ready: serve never reports ready, no after_start."""
    log: list[str] = []

    async def bad(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    m = trisup.Manager()
    m.add(trisup.new_service("bad", bad))
    m.after_start(lambda: log.append("after_start"))
    m.on_close(lambda: log.append("on_close"))
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            log.append("serve reported ready")
    assert log == ["on_close"]
    assert trio.current_time() == 1


async def test_signal_during_fatal_shutdown_keeps_the_fatal_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A SIGINT that arrives while a fatal error's shutdown runs does not turn it into SUCCESS."""

    async def doomed() -> None:
        await trio.sleep(1)
        raise trisup.FatalError(None, trisup.ExitStatus.RESTART)

    async def slow_to_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(5)

    async def interrupt_at(when: float) -> None:
        await trio.sleep_until(when)
        os.kill(os.getpid(), signal.SIGINT)

    m = trisup.Manager()
    m.add(trisup.new_service("slow", slow_to_stop))
    m.add(trisup.new_service("doomed", doomed))
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(interrupt_at, 2)
            assert await m.run() is trisup.ExitStatus.RESTART
    assert trio.current_time() == 6  # slow was stopped at 1 and took 5 s


async def test_cancel_during_shutdown_keeps_a_start_hook_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A start hook's error is raised even when the caller cancels during the shutdown."""
    err = OSError("no config")

    def broken() -> None:
        raise err

    async def slow_stop_hook() -> None:
        await trio.sleep(1)

    m = trisup.Manager()
    m.add(trisup.new_service("idle", trio.sleep_forever))
    m.after_start(broken)
    m.before_stop(slow_stop_hook)
    with pytest.raises(OSError) as caught:
        with trio.move_on_after(0.5):  # expires while the shutdown runs its hook
            await m.serve()
    assert caught.value is err
    assert trio.current_time() == 1


@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
async def test_signal_as_serve_returns_is_not_redelivered(
    sig: signal.Signals, autojump_clock: trio.testing.MockClock
) -> None:
    """A signal that reaches run() just as serve returns is handled, not re-raised after it."""
    log: list[str] = []
    redelivered: list[int] = []
    m = trisup.Manager()

    @m.after_start
    def first() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    @m.after_stop
    def second() -> None:  # the last step of serve: a race with the end of run()
        log.append("after_stop")
        os.kill(os.getpid(), sig)

    # record a redelivered signal instead of letting it interrupt (or kill) the test run
    previous = {s: signal.signal(s, lambda n, _: redelivered.append(n)) for s in SIGNALS}
    try:
        for _ in range(20):  # Trio orders the race at random: lose it at least once
            with trio.fail_after(10):
                assert await m.run() is trisup.ExitStatus.SUCCESS
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert log == ["after_stop"] * 20
    assert redelivered == []


@pytest.mark.parametrize("huge", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_huge_int_duration_is_a_value_error(huge: int) -> None:
    """An int too large for a float is a ValueError naming the field, not an OverflowError."""
    with pytest.raises(ValueError, match="restart_delay"):
        trisup.ServiceConfig(restart_delay=huge)
    m = trisup.Manager()
    with pytest.raises(ValueError, match="stop_timeout"):
        m.add(trisup.new_service("svc", trio.sleep_forever), stop_timeout=huge)
    with pytest.raises(ValueError, match="max_restart_delay"):
        m.add(trisup.new_service("svc", trio.sleep_forever), trisup.with_backoff(huge, 2))
    assert not m.has("svc")
    with pytest.raises(ValueError, match="stop_timeout"):
        trisup.Manager(stop_timeout=huge)


class Unprintable:
    """A value whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    "value", [10**5000, Unprintable()], ids=["int of 5001 digits", "broken repr"]
)
def test_error_messages_survive_unprintable_values(value: object) -> None:
    """A value whose repr raises still gets the TypeError/ValueError naming the argument."""
    with pytest.raises(TypeError, match="name"):
        trisup.Manager(name=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        trisup.new_service(value, trio.sleep_forever)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="strategy"):
        trisup.Manager(strategy=value)  # type: ignore[arg-type]
    m = trisup.Manager()
    with pytest.raises(TypeError, match="depends_on"):
        m.add(trisup.new_service("svc", trio.sleep_forever), depends_on=[value])  # type: ignore[list-item]
    assert not m.has("svc")


def test_non_iterable_depends_on_names_the_argument() -> None:
    """depends_on=5 is a TypeError naming depends_on, not "'int' object is not iterable"."""
    m = trisup.Manager()
    for value in (5, None, 1.5):
        with pytest.raises(TypeError, match="depends_on"):
            m.add(trisup.new_service("svc", trio.sleep_forever), depends_on=value)  # type: ignore[arg-type]
    assert not m.has("svc")
