"""How one service's attempts are classified and restarted (SPEC §4), in exact virtual time."""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trisup
from trisup import ExitStatus, RestartPolicy, ServiceStatus
from trisup.events import ServiceBackingOff

S = ServiceStatus
Body = Callable[[], Awaitable[None]]


class Recorder:
    """A service body that records its start times and runs a script per attempt."""

    def __init__(self, *steps: Body) -> None:
        self.starts: list[float] = []
        self.steps = list(steps)

    async def __call__(self) -> None:
        self.starts.append(trio.current_time())
        step = self.steps[min(len(self.starts), len(self.steps)) - 1]
        await step()


def fail(msg: str = "boom", after: float = 0) -> Body:
    async def body() -> None:
        await trio.sleep(after)
        raise ValueError(msg)

    return body


def succeed(after: float = 0) -> Body:
    async def body() -> None:
        await trio.sleep(after)

    return body


def forever() -> Body:
    async def body() -> None:
        await trio.sleep_forever()

    return body


def raising(exc: BaseException, after: float = 0) -> Body:
    async def body() -> None:
        await trio.sleep(after)
        raise exc

    return body


async def settle(m: trisup.Manager, name: str, *statuses: ServiceStatus) -> ServiceStatus:
    with trio.fail_after(10_000):
        return await m.wait_status(name, *statuses)


async def run_one(
    body: Body, until: tuple[ServiceStatus, ...], **config: Any
) -> tuple[trisup.ServiceInfo, float]:
    """Serve one service until it reaches a status; return its info and the time."""
    m = trisup.Manager()
    m.add(trisup.new_service("svc", body), **config)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await settle(m, "svc", *until)
        now = trio.current_time()
        info = m.get_service_info("svc")
        nursery.cancel_scope.cancel()
    return info, now


async def test_default_timeline(autojump_clock: trio.testing.MockClock) -> None:
    """A service failing at once starts at 0, 1, 3, 7, 15, 31 and is FAILED at 31."""
    rec = Recorder(fail())
    info, now = await run_one(rec, (S.FAILED,))
    assert rec.starts == [0, 1, 3, 7, 15, 31]
    assert now == 31
    assert info.restart_count == 5
    assert info.window_restarts == 5
    assert info.metric.error_count == 6
    assert info.metric.consec_failures == 6
    assert info.failed
    assert info.current_delay == 32


async def test_max_restarts_gives_n_plus_one_starts(autojump_clock: trio.testing.MockClock) -> None:
    """max_restarts=N allows exactly N+1 starts."""
    for n in (1, 3):
        rec = Recorder(fail())
        info, _ = await run_one(rec, (S.FAILED,), max_restarts=n, max_restarts_in_window=0)
        assert len(rec.starts) == n + 1
        assert info.restart_count == n


async def test_sliding_window(autojump_clock: trio.testing.MockClock) -> None:
    """The window slides: runs of 0, 58, 45, 0, 0 s give starts at 0, 1, 60, 106, 107."""
    rec = Recorder(fail(), fail(after=58), fail(after=45), fail(), fail())
    info, now = await run_one(
        rec,
        (S.FAILED,),
        max_restarts_in_window=3,
        restart_window=100,
        backoff_multiplier=1.0,
    )
    assert rec.starts == [0, 1, 60, 106, 107]
    assert now == 107
    assert info.window_restarts == 3
    assert info.restart_count == 4


async def test_backoff_cap_and_fractional_multiplier(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Delays grow by 1.5 and stop at the cap: 1, 1.5, 2.25, 3, 3, ..."""
    rec = Recorder(fail())
    await run_one(
        rec,
        (S.FAILED,),
        backoff_multiplier=1.5,
        max_restart_delay=3.0,
        max_restarts=5,
        max_restarts_in_window=0,
    )
    gaps = [b - a for a, b in itertools.pairwise(rec.starts)]
    assert gaps == [1, 1.5, 2.25, 3, 3]


async def test_jitter_within_bounds(autojump_clock: trio.testing.MockClock) -> None:
    """With a seeded generator each delay lies in [d, d * (1 + jitter)] and is reproducible."""

    async def delays_with(seed: int) -> list[float]:
        rec = Recorder(fail())
        m = trisup.Manager(rng=random.Random(seed))
        m.add(trisup.new_service("svc", rec), jitter=0.5, max_restarts=4, max_restarts_in_window=0)
        async with m.subscribe() as events, trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await settle(m, "svc", S.FAILED)
            nursery.cancel_scope.cancel()
        delays = [
            e.delay for e in iter(events.receive_nowait, None) if isinstance(e, ServiceBackingOff)
        ]
        # each attempt fails at once; the next one starts exactly the delay later
        assert rec.starts[1:] == [t + d for t, d in zip(rec.starts[:-1], delays, strict=True)]
        return delays

    first = await delays_with(7)
    assert first == await delays_with(7)
    assert first != await delays_with(8)
    for delay, base in zip(first, [1, 2, 4, 8], strict=True):
        assert base < delay < base * 1.5


async def test_healthy_reset_turns_crashing_into_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After restart_window of uptime the backoff resets while running, with no exit."""
    rec = Recorder(fail(), fail(), forever())
    m = trisup.Manager()
    m.add(trisup.new_service("svc", rec), restart_window=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await settle(m, "svc", S.CRASHING)
        assert rec.starts == [0]
        with trio.fail_after(100):
            while len(rec.starts) < 3:
                await trio.sleep(0.5)
        assert rec.starts == [0, 1, 3]
        info = m.get_service_info("svc")
        assert info.status is S.CRASHING
        assert info.metric.consec_failures == 2
        assert await settle(m, "svc", S.RUNNING) is S.RUNNING
        assert trio.current_time() == 13
        info = m.get_service_info("svc")
        assert info.metric.consec_failures == 0
        assert info.current_delay == 1
        assert info.window_restarts == 0
        assert info.window_start is None
        assert info.metric.start_count == 3
        assert info.metric.current_uptime == 10
        nursery.cancel_scope.cancel()


async def test_healthy_run_resets_before_next_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A run that lasted restart_window resets the delay, so the next restart waits 1 s."""
    rec = Recorder(fail(), fail(), fail(after=10), fail())
    await run_one(rec, (S.FAILED,), restart_window=10, max_restarts=3, max_restarts_in_window=0)
    assert rec.starts == [0, 1, 3, 14]


# ---- outcome classes under each policy ----------------------------------------------------


@pytest.mark.parametrize("policy", list(RestartPolicy))
async def test_clean_return(policy: RestartPolicy, autojump_clock: trio.testing.MockClock) -> None:
    """A clean return completes under ON_FAILURE/NEVER and restarts under ALWAYS."""
    rec = Recorder(succeed(after=2))
    m = trisup.Manager()
    m.add(trisup.new_service("svc", rec), restart_policy=policy)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        if policy is RestartPolicy.ALWAYS:
            with trio.fail_after(100):
                while len(rec.starts) < 3:
                    await trio.sleep(0.5)
            assert rec.starts == [0, 3, 7]  # runs 2 s, waits 1 then 2
            info = m.get_service_info("svc")
            assert info.status is S.RUNNING
            assert info.metric.success_count == 2
            assert info.restart_count == 2
        else:
            assert await settle(m, "svc", S.COMPLETED) is S.COMPLETED
            assert trio.current_time() == 2
            info = m.get_service_info("svc")
            assert info.metric.success_count == 1
            assert info.metric.consec_failures == 0
            assert rec.starts == [0]
        nursery.cancel_scope.cancel()


async def test_clean_returns_exhaust_window(autojump_clock: trio.testing.MockClock) -> None:
    """Under ALWAYS, clean exits count toward the window limit too."""
    rec = Recorder(succeed())
    info, _ = await run_one(rec, (S.FAILED,))
    assert rec.starts == [0, 1, 3, 7, 15, 31]
    assert info.metric.success_count == 6
    assert info.metric.error_count == 0


@pytest.mark.parametrize("policy", list(RestartPolicy))
async def test_failure(policy: RestartPolicy, autojump_clock: trio.testing.MockClock) -> None:
    """A failure is FAILED at once under NEVER, retried under ALWAYS and ON_FAILURE."""
    rec = Recorder(fail("bad thing"))
    info, now = await run_one(rec, (S.FAILED,), restart_policy=policy, max_restarts=1)
    assert info.metric.last_error == "bad thing"
    assert isinstance(info.error, ValueError)
    # each attempt fails at the instant it starts
    assert info.metric.last_error_time == info.metric.last_start_time
    if policy is RestartPolicy.NEVER:
        assert rec.starts == [0]
        assert info.metric.error_count == 1
    else:
        assert rec.starts == [0, 1]
        assert info.metric.error_count == 2
        assert now == 1


@pytest.mark.parametrize("policy", list(RestartPolicy))
async def test_do_not_restart_clean(
    policy: RestartPolicy, autojump_clock: trio.testing.MockClock
) -> None:
    """A bare DoNotRestart completes under every policy."""
    rec = Recorder(raising(trisup.no_restart(), after=1))
    info, now = await run_one(rec, (S.COMPLETED,), restart_policy=policy)
    assert now == 1
    assert rec.starts == [0]
    assert info.metric.success_count == 1
    assert info.metric.error_count == 0


@pytest.mark.parametrize("policy", list(RestartPolicy))
async def test_do_not_restart_with_cause(
    policy: RestartPolicy, autojump_clock: trio.testing.MockClock
) -> None:
    """DoNotRestart with a cause, or beside other errors, is FAILED without retry."""
    for exc, message in (
        (trisup.no_restart(OSError("no disk")), "no disk"),
        (ExceptionGroup("g", [trisup.no_restart(), KeyError("k")]), "g (2 sub-exceptions)"),
    ):
        rec = Recorder(raising(exc))
        info, _ = await run_one(rec, (S.FAILED,), restart_policy=policy)
        assert rec.starts == [0]
        assert info.metric.error_count == 1
        assert info.metric.success_count == 0
        assert info.metric.last_error == message
        assert info.error is exc


async def test_raise_from_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    """`raise no_restart() from err` counts as a failure that is not retried."""

    async def body() -> None:
        try:
            raise OSError("gone")
        except OSError as err:
            raise trisup.no_restart() from err

    info, _ = await run_one(body, (S.FAILED,))
    assert info.metric.last_error == "gone"


@pytest.mark.parametrize("policy", list(RestartPolicy))
async def test_fatal_fails_and_terminates(
    policy: RestartPolicy, autojump_clock: trio.testing.MockClock
) -> None:
    """A fatal error fails the service and ends serve with that FatalError."""
    fatal = trisup.as_fatal(RuntimeError("corrupt"), ExitStatus.UPGRADE)
    m = trisup.Manager()
    m.add(trisup.new_service("a", trio.sleep_forever))
    m.add(trisup.new_service("svc", raising(fatal, after=2)), restart_policy=policy)
    with pytest.raises(trisup.FatalError) as caught:
        await m.serve()
    assert caught.value is fatal
    assert trio.current_time() == 2
    info = m.get_service_info("svc")
    assert info.status is S.FAILED
    assert info.metric.error_count == 1
    assert info.metric.last_error == "corrupt"
    assert m.get_service_info("a").metric.success_count == 1


async def test_exception_group_leaves_classified(autojump_clock: trio.testing.MockClock) -> None:
    """A fatal leaf deep in a group is fatal; a group of plain errors is a failure."""
    fatal = trisup.as_fatal(None, ExitStatus.RESTART)

    async def nested_fatal() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(raising(fatal, after=1))
            await trio.sleep_forever()

    m = trisup.Manager()
    m.add(trisup.new_service("svc", nested_fatal))
    with pytest.raises(trisup.FatalError) as caught:
        await m.serve()
    assert caught.value is fatal

    async def group_of_two() -> None:
        raise ExceptionGroup("two", [ValueError("a"), KeyError("b")])

    info, _ = await run_one(group_of_two, (S.FAILED,), restart_policy=RestartPolicy.NEVER)
    assert info.metric.last_error == "two (2 sub-exceptions)"

    async def one_in_nursery() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(fail("inner message"))

    info, _ = await run_one(one_in_nursery, (S.FAILED,), restart_policy=RestartPolicy.NEVER)
    assert info.metric.last_error == "inner message"
    assert isinstance(info.error, ExceptionGroup)


@pytest.mark.parametrize(
    ("exc", "message"), [(TimeoutError("t"), "t"), (trio.TooSlowError(), "TooSlowError")]
)
async def test_timeouts_are_failures(
    exc: Exception, message: str, autojump_clock: trio.testing.MockClock
) -> None:
    """TimeoutError and TooSlowError are ordinary failures (no message: the type's name)."""
    info, _ = await run_one(raising(exc), (S.FAILED,), restart_policy=RestartPolicy.NEVER)
    assert info.metric.error_count == 1
    assert info.metric.last_error == message
    assert info.error is exc


async def test_terminate_supervisor(autojump_clock: trio.testing.MockClock) -> None:
    """A TerminateSupervisor ends serve with itself."""
    term = trisup.TerminateSupervisor("enough")
    m = trisup.Manager()
    m.add(trisup.new_service("svc", raising(term, after=1)))
    with pytest.raises(trisup.TerminateSupervisor) as caught:
        await m.serve()
    assert caught.value is term
    assert m.get_service_info("svc").status is S.FAILED


async def test_leaked_cancelled_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    """A Cancelled escaping serve without a stop is a service bug: a failure."""

    saved: list[trio.Cancelled] = []

    async def leak() -> None:
        with trio.CancelScope() as cs:
            cs.cancel()
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as exc:
                saved.append(exc)
        raise saved[0]

    info, _ = await run_one(leak, (S.FAILED,), restart_policy=RestartPolicy.NEVER)
    assert info.metric.error_count == 1
    assert info.error is saved[0]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_base_exceptions_propagate(
    exc_type: type[BaseException], autojump_clock: trio.testing.MockClock
) -> None:
    """KeyboardInterrupt and SystemExit are never caught; the manager shuts down in order."""
    stopped: list[str] = []

    async def steady() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.append("steady")

    m = trisup.Manager()
    m.add(trisup.new_service("steady", steady))
    m.add(trisup.new_service("bad", raising(exc_type(), after=1)))
    with pytest.RaisesGroup(exc_type, flatten_subgroups=True):
        await m.serve()
    assert stopped == ["steady"]
    assert trio.current_time() == 1


async def test_base_exception_inside_group_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A KeyboardInterrupt inside a service's nursery still tears the manager down."""

    async def body() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(raising(KeyboardInterrupt()))
            await trio.sleep_forever()

    m = trisup.Manager()
    m.add(trisup.new_service("bad", body))
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        await m.serve()


async def test_readiness(autojump_clock: trio.testing.MockClock) -> None:
    """A service taking task_status is STARTING until started(), then RUNNING."""

    async def slow_start(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(2)
        task_status.started()
        with pytest.raises(RuntimeError):
            task_status.started()
        await trio.sleep_forever()

    m = trisup.Manager()
    m.add(trisup.new_service("svc", slow_start))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.serve)
        await settle(m, "svc", S.STARTING)
        assert trio.current_time() == 0
        await settle(m, "svc", S.RUNNING)
        assert trio.current_time() == 2
        nursery.cancel_scope.cancel()


async def test_status_error_after_shutdown_in_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A shutdown during a backoff wait leaves ERROR (not running, consec > 0)."""
    m = trisup.Manager()
    m.add(trisup.new_service("svc", fail()))
    with trio.move_on_after(0.5):
        await m.serve()
    info = m.get_service_info("svc")
    assert info.status is S.ERROR
    assert info.metric.success_count == 0
    assert trio.current_time() == 0.5


async def test_uptimes(autojump_clock: trio.testing.MockClock) -> None:
    """total_uptime includes the current run; average divides by start_count."""
    rec = Recorder(fail(after=2), forever())
    m = trisup.Manager()
    m.add(trisup.new_service("svc", rec))
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await trio.sleep(7)
        info = m.get_service_info("svc").metric
        assert rec.starts == [0, 3]
        assert info.current_uptime == 4
        assert info.total_uptime == 6
        assert info.average_uptime == 3
        assert info.start_count == 2
        nursery.cancel_scope.cancel()


async def test_healthy_reset_after_a_storm_keeps_one_timer_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """40 quick failures, then a run: it turns RUNNING restart_window after its own start.

    Each attempt moves the service's healthy deadline; the timer keeps one heap entry
    for it throughout, besides the one of its backoff wait (internal state, read on
    purpose: it is what keeps a crash storm from allocating per restart).
    """
    rec = Recorder(*[fail()] * 40, forever())
    m = trisup.Manager()
    m.add(
        trisup.new_service("svc", rec),
        restart_delay=0.5,
        max_restart_delay=0.5,
        restart_window=10,
        max_restarts_in_window=0,
    )
    sizes: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        ctx = m._ctx  # pyright: ignore[reportPrivateUsage]
        assert ctx is not None
        while len(rec.starts) < 41:
            sizes.append(len(ctx.timer))
            await trio.sleep(0.25)
        assert rec.starts[-1] == 20.0
        assert m.get_service_info("svc").status is S.CRASHING
        assert await settle(m, "svc", S.RUNNING) is S.RUNNING
        assert trio.current_time() == 30.0
        assert m.get_service_info("svc").metric.consec_failures == 0
        nursery.cancel_scope.cancel()
    assert max(sizes) == 2


async def test_timer_deadline_moving_earlier_supersedes_the_entry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The healthy-reset timer: the latest schedule of a target wins, earlier or later.

    Runner deadlines only move forward (a fixed window after each start); an earlier
    one supersedes the target's heap entry, which is then skipped when it comes due.
    """
    from trisup._timer import DeadlineTimer  # pyright: ignore[reportPrivateUsage]

    fired: list[tuple[str, int, float]] = []

    class Target:
        def __init__(self, name: str) -> None:
            self.name = name

        def healthy(self, attempt: int) -> None:
            fired.append((self.name, attempt, trio.current_time()))

    timer = DeadlineTimer()
    a, b = Target("a"), Target("b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        timer.schedule(100, a, 1)
        timer.schedule(50, b, 1)
        await trio.sleep(10)
        timer.schedule(20, a, 2)  # earlier: the entry at 100 is superseded
        timer.schedule(60, b, 2)  # later: the entry at 50 moves on to 60
        assert len(timer) == 3
        await trio.sleep(200)
        assert fired == [("a", 2, 20.0), ("b", 2, 60.0)]
        assert len(timer) == 0
        nursery.cancel_scope.cancel()


async def test_error_traceback_starts_in_the_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ServiceInfo.error's traceback begins at the service's code, not trisup's frames."""

    async def broken() -> None:
        raise ValueError("boom")

    class Broken:
        name = "cls"

        async def serve(self) -> None:
            raise KeyError("k")

    m = trisup.Manager()
    m.add(trisup.new_service("fn", broken), restart_policy=RestartPolicy.NEVER)
    m.add(Broken(), restart_policy=RestartPolicy.NEVER)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await settle(m, "fn", S.FAILED)
        await settle(m, "cls", S.FAILED)
        for name, code in (("fn", broken.__code__), ("cls", Broken.serve.__code__)):
            error = m.get_service_info(name).error
            assert error is not None and error.__traceback__ is not None
            assert error.__traceback__.tb_frame.f_code is code
            assert error.__traceback__.tb_next is None
        nursery.cancel_scope.cancel()


async def test_info_running_tells_a_run_from_a_backoff_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ServiceInfo.running: true inside serve, false while waiting out the backoff."""
    rec = Recorder(fail(), fail(after=1), forever())
    m = trisup.Manager()
    m.add(trisup.new_service("svc", rec))
    seen: list[tuple[float, S, bool]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await trio.sleep(0.25)  # sample between the changes, never at the same instant
        for _ in range(10):
            info = m.get_service_info("svc")
            seen.append((trio.current_time(), info.status, info.running))
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # fails at 0, waits 1 s; runs 1..2 and fails; waits 2 s; runs from 4 on
    runs = [False, False, True, True, False, False, False, False, True, True]
    assert seen == [(0.25 + 0.5 * i, S.CRASHING, run) for i, run in enumerate(runs)]
    stopped = m.get_service_info("svc")
    assert not stopped.running


async def test_timer_parks_wakes_and_compacts(autojump_clock: trio.testing.MockClock) -> None:
    """Parked tasks wake at their deadline or on `wake`; aborted parks are compacted away."""
    from trisup._timer import DeadlineTimer  # pyright: ignore[reportPrivateUsage]

    timer = DeadlineTimer()
    woke: list[tuple[int, float]] = []

    async def sleeper(
        i: int, deadline: float, *, task_status: trio.TaskStatus[trio.lowlevel.Task]
    ) -> None:
        task_status.started(trio.lowlevel.current_task())
        await timer.sleep_until(deadline)
        woke.append((i, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        async with trio.open_nursery() as doomed:
            for i in range(100):
                await doomed.start(sleeper, i, 1000.0)
            await trio.testing.wait_all_tasks_blocked()
            doomed.cancel_scope.cancel()  # 100 aborted parks
        assert len(timer) == 100  # their entries linger until the next push
        at_five = await nursery.start(sleeper, 100, 5.0)
        woken = await nursery.start(sleeper, 101, 8.0)
        assert len(timer) == 2  # compacted: only the live entries are left
        await trio.sleep(1)
        assert timer.wake(woken)
        assert not timer.wake(woken)  # no longer parked
        assert not timer.wake(trio.lowlevel.current_task())  # never parked
        await trio.sleep(10)
        assert woke == [(101, 1.0), (100, 5.0)]
        assert not timer.wake(at_five)
        nursery.cancel_scope.cancel()


async def test_sub_millisecond_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A delay under 1 ms passes a checkpoint, then waits out the rest: exact times."""
    tiny = 2.0**-20
    rec = Recorder(fail())
    info, _ = await run_one(
        rec, (S.FAILED,), restart_delay=tiny, max_restart_delay=1.0, max_restarts=4
    )
    assert rec.starts == [0, tiny, 3 * tiny, 7 * tiny, 15 * tiny]
    assert info.restart_count == 4
