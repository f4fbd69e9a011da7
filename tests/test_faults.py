"""Fault injection: every way a hook, a service or the user can break the sequence.

- every hook and ``on_close`` raising or hanging at each phase, with serve ended by a
  cancellation or by a fatal error;
- a service raising ``KeyboardInterrupt``, ``SystemExit`` or a ``BaseExceptionGroup``,
  before its readiness or while running;
- a real SIGINT (``os.kill``) delivered at a random task step of a running
  three-level tree, under plain ``serve`` and under ``run``;
- a fatal error at the leaf of a three-level tree;
- a subscriber that never reads.

Each test states what must hold (what ran, what was logged, what was raised, when) and
checks all of it, including that no task trisup started is left afterwards.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trisup
from trisup import ExitStatus, ServiceStatus

S = ServiceStatus
SIGNAL_EXAMPLES = settings().max_examples // 5  # 60 with the CI profile
TREE_STEPS = 80  # a little more than the task steps of the tree below, start to end


class TaskCounter(trio.abc.Instrument):
    """The live tasks trisup spawned (named ``trisup...``) and every task below them."""

    def __init__(self) -> None:
        self.alive: dict[trio.lowlevel.Task, str] = {}

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        nursery = task.parent_nursery
        parent = nursery.parent_task if nursery is not None else None
        if task.name.startswith("trisup"):
            self.alive[task] = task.name
        elif parent is not None and parent in self.alive:
            self.alive[task] = self.alive[parent]

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.pop(task, None)

    def left(self) -> list[str]:
        return sorted(self.alive.values())


def leaves(error: BaseException) -> list[BaseException]:
    """The leaves of an exception group (or the exception itself), in order."""
    if isinstance(error, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", error)
        return [leaf for member in group.exceptions for leaf in leaves(member)]
    return [error]


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.__dict__.get("event") == event]


# -------------------------------------------------------------------- hook faults

PHASES = ("before_start", "after_start", "before_stop", "on_close", "after_stop")
START_PHASES = ("before_start", "after_start")
HOOK_EVENTS = ("hook_failed", "hook_timed_out")


def faulty_hook(phase: str, mode: str, log: list[str], error: Exception) -> Callable[[], object]:
    """A hook that raises (sync or async) or hangs until cancelled."""

    def raises() -> None:
        log.append(f"{phase} faulty")
        raise error

    async def raises_async() -> None:
        await trio.lowlevel.checkpoint()
        log.append(f"{phase} faulty")
        raise error

    async def hangs() -> None:
        log.append(f"{phase} faulty")
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"{phase} faulty cancelled")

    return {"raises": raises, "raises_async": raises_async, "hangs": hangs}[mode]


def expected_hooks(phase: str, mode: str) -> list[str]:
    """The hook log of SPEC §7 when the hook at *phase* is faulty."""
    seq: list[str] = []
    faulty = [f"{phase} faulty"] + ([f"{phase} faulty cancelled"] if mode == "hangs" else [])
    for p in START_PHASES:
        if p == phase:  # a start hook that raises or hangs ends the startup
            seq += faulty
            break
        seq.append(p)
    for p in ("before_stop", "on_close", "after_stop"):
        seq += [*faulty, p] if p == phase else [p]  # logged; the rest still run
    return seq


@pytest.mark.reliability(
    "fault injection: hooks",
    "a hook raising or hanging at any phase, serve ended by a cancel or a fatal error: a "
    "start hook's error is raised bare after the shutdown; a hanging start hook stays "
    "cancellable; a stop-phase hook is logged and bounded by stop_timeout and the rest "
    "still run; services stopped; no task left",
)
@pytest.mark.parametrize("ending", ["cancel", "fatal"])
@pytest.mark.parametrize("mode", ["raises", "raises_async", "hangs"])
@pytest.mark.parametrize("phase", PHASES)
async def test_faulty_hook(
    phase: str,
    mode: str,
    ending: str,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hook that raises or hangs at any phase: the documented ending, nothing left behind."""
    caplog.set_level(logging.WARNING, logger="trisup")
    tasks = TaskCounter()
    trio.lowlevel.add_instrument(tasks)
    log: list[str] = []
    error = OSError(f"{phase} broke")
    fatal = trisup.as_fatal(RuntimeError("disk"), ExitStatus.RESTART)
    m = trisup.Manager("m", stop_timeout=4)
    for p in PHASES:
        register = getattr(m, p)
        recorder = functools.partial(log.append, p)
        if p != phase:
            register(recorder)
        elif p in START_PHASES:  # run in order: the faulty one first
            register(faulty_hook(p, mode, log, error))
            register(recorder)
        else:  # run in reverse order: the faulty one first
            register(recorder)
            register(faulty_hook(p, mode, log, error))

    async def steady(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        log.append("svc up")  # awaited at startup: up before the after_start hooks
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.append("svc down")

    async def doomed() -> None:
        await trio.sleep(2)
        raise fatal

    m.add(trisup.new_service("steady", steady))
    if ending == "fatal":
        m.add(trisup.new_service("doomed", doomed))

    raised: BaseException | None = None
    with trio.fail_after(1000):
        try:
            with trio.move_on_after(10):
                await m.serve()
        except Exception as exc:
            raised = exc
    trio.lowlevel.remove_instrument(tasks)

    started = phase != "before_start"
    stop_hang = 4 if mode == "hangs" and phase not in START_PHASES else 0
    if phase in START_PHASES and mode != "hangs":  # the start hook's error, at once
        assert raised is error
        end = 0
    elif ending == "fatal" and started:  # the fatal error, after the shutdown
        assert raised is fatal
        end = 2 + stop_hang
        assert m.get_service_info("doomed").status is S.FAILED
    else:  # cancelled: serve returns quietly
        assert raised is None
        end = 10 + stop_hang
    assert trio.current_time() == end
    assert [e for e in log if not e.startswith("svc")] == expected_hooks(phase, mode)
    assert [e for e in log if e.startswith("svc")] == (["svc up", "svc down"] if started else [])
    logged = {k: [r.__dict__["phase"] for r in events(caplog, k)] for k in HOOK_EVENTS}
    # a start hook's error is raised, not logged; a stop-phase hook's is logged once
    expected_log: dict[str, list[str]] = {k: [] for k in HOOK_EVENTS}
    if phase not in START_PHASES:
        expected_log["hook_timed_out" if mode == "hangs" else "hook_failed"] = [phase]
    assert logged == expected_log
    assert tasks.left() == []


# ------------------------------------------------------- BaseExceptions from services

BASE_ERRORS: dict[str, Callable[[], BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": lambda: SystemExit(3),
    "group of KeyboardInterrupt": lambda: BaseExceptionGroup("g", [KeyboardInterrupt()]),
    "group with SystemExit": lambda: BaseExceptionGroup("g", [ValueError("x"), SystemExit(2)]),
}


@pytest.mark.reliability(
    "fault injection: BaseException from a service",
    "KeyboardInterrupt, SystemExit or a BaseExceptionGroup from a service, before its "
    "readiness or while running: never caught, raised from serve after the whole shutdown "
    "sequence ran in order; no task left",
)
@pytest.mark.parametrize("when", ["before readiness", "while running"])
@pytest.mark.parametrize("which", list(BASE_ERRORS))
async def test_base_exception_from_service(
    which: str, when: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A non-Exception from a service tears the manager down through the full shutdown."""
    tasks = TaskCounter()
    trio.lowlevel.add_instrument(tasks)
    log: list[str] = []
    error = BASE_ERRORS[which]()
    m = trisup.Manager("m")
    for p in PHASES:
        getattr(m, p)(lambda p=p: log.append(p))

    async def steady() -> None:
        log.append("steady up")
        try:
            await trio.sleep_forever()
        finally:
            log.append("steady down")

    async def bad(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if when == "while running":
            task_status.started()
        await trio.sleep(3)
        raise error

    m.add(trisup.new_service("steady", steady))
    m.add(trisup.new_service("bad", bad))
    with trio.fail_after(100), pytest.raises(BaseException) as caught:
        await m.serve()
    trio.lowlevel.remove_instrument(tasks)
    # the service's own exceptions, in order, and nothing else (trio may wrap them)
    assert [id(leaf) for leaf in leaves(caught.value)] == [id(leaf) for leaf in leaves(error)]
    assert trio.current_time() == 3
    started = ["before_start", "steady up"]
    if when == "while running":
        started.append("after_start")
    assert log == [*started, "before_stop", "steady down", "on_close", "after_stop"]
    assert m.get_service_info("steady").metric.success_count == 1
    assert tasks.left() == []


# ------------------------------------------------------------- three-level trees


class Tree:
    """root -> [sidecar, gateway, mid]; mid -> [leaf, flapper]; leaf -> [worker, doomed].

    sidecar is stopped last of all; gateway reports readiness after 1 s and takes 2 s to
    stop; flapper fails every 3 s;
    worker takes 1 s to stop; doomed raises a fatal error at *fatal_at* (if given).
    Every manager records its hooks; every service records its starts and stops.
    """

    def __init__(self, fatal_at: float | None = None) -> None:
        self.log: list[str] = []
        self.live: dict[str, int] = {}
        self.fatal = trisup.as_fatal(OSError("bad disk"), ExitStatus.NO_UPGRADE_AVAILABLE)
        self.root = self.manager("root")
        self.mid = self.manager("mid")
        self.leaf = self.manager("leaf")
        self.root.add(self.service("sidecar"))
        self.root.add(self.service("gateway", ready_after=1, stop_delay=2))
        self.root.add(self.mid, stop_timeout=60)
        self.mid.add(self.leaf, stop_timeout=60)
        self.mid.add(self.service("flapper", fail_after=3), restart_delay=0.5)
        self.leaf.add(self.service("worker", stop_delay=1))
        if fatal_at is not None:
            self.leaf.add(self.service("doomed", fail_after=fatal_at, fatal=True))

    def manager(self, name: str) -> trisup.Manager:
        m = trisup.Manager(name, stop_timeout=20)
        for p in PHASES:
            getattr(m, p)(lambda p=p: self.log.append(f"{name} {p}"))
        return m

    def service(
        self,
        name: str,
        *,
        ready_after: float = 0,
        stop_delay: float = 0,
        fail_after: float | None = None,
        fatal: bool = False,
    ) -> trisup.Service:
        async def body(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            self.live[name] = self.live.get(name, 0) + 1
            try:
                await trio.sleep(ready_after)
                task_status.started()
                # finite, so that a service nobody cancels shows up as a late end, not a hang
                await trio.sleep(10_000 if fail_after is None else fail_after)
                if fatal:
                    raise self.fatal
                raise ValueError(f"{name} failed")
            finally:
                if stop_delay:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(stop_delay)
                self.live[name] -= 1

        return trisup.new_service(name, body)

    def hooks(self, manager: str) -> list[str]:
        prefix = f"{manager} "
        return [e.removeprefix(prefix) for e in self.log if e.startswith(prefix)]

    def assert_sequences_in_order(self) -> None:
        """Each manager ran each hook at most once, in SPEC §7's order."""
        for name in ("root", "mid", "leaf"):
            ran = self.hooks(name)
            assert ran == [p for p in PHASES if p in ran], (name, ran)


_EXAMPLES: Counter[str] = Counter()


def count(record_property: Callable[[str, object], None], key: str) -> None:
    """Count one more example of a hypothesis test, for the reliability summary."""
    _EXAMPLES[key] += 1
    record_property("cases", _EXAMPLES[key])
    record_property("unit", "signal runs")


class Killer(trio.abc.Instrument):
    """Sends SIGINT to this process before the task steps numbered in *at* (once armed)."""

    def __init__(self, at: list[int], *, armed: bool = True) -> None:
        self.at = sorted(at)
        self.armed = armed
        self.steps = 0
        self.sent: list[float] = []

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.armed:
            return
        self.steps += 1
        if self.at and self.steps >= self.at[0]:
            self.at.pop(0)
            self.sent.append(trio.current_time())
            os.kill(os.getpid(), signal.SIGINT)


def run_tree(main: Callable[[], Awaitable[object]], *instruments: trio.abc.Instrument) -> object:
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(main, clock=clock, instruments=list(instruments))


@pytest.mark.reliability(
    "fault injection: SIGINT, plain serve",
    "a real SIGINT at a random task step of a three-level tree under plain serve (before, "
    "during and after a leaf's fatal error): KeyboardInterrupt propagates, every service "
    "was stopped at once, each shutdown ran in order, no task left",
)
@settings(
    max_examples=SIGNAL_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(step=st.integers(1, TREE_STEPS))
def test_sigint_at_random_step_under_serve(
    step: int, record_property: Callable[[str, object], None]
) -> None:
    """A SIGINT anywhere in a running tree: KeyboardInterrupt out of trio.run, nothing left."""
    count(record_property, "serve")
    tree = Tree(fatal_at=20)
    tasks = TaskCounter()
    killer = Killer([step])
    ended: list[float] = []

    async def main() -> None:
        try:
            await tree.root.serve()
        finally:
            ended.append(trio.current_time())

    with pytest.raises(BaseException) as caught:
        run_tree(main, tasks, killer)
    if killer.sent:  # KeyboardInterrupt propagates, maybe in a group
        assert KeyboardInterrupt in map(type, leaves(caught.value)), repr(caught.value)
        # every service was cancelled at once: the tree ended within its stop delays
        assert ended[0] <= max(killer.sent[0], 21) + 3
    else:  # the tree ended by itself before that step: the leaf's fatal error at 1 + 20
        assert caught.value is tree.fatal
        assert ended == [21 + 1 + 2]  # the worker takes 1 s to stop, the gateway 2 s
    assert tasks.left() == []
    assert all(n == 0 for n in tree.live.values()), tree.live
    tree.assert_sequences_in_order()


@pytest.mark.reliability(
    "fault injection: SIGINT, manager.run",
    "one or two real SIGINTs at random task steps of a three-level tree under run(): no "
    "KeyboardInterrupt escapes; the exit status is SUCCESS, or the leaf's fatal status "
    "when that came first; each shutdown ran in order; no task left",
)
@settings(
    max_examples=SIGNAL_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(first=st.integers(1, TREE_STEPS), second=st.none() | st.integers(1, TREE_STEPS // 2))
def test_sigint_at_random_step_under_run(
    first: int, second: int | None, record_property: Callable[[str, object], None]
) -> None:
    """SIGINT under run(): a graceful shutdown and an exit status, never an exception."""
    count(record_property, "run")
    tree = Tree(fatal_at=20)
    tasks = TaskCounter()
    at = [first] if second is None else [first, first + second]
    killer = Killer(at, armed=False)

    def arm() -> None:  # run() has installed its signal receiver by now
        killer.armed = True

    def disarm() -> None:  # signals after serve would reach the program, not the manager
        killer.armed = False

    tree.root.before_start(arm)
    tree.root.after_stop(disarm)  # the last step of serve (skipped only by a second signal)
    try:
        status = run_tree(tree.root.run, tasks, killer)
    except BaseException as exc:  # never let it reach pytest
        raise AssertionError(f"run() raised {exc!r} (signals at {killer.sent})") from None
    assert status in (ExitStatus.SUCCESS, ExitStatus.NO_UPGRADE_AVAILABLE)
    if status is ExitStatus.NO_UPGRADE_AVAILABLE:  # the fatal error came first
        assert tree.leaf.get_service_info("doomed").status is S.FAILED
    assert tasks.left() == []
    assert all(n == 0 for n in tree.live.values()), tree.live
    tree.assert_sequences_in_order()
    if len(killer.sent) < 2:  # not cut short: every manager that started shut down in full
        for name in ("root", "mid", "leaf"):
            ran = tree.hooks(name)
            assert not ran or ran[-3:] == ["before_stop", "on_close", "after_stop"], (name, ran)


@pytest.mark.reliability(
    "fault injection: fatal at the leaf",
    "a fatal error at the leaf of a three-level tree ends the whole tree: run() returns the "
    "leaf's status, the shutdowns run leaf, mid, root, every service stopped, no task left",
)
async def test_fatal_error_at_the_leaf(autojump_clock: trio.testing.MockClock) -> None:
    """A fatal error three levels down ends every level in order with the leaf's status."""
    tasks = TaskCounter()
    trio.lowlevel.add_instrument(tasks)
    tree = Tree(fatal_at=5)
    with trio.fail_after(100):
        assert await tree.root.run() is ExitStatus.NO_UPGRADE_AVAILABLE
    trio.lowlevel.remove_instrument(tasks)
    # the leaf starts once the gateway is ready (1 s), its fatal error comes 5 s later;
    # the worker takes 1 s to stop (leaf), the gateway 2 s (root)
    assert trio.current_time() == 1 + 5 + 1 + 2
    stops = [e for e in tree.log if e.split()[1] in ("before_stop", "on_close", "after_stop")]
    assert stops == [
        f"{m} {p}"
        for m in ("leaf", "mid", "root")
        for p in ("before_stop", "on_close", "after_stop")
    ]
    assert tree.leaf.get_service_info("doomed").status is S.FAILED
    assert tree.mid.get_service_info("leaf").status is S.FAILED
    assert tree.root.get_service_info("mid").status is S.FAILED
    assert tree.root.get_service_info("gateway").metric.success_count == 1
    assert all(n == 0 for n in tree.live.values()), tree.live
    assert tasks.left() == []

    # under plain serve the root raises the leaf's FatalError itself, bare
    tree = Tree(fatal_at=5)
    with trio.fail_after(100), pytest.raises(trisup.FatalError) as caught:
        await tree.root.serve()
    assert caught.value is tree.fatal


# -------------------------------------------------------------- subscribers


@pytest.mark.reliability(
    "fault injection: a subscriber that never reads",
    "a subscriber that never reads does not slow the manager (restart times exact), its "
    "buffer stays at max_buffer and the dropped events are counted",
)
async def test_subscriber_that_never_reads(autojump_clock: trio.testing.MockClock) -> None:
    """A stalled subscriber costs nothing: exact restarts, a bounded buffer, lost counted."""
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        raise ValueError("again")

    m = trisup.Manager("m")
    m.add(
        trisup.new_service("flaky", flaky),
        restart_delay=0.5,
        backoff_multiplier=1,
        max_restarts=2_000,
        max_restarts_in_window=0,
    )
    with trio.fail_after(10_000):
        async with m.subscribe(max_buffer=16) as stalled, m.subscribe(max_buffer=100_000) as all_:
            async with trio.open_nursery() as nursery:
                await nursery.start(m.serve)
                await m.wait_status("flaky", S.FAILED)
                nursery.cancel_scope.cancel()
            assert starts == [0.5 * i for i in range(2_001)]
            emitted = list(iter(all_.receive_nowait, None))
            assert all_.lost == 0
            kept = list(iter(stalled.receive_nowait, None))
    # 2,001 starts (starting, ready, exited); 2,000 restarts (backing_off, restarting);
    # 4 status changes (idle, starting, running, crashing, failed); 4,003 phase changes
    # (idle -> starting -> running, running -> backoff/failed at each of the 2,001
    # exits, backoff -> running at each of the 2,000 restarts); failed;
    # manager_started, manager_stopping, manager_stopped
    assert len(emitted) == 3 * 2_001 + 2 * 2_000 + 4 + (2 + 2_001 + 2_000) + 1 + 3
    assert stalled.lost == len(emitted) - 16
    assert kept == emitted[-16:]  # the newest, in order
