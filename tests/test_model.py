"""A model-checked supervisor: random services and operations against a reference model.

hypothesis drives a `RuleBasedStateMachine` of random services (fail, return or run
forever after a scripted time, ignore cancellation for a while, raise a group,
`DoNotRestart` or a fatal error, report readiness late) and random operations (add,
the control verbs, remove/restart all, advancing the clock, serving and cancelling the
manager). After every step the whole manager is compared with `Model`, a small
reference model written from SPEC §4-§7 alone: statuses, counters, every start time,
the result and duration of each operation, how and when ``serve`` ended, and which of
trisup's tasks are alive.

How a step runs: the manager lives in a Trio run on a `trio.testing.MockClock`, in a
worker thread. A step switches the clock's autojump on, performs the operation, waits
until every task is blocked, moves the clock on to the next multiple of 0.5 s and
freezes the clock again, so between steps nothing happens at all.

Why the numbers are what they are: every duration a service or the configuration uses
is a multiple of 0.5 s, so virtual times compare with ``==``. Events that Trio would
order at random if they fell on the same instant are kept apart: a fatal error comes
2**-20 s after the grid, stop timeouts are 1/64 s past it and the manager's
stop_timeout 1/128 s past it. The one order Trio leaves open that the model cannot
rule out, which of several services that `restart_services` started in the same batch
started first (that decides the shutdown order), is enumerated: the model keeps every
world consistent with what was observed.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import math
import threading
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

import trisup
from trisup import RestartPolicy, ServiceStatus

S = ServiceStatus

GRID = 0.5
EPS = 2.0**-20  # a fatal error's extra time: it never coincides with another service's event
STOP_PHASE = 1 / 64  # stop timeouts: a stop's deadline never coincides with a service's event
MANAGER_PHASE = 1 / 128  # the manager's stop_timeout: its phase deadline neither
HANG = 100_000.0  # virtual seconds after which an operation counts as hung
NAMES = ("a", "b", "c", "d")
EXAMPLES = settings().max_examples  # the profile's: 300 in CI, more with HYPOTHESIS_PROFILE=fuzz

CLEAN_ENDS = ("return", "no_restart")
FAILURE_ENDS = ("fail", "group", "leak")
FATAL_ENDS = ("fatal", "terminate")
ENDS = (
    "return",
    "return",
    "fail",
    "fail",
    "fail",
    "group",
    "leak",
    "no_restart",
    "no_restart_cause",
    "fatal",
    "terminate",
)


# ----------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Attempt:
    """One attempt of a scripted service: how long it runs and how it ends."""

    duration: float | None  # None: until cancelled
    end: str

    def end_after(self) -> float | None:
        """When the attempt ends on its own, from its start."""
        if self.duration is None:
            return None
        return self.duration + (EPS if self.end in FATAL_ENDS else 0.0)


@dataclass(frozen=True)
class Spec:
    """A service to add: its behaviour and its configuration."""

    name: str
    script: tuple[Attempt, ...]
    cancel_ignore: float  # how long it keeps running after a cancellation
    ready_after: float | None  # None: a plain service (no task_status)
    policy: RestartPolicy
    max_restarts: int
    restart_delay: float
    max_restart_delay: float
    restart_window: float
    max_in_window: int
    multiplier: float
    auto_start: bool
    stop_timeout: float

    def add_to(self, m: trisup.Manager, service: trisup.Service) -> None:
        """Register *service* with this configuration, through `Manager.add`'s keywords."""
        m.add(
            service,
            restart_policy=self.policy,
            max_restarts=self.max_restarts,
            restart_delay=self.restart_delay,
            max_restart_delay=self.max_restart_delay,
            restart_window=self.restart_window,
            max_restarts_in_window=self.max_in_window,
            backoff_multiplier=self.multiplier,
            auto_start=self.auto_start,
            stop_timeout=self.stop_timeout,
        )


@dataclass(frozen=True)
class Op:
    """One operation of the state machine."""

    kind: str
    name: str = ""
    spec: Spec | None = None
    dt: float = 0.0


@dataclass(frozen=True)
class View:
    """What is compared about one registered service."""

    status: ServiceStatus
    start_count: int
    error_count: int
    success_count: int
    consec_failures: int
    restart_count: int
    current_delay: float
    window_restarts: int
    stopped: bool
    failed: bool
    total_uptime: float
    starts: tuple[float, ...]


@dataclass
class Snapshot:
    """The state after a step, predicted by the model or observed in trisup."""

    result: str | None  # the exception the operation raised, by type name
    elapsed: float  # how long the operation took
    serve_end: tuple[frozenset[str], float] | None  # how and when serve ended in this step
    time: float
    serving: bool
    names: tuple[str, ...]
    services: dict[str, View]
    instances: dict[int, tuple[int, int]]  # registration -> (live, live and not cancelled)
    tasks: dict[str, int]  # trisup's live tasks, by name

    def mismatches(self, other: Snapshot) -> list[str]:
        """What differs between a prediction (self) and an observation (other)."""
        out: list[str] = []
        for name in ("result", "elapsed", "time", "serving", "names", "instances", "tasks"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: expected {mine!r}, observed {theirs!r}")
        if (self.serve_end is None) != (other.serve_end is None) or (
            self.serve_end is not None
            and other.serve_end is not None
            and (
                not other.serve_end[0] <= self.serve_end[0]
                or self.serve_end[1] != other.serve_end[1]
            )
        ):
            out.append(f"serve_end: expected {self.serve_end!r}, observed {other.serve_end!r}")
        for name in sorted(set(self.services) | set(other.services)):
            mine_view, their_view = self.services.get(name), other.services.get(name)
            if mine_view != their_view:
                out.append(f"service {name}:\n  expected {mine_view}\n  observed {their_view}")
        return out


# ----------------------------------------------------------------- the reference model


class Signal:
    """Something a model process can wait for."""

    __slots__ = ("fired", "waiters")

    def __init__(self) -> None:
        self.fired = False
        self.waiters: list[tuple[int, int]] = []  # (process id, token)


@dataclass
class Wait:
    """What a model process yields: wait for any of *signals*, or until *deadline*."""

    signals: list[Signal]
    deadline: float = math.inf


ProcGen = Generator[Wait, bool, str | None]


@dataclass(eq=False)
class Proc:
    """A running model process (an operation, startup or shutdown)."""

    gen: ProcGen
    token: int = 0
    result: str | None = None
    finished: bool = False
    done: Signal = field(default_factory=Signal)


class MRunner:
    """The model of one registered service."""

    def __init__(self, spec: Spec, reg: int) -> None:
        self.spec = spec
        self.reg = reg
        self.name = spec.name
        self.max_delay = max(spec.max_restart_delay, spec.restart_delay)  # the seed's repair
        self.start_count = 0
        self.error_count = 0
        self.success_count = 0
        self.total_uptime = 0.0
        self.restart_count = 0
        self.consec = 0
        self.delay = spec.restart_delay
        self.window: list[float] = []
        self.window_restarts = 0
        self.generation = 0
        self.failed = False
        self.completed = False
        self.stopped = not spec.auto_start
        self.deleted = False
        self.alive = False  # a runner task lives
        self.again: tuple[int, int | None] | None = None  # a start follows the exiting one
        self.cancelled = False
        self.phase = "idle"  # idle | running | exiting (cancelled, still running) | waiting
        self.ready = False
        self.run_start = 0.0
        self.attempt = 0
        self.wait_id = 0
        self.seq = 0
        self.done = Signal()
        self.settled = Signal()
        self.starts: list[float] = []

    @property
    def running(self) -> bool:
        return self.phase in ("running", "exiting")

    def status(self) -> ServiceStatus:
        """SPEC §4's status rules, first match wins."""
        if self.stopped:
            return S.STOPPED
        if self.failed:
            return S.FAILED
        if self.completed:
            return S.COMPLETED
        if self.running and not self.ready:
            return S.STARTING
        if self.running or self.phase == "waiting":
            return S.CRASHING if self.consec else S.RUNNING
        if self.consec:
            return S.ERROR
        return S.IDLE


class Model:
    """SPEC §4-§7 as a discrete-event simulation, independent of trisup's code.

    At each instant, events due by the clock (an attempt ending, a backoff wait or a
    stop deadline running out) happen before the reactions to them (a stop that was
    waiting for the exit returns, the shutdown moves on to the next service), as in
    Trio, where a task woken by another runs in a later batch.
    """

    def __init__(self, stop_timeout: float) -> None:
        self.stop_timeout = stop_timeout
        self.now = 0.0
        self._queue: list[tuple[float, int, int, Callable[..., None], tuple[object, ...]]] = []
        self._seq = 0
        self._procs: dict[int, Proc] = {}
        self._proc_ids = 0
        self.registry: dict[str, MRunner] = {}
        self.runners: list[MRunner] = []
        self.serving = False
        self.accepting = False
        self.stopping = False
        self.terminated = False
        self.ready = False
        self.session = 0
        self.fatal_time: float | None = None
        self.fatal_names: set[str] = set()
        self.terminated_signal = Signal()
        self.serve_end: tuple[frozenset[str], float] | None = None
        self.spawns = 0
        self.moments: dict[tuple[int, float, bool], int] = {}
        self.groups = 0
        self.choices: list[int] = []
        self.choice_log: list[int] = []

    # ------------------------------------------------------------------ the engine

    def _at(self, when: float, fn: Callable[..., None], *args: object) -> None:
        assert when >= self.now
        self._seq += 1
        prio = 0 if when > self.now else 1  # due by the clock, or a reaction
        heapq.heappush(self._queue, (when, prio, self._seq, fn, args))

    def _next(self, limit: float) -> bool:
        if not self._queue or self._queue[0][0] > limit:
            return False
        when, _, _, fn, args = heapq.heappop(self._queue)
        self.now = when
        fn(*args)
        return True

    def _run_until(self, when: float) -> None:
        while self._next(when):
            pass
        self.now = max(self.now, when)

    def _run_while(self, busy: Callable[[], bool]) -> None:
        while busy():
            if not self._next(self.now + HANG):
                raise AssertionError("the model deadlocked")

    def _start_proc(self, gen: ProcGen) -> Proc:
        self._proc_ids += 1
        pid = self._proc_ids
        proc = self._procs[pid] = Proc(gen)
        self._step(pid, None)
        return proc

    def _step(self, pid: int, value: bool | None) -> None:
        proc = self._procs[pid]
        try:
            wait = next(proc.gen) if value is None else proc.gen.send(value)
        except StopIteration as stop:
            proc.finished = True
            proc.result = stop.value
            del self._procs[pid]
            self._fire(proc.done)
            return
        proc.token += 1
        assert not any(s.fired for s in wait.signals)
        for signal in wait.signals:
            signal.waiters.append((pid, proc.token))
        if wait.deadline < math.inf:
            self._at(wait.deadline, self._wake, pid, proc.token, False)

    def _wake(self, pid: int, token: int, value: bool) -> None:
        proc = self._procs.get(pid)
        if proc is not None and proc.token == token:
            proc.token += 1
            self._step(pid, value)

    def _fire(self, signal: Signal) -> None:
        if signal.fired:
            return
        signal.fired = True
        for pid, token in signal.waiters:
            self._at(self.now, self._wake, pid, token, True)
        signal.waiters.clear()

    def choose(self, n: int) -> int:
        """A choice Trio leaves to chance: the world's script decides it."""
        i = len(self.choice_log)
        self.choice_log.append(n)
        return self.choices[i] if i < len(self.choices) else 0

    # ------------------------------------------------------------ one service (§4)

    @staticmethod
    def _healthy_reset(r: MRunner) -> None:
        r.consec = 0
        r.delay = r.spec.restart_delay
        r.window.clear()
        r.window_restarts = 0

    @staticmethod
    def _reset_counters(r: MRunner) -> None:
        r.generation += 1
        r.restart_count = 0
        Model._healthy_reset(r)
        r.failed = False

    def _spawn(self, r: MRunner, moment: tuple[int, float, bool] | None = None) -> None:
        if moment is None or moment not in self.moments:
            self.spawns += 1
            if moment is not None:
                self.moments[moment] = self.spawns
        r.seq = self.spawns if moment is None else self.moments[moment]
        r.alive = True
        r.cancelled = False
        r.done = Signal()
        r.settled = Signal()
        self._start_attempt(r)

    def _start_attempt(self, r: MRunner) -> None:
        spec = r.spec
        r.attempt += 1
        attempt = spec.script[r.start_count % len(spec.script)]
        r.start_count += 1
        r.starts.append(self.now)
        r.run_start = self.now
        r.phase = "running"
        r.ready = spec.ready_after is None
        end = attempt.end_after()
        if spec.ready_after is not None and (end is None or spec.ready_after <= end):
            self._at(self.now + spec.ready_after, self._ev_ready, r, r.attempt)
        if end is not None:
            self._at(self.now + end, self._ev_end, r, r.attempt, attempt.end)
        self._at(self.now + spec.restart_window, self._ev_healthy, r, r.attempt)
        if r.ready:
            self._fire(r.settled)

    def _ev_ready(self, r: MRunner, attempt: int) -> None:
        if r.attempt == attempt and r.phase == "running":
            r.ready = True
            self._fire(r.settled)

    def _ev_healthy(self, r: MRunner, attempt: int) -> None:
        if r.attempt == attempt and r.running:
            self._healthy_reset(r)

    def _finish_attempt(self, r: MRunner) -> None:
        uptime = self.now - r.run_start
        r.total_uptime += uptime
        r.phase = "idle"
        r.ready = False
        if uptime >= r.spec.restart_window:
            self._healthy_reset(r)

    def _ev_end(self, r: MRunner, attempt: int, end: str) -> None:
        if r.attempt != attempt or r.phase != "running":
            return  # cancelled before it ended on its own
        self._finish_attempt(r)
        if end in CLEAN_ENDS:  # rules 4 and 6
            r.success_count += 1
            if end == "return":
                r.consec = 0
            if end == "return" and r.spec.policy is RestartPolicy.ALWAYS:
                self._restart_path(r)
            else:
                r.completed = True
                self._end_task(r)
        elif end in FAILURE_ENDS:  # rule 5
            r.error_count += 1
            r.consec += 1
            if r.spec.policy is RestartPolicy.NEVER:
                r.failed = True
                self._end_task(r)
            else:
                self._restart_path(r)
        else:  # rule 3 (fatal) and rule 4 with a cause: failed, not retried
            r.error_count += 1
            r.failed = True
            if end in FATAL_ENDS:
                self._terminate(end)
            self._end_task(r)
        self._fire(r.settled)

    def _window_count(self, r: MRunner) -> int:
        r.window = [t for t in r.window if self.now - t < r.spec.restart_window]
        return len(r.window)

    def _restart_path(self, r: MRunner) -> None:
        spec = r.spec
        r.window_restarts = self._window_count(r)  # as of this decision, also a give-up
        if spec.max_restarts > 0 and r.restart_count >= spec.max_restarts:
            r.failed = True
            self._end_task(r)
            return
        if spec.max_in_window > 0 and r.window_restarts >= spec.max_in_window:
            r.failed = True
            self._end_task(r)
            return
        r.phase = "waiting"
        r.wait_id += 1
        self._at(self.now + r.delay, self._ev_wake, r, r.wait_id, r.generation)

    def _ev_wake(self, r: MRunner, wait_id: int, generation: int) -> None:
        if r.phase != "waiting" or r.wait_id != wait_id:
            return
        if self.stopping:  # the manager is shutting down: no restart happens
            self._end_task(r)
            return
        if generation == r.generation:  # a reset during the wait keeps the fresh delay
            r.delay = min(r.delay * r.spec.multiplier, r.max_delay)
        r.restart_count += 1
        r.window.append(self.now)
        r.window_restarts = self._window_count(r)
        self._start_attempt(r)

    def _end_task(self, r: MRunner) -> None:
        r.alive = False
        r.cancelled = False
        r.phase = "idle"
        r.ready = False
        self._fire(r.done)
        self._fire(r.settled)
        self._follow(r)

    def _request_cancel(self, r: MRunner) -> None:
        if not r.alive:
            return
        r.cancelled = True
        if r.phase == "running":
            r.phase = "exiting"
            self._at(self.now + r.spec.cancel_ignore, self._ev_exit, r, r.attempt)
        elif r.phase == "waiting":
            r.wait_id += 1
            self._at(self.now, self._end_task, r)

    def _ev_exit(self, r: MRunner, attempt: int) -> None:
        if r.attempt != attempt or r.phase != "exiting":
            return
        self._finish_attempt(r)
        r.success_count += 1  # rule 2: a stop of a running service
        self._end_task(r)

    def _terminate(self, end: str) -> None:
        name = "FatalError" if end == "fatal" else "TerminateSupervisor"
        if self.fatal_time is None:
            self.fatal_time = self.now
            self.fatal_names = {name}
        elif self.fatal_time == self.now:
            self.fatal_names.add(name)  # two at once: either may be the one raised
        if not self.terminated:
            self.terminated = True
            self._fire(self.terminated_signal)
            if self.ready and not self.stopping:
                self._at(self.now, self._begin_shutdown)

    def _begin_shutdown(self) -> None:
        self._start_proc(self._p_shutdown(cancelled=False))

    # --------------------------------------------------------- the verbs (§5)

    def _p_stop(self, r: MRunner) -> ProcGen:
        r.again = None  # the latest request wins
        if not r.stopped or r.alive:
            r.stopped = True
            self._request_cancel(r)
        if not r.alive:
            return None
        exited = yield Wait([r.done], self.now + r.spec.stop_timeout)
        return None if exited else "ServiceStopTimeout"

    def _p_stop_verb(self, r: MRunner) -> ProcGen:
        if r.stopped:
            return None
        return (yield from self._p_stop(r))

    def _p_start(self, r: MRunner, group: int | None = None, waited: bool = False) -> ProcGen:
        if r.alive and not r.cancelled and r.phase != "waiting":
            return None  # running or starting: a no-op
        r.stopped = False
        r.completed = False
        self._reset_counters(r)
        if not (self.serving and self.accepting):
            return None  # recorded for the next serve
        if r.alive and not r.cancelled:  # waiting to restart: start at once
            r.wait_id += 1
            self._start_attempt(r)
            return None
        if r.alive:  # an earlier instance is still exiting: the new one follows it
            r.again = (self.session, group)
            exited = yield Wait([r.done], self.now + r.spec.stop_timeout)
            return None if exited else "ServiceStopTimeout"  # else the start stays requested
        self._spawn(r, None if group is None else (group, self.now, waited))
        return None

    def _follow(self, r: MRunner) -> None:
        """A start requested while an instance exited: it begins now (unless superseded)."""
        again, r.again = r.again, None
        if again is None or r.stopped or r.deleted or again[0] != self.session:
            return
        if self.accepting:
            group = again[1]
            self._spawn(r, None if group is None else (group, self.now, True))

    def _p_restart(self, r: MRunner, group: int | None = None) -> ProcGen:
        waited = False
        if r.alive:
            error = yield from self._p_stop(r)
            if error is not None:
                return error
            waited = True
        return (yield from self._p_start(r, group, waited))

    def _p_restart_registered(self, r: MRunner, group: int) -> ProcGen:
        if self.registry.get(r.name) is not r:
            return None
        return (yield from self._p_restart(r, group))

    def _p_delete(self, r: MRunner) -> ProcGen:
        error = yield from self._p_stop(r)
        if error is not None:
            return error
        if self.registry.get(r.name) is r:
            del self.registry[r.name]
        r.deleted = True
        return None

    def _p_each(self, make: Callable[[MRunner], ProcGen]) -> ProcGen:
        procs = [self._start_proc(make(r)) for r in list(self.registry.values())]
        for proc in procs:
            if not proc.finished:
                yield Wait([proc.done])
        return None  # per-service errors are logged, not raised

    def _p_remove_all(self) -> ProcGen:
        return (yield from self._p_each(self._p_delete))

    def _p_restart_all(self) -> ProcGen:
        self.groups += 1
        group = self.groups
        return (yield from self._p_each(lambda r: self._p_restart_registered(r, group)))

    # ------------------------------------------------------ serve and shutdown (§7)

    def _p_serve(self) -> ProcGen:
        self.session += 1
        self.serving = True
        self.stopping = False
        self.terminated = False
        self.ready = False
        self.terminated_signal = Signal()
        self.fatal_time = None
        self.fatal_names = set()
        self.moments = {}
        self.accepting = True
        for r in list(self.registry.values()):
            if self.terminated:
                break
            if r.deleted or r.stopped or r.alive:
                continue
            r.completed = False
            self._reset_counters(r)
            self._spawn(r)
            if r.spec.ready_after is not None and not r.settled.fired:
                yield Wait([r.settled, self.terminated_signal])
        if not self.terminated:
            self.ready = True
            return None
        return (yield from self._p_shutdown(cancelled=False))

    def _shutdown_order(self) -> list[MRunner]:
        """Reverse position: the latest registered first, whatever was restarted since."""
        return sorted((r for r in self.registry.values() if r.alive), key=lambda r: -r.reg)

    def _p_shutdown(self, *, cancelled: bool) -> ProcGen:
        self.stopping = True
        self.accepting = False
        live = self._shutdown_order()
        deadline = self.now + self.stop_timeout
        for r in live:
            if self.now >= deadline:
                break
            self._request_cancel(r)
            if r.alive:
                yield Wait([r.done], min(deadline, self.now + r.spec.stop_timeout))
        for r in live:
            self._request_cancel(r)
        while alive := [r for r in self.runners if r.alive]:
            yield Wait([r.done for r in alive])
        self.serving = self.accepting = self.stopping = self.ready = False
        # a cancelled serve raises only the Cancelled its canceller absorbs, even when a
        # service failed fatally during the shutdown; otherwise the first fatal error
        ending = {"cancelled"} if cancelled else self.fatal_names
        self.serve_end = (frozenset(ending), self.now)
        return None

    # ----------------------------------------------------------------- the steps

    def _add(self, spec: Spec) -> str | None:
        if spec.name in self.registry:
            return "ServiceAlreadyExists"
        r = MRunner(spec, len(self.runners) + 1)
        self.registry[spec.name] = r
        self.runners.append(r)
        if self.serving and self.accepting and not r.stopped:
            self._spawn(r)
        return None

    def _proc_for(self, op: Op) -> ProcGen | None:
        if op.kind == "serve":
            return self._p_serve()
        if op.kind == "cancel":
            return self._p_shutdown(cancelled=True)
        if op.kind == "remove_all":
            return self._p_remove_all()
        if op.kind == "restart_all":
            return self._p_restart_all()
        r = self.registry[op.name]
        if op.kind == "start":
            return self._p_start(r)
        if op.kind == "stop":
            return self._p_stop_verb(r)
        if op.kind == "restart":
            return self._p_restart(r)
        if op.kind == "delete":
            return self._p_delete(r)
        return None

    def apply(self, op: Op) -> Snapshot:
        """Perform one step; return what trisup must then look like."""
        self.serve_end = None
        start = self.now
        result: str | None = None
        if op.kind == "advance":
            self._run_until(start + op.dt)
        elif op.kind == "add":
            assert op.spec is not None
            result = self._add(op.spec)
        elif op.name and op.name not in self.registry:
            result = "ServiceNotFound"
        elif op.kind == "reset":
            self._reset_counters(self.registry[op.name])
        else:
            gen = self._proc_for(op)
            assert gen is not None
            proc = self._start_proc(gen)
            self._run_while(lambda: not proc.finished)
            result = proc.result
        elapsed = self.now - start
        self._run_until(self.now)  # everything due now settles
        if self.stopping:  # the harness waits for a shutdown in progress to end
            self._run_while(lambda: self.serving)
        self._run_until(math.ceil(self.now / GRID) * GRID)
        assert not self._procs
        return self.snapshot(result, elapsed)

    def snapshot(self, result: str | None, elapsed: float) -> Snapshot:
        services: dict[str, View] = {}
        for name, r in self.registry.items():
            uptime = self.now - r.run_start if r.running else 0.0
            services[name] = View(
                status=r.status(),
                start_count=r.start_count,
                error_count=r.error_count,
                success_count=r.success_count,
                consec_failures=r.consec,
                restart_count=r.restart_count,
                current_delay=r.delay,
                window_restarts=r.window_restarts,
                stopped=r.stopped,
                failed=r.failed,
                total_uptime=r.total_uptime + uptime,
                starts=tuple(r.starts),
            )
        tasks = Counter(f"trisup:{r.name}" for r in self.runners if r.alive)
        if self.serving:
            tasks["trisup:m:timer"] += 1
        return Snapshot(
            result=result,
            elapsed=elapsed,
            serve_end=self.serve_end,
            time=self.now,
            serving=self.serving,
            names=tuple(self.registry),
            services=services,
            instances={r.reg: (int(r.running), int(r.phase == "running")) for r in self.runners},
            tasks=dict(tasks),
        )


def predict(world: Model, op: Op, limit: int = 200) -> list[tuple[Model, Snapshot]]:
    """Every outcome of *op* from *world*, one per way Trio may order what it leaves open."""
    outcomes: list[tuple[Model, Snapshot]] = []
    scripts: list[list[int]] = [[]]
    while scripts:
        script = scripts.pop()
        candidate = copy.deepcopy(world)
        candidate.choices = script
        candidate.choice_log = []
        outcomes.append((candidate, candidate.apply(op)))
        taken = script + [0] * (len(candidate.choice_log) - len(script))
        for pos in range(len(script), len(candidate.choice_log)):
            for alt in range(1, candidate.choice_log[pos]):
                scripts.append([*taken[:pos], alt])
        if len(outcomes) > limit:
            raise AssertionError(f"more than {limit} possible orders: shrink the scenario")
    return outcomes


# ------------------------------------------------------------------- the trisup side


class Tracker:
    """What the instances of one registration did, seen from inside them."""

    def __init__(self) -> None:
        self.live = 0
        self.running = 0
        self.max_live = 0
        self.starts: list[float] = []


async def _leaked_cancelled() -> trio.Cancelled:
    """A `Cancelled` caught in a scope of the service's own (raising it is a bug)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("unreachable")


def _end(end: str, name: str, leaked: trio.Cancelled | None) -> None:
    """End an attempt as scripted (no checkpoint: the end happens at its instant)."""
    if end == "return":
        return
    if end == "fail":
        raise ValueError(f"{name} failed")
    if end == "group":
        raise ExceptionGroup("two failures", [ValueError("one"), KeyError("two")])
    if end == "leak":
        assert leaked is not None
        raise leaked
    if end == "no_restart":
        raise trisup.no_restart()
    if end == "no_restart_cause":
        raise trisup.no_restart(OSError("gone"))
    if end == "fatal":
        raise trisup.as_fatal(RuntimeError("fatal"), trisup.ExitStatus.RESTART)
    raise trisup.TerminateSupervisor("terminate")


def scripted(spec: Spec, tracker: Tracker) -> trisup.Service:
    """A service that plays *spec*'s script, one attempt after the other."""

    async def attempt(task_status: trio.TaskStatus[None]) -> None:
        step = spec.script[len(tracker.starts) % len(spec.script)]
        leaked = await _leaked_cancelled() if step.end == "leak" else None
        tracker.starts.append(trio.current_time())
        tracker.live += 1
        tracker.running += 1
        tracker.max_live = max(tracker.max_live, tracker.live)
        cancelled = False
        try:
            try:
                rest = step.end_after()
                ready = spec.ready_after
                if ready is not None and (rest is None or ready <= rest):
                    await trio.sleep(ready)
                    task_status.started()
                    rest = None if rest is None else rest - ready
                if rest is None:
                    await trio.sleep_forever()
                else:
                    await trio.sleep(rest)
            except trio.Cancelled:
                cancelled = True
                tracker.running -= 1
                if spec.cancel_ignore:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(spec.cancel_ignore)
                raise
            _end(step.end, spec.name, leaked)
        finally:
            tracker.live -= 1
            if not cancelled:
                tracker.running -= 1

    if spec.ready_after is None:

        async def plain() -> None:
            await attempt(trio.TASK_STATUS_IGNORED)

        return trisup.new_service(spec.name, plain)

    async def with_readiness(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await attempt(task_status)

    return trisup.new_service(spec.name, with_readiness)


class TaskCounter(trio.abc.Instrument):
    """Tracks the tasks trisup spawns (named ``trisup...``) and every task below them."""

    def __init__(self) -> None:
        self.alive: dict[trio.lowlevel.Task, str] = {}

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith("trisup"):
            self.alive[task] = task.name
            return
        nursery = task.parent_nursery
        parent = nursery.parent_task if nursery is not None else None
        if parent is not None and parent in self.alive:
            self.alive[task] = self.alive[parent]

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.pop(task, None)

    def runners(self) -> dict[str, int]:
        """The live runner and timer tasks (and what they started), by root name."""
        return dict(Counter(n for n in self.alive.values() if n.startswith("trisup:")))

    def others(self) -> list[str]:
        """Live tasks trisup started outside serve (those of remove/restart all)."""
        return [n for n in self.alive.values() if not n.startswith("trisup:")]


class _Startup:
    """The ``task_status`` given to ``serve``: sets an event when startup is done."""

    def __init__(self, event: trio.Event) -> None:
        self._event = event

    def started(self, value: None = None) -> None:
        self._event.set()


class Harness:
    """A manager in a Trio run on a frozen `MockClock`, in a thread, one step at a time."""

    def __init__(self, stop_timeout: float) -> None:
        self.clock = trio.testing.MockClock()  # rate 0, no autojump: frozen between steps
        self.tasks = TaskCounter()
        self.manager = trisup.Manager("m", stop_timeout=stop_timeout)
        self.manager.before_stop(self._note_stopping)
        self.trackers: dict[int, Tracker] = {}
        self.current: dict[str, int] = {}
        self.serving = False
        self.stopping = False
        self.serve_end: tuple[str, float] | None = None
        self.leftover: dict[str, int] = {}
        self.serve_scope = trio.CancelScope()
        self.serve_done = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._crash: BaseException | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Trio thread did not start")

    def _thread_main(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                ready.set()
                await trio.sleep_forever()

        try:
            trio.run(main, clock=self.clock, instruments=[self.tasks])
        except BaseException as exc:  # reported by close()
            self._crash = exc
            ready.set()

    def _note_stopping(self) -> None:
        self.stopping = True

    def step(self, op: Op) -> Snapshot:
        """Perform *op* in the Trio thread; return what trisup looks like afterwards."""
        assert self._token is not None
        return trio.from_thread.run(self._step, op, trio_token=self._token)

    async def _step(self, op: Op) -> Snapshot:
        self.clock.autojump_threshold = 0
        try:
            return await self._perform(op)
        finally:
            self.clock.autojump_threshold = math.inf

    async def _perform(self, op: Op) -> Snapshot:
        self.serve_end = None
        start = trio.current_time()
        result: str | None = None
        try:
            with trio.fail_after(HANG):
                await self._do(op)
        except (
            trisup.ServiceNotFound,
            trisup.ServiceStopTimeout,
            trisup.ServiceAlreadyExists,
        ) as exc:
            result = type(exc).__name__
        elapsed = trio.current_time() - start
        with trio.fail_after(HANG):
            await trio.testing.wait_all_tasks_blocked()
            if self.serving and self.stopping:
                await self.serve_done.wait()
            now = trio.current_time()
            await trio.sleep_until(math.ceil(now / GRID) * GRID)
            await trio.testing.wait_all_tasks_blocked()
        self.current = {n: reg for n, reg in self.current.items() if self.manager.has(n)}
        return await self._observe(result, elapsed)

    async def _do(self, op: Op) -> None:
        m = self.manager
        if op.kind == "add":
            assert op.spec is not None
            tracker = Tracker()
            op.spec.add_to(m, scripted(op.spec, tracker))
            reg = len(self.trackers) + 1
            self.trackers[reg] = tracker
            self.current[op.spec.name] = reg
        elif op.kind == "advance":
            await trio.sleep(op.dt)
        elif op.kind == "serve":
            await self._serve()
        elif op.kind == "cancel":
            self.serve_scope.cancel()
            await self.serve_done.wait()
        elif op.kind == "remove_all":
            await m.remove_services()
        elif op.kind == "restart_all":
            await m.restart_services()
        elif op.kind == "reset":
            m.reset_service(op.name)
        elif op.kind == "start":
            await m.start_service(op.name)
        elif op.kind == "stop":
            await m.stop_service(op.name)
        elif op.kind == "restart":
            await m.restart_service(op.name)
        elif op.kind == "delete":
            await m.delete(op.name)
        else:
            raise AssertionError(f"unknown operation {op.kind}")

    async def _serve(self) -> None:
        assert self._nursery is not None
        self.serve_scope = trio.CancelScope()
        self.serve_done = trio.Event()
        self.serving = True
        self.stopping = False
        startup = trio.Event()
        self._nursery.start_soon(self._serve_task, startup)
        await startup.wait()

    async def _serve_task(self, startup: trio.Event) -> None:
        how = "returned"
        try:
            with self.serve_scope:
                await self.manager.serve(task_status=_Startup(startup))
            if self.serve_scope.cancelled_caught:
                how = "cancelled"
        except trisup.TerminateSupervisor as exc:
            how = type(exc).__name__
        except Exception as exc:  # anything else escaping serve is a defect
            how = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            self.serving = False
            self.serve_end = (how, trio.current_time())
            self.leftover = self.tasks.runners()
            self.serve_done.set()
            startup.set()

    async def _observe(self, result: str | None, elapsed: float) -> Snapshot:
        services: dict[str, View] = {}
        for info in self.manager.get_services_info():
            metric = info.metric
            before = trio.current_time()  # the current status is returned without waiting
            assert await self.manager.wait_status(metric.name, info.status) is info.status
            assert trio.current_time() == before
            services[metric.name] = View(
                status=info.status,
                start_count=metric.start_count,
                error_count=metric.error_count,
                success_count=metric.success_count,
                consec_failures=metric.consec_failures,
                restart_count=info.restart_count,
                current_delay=info.current_delay,
                window_restarts=info.window_restarts,
                stopped=info.stopped,
                failed=info.failed,
                total_uptime=metric.total_uptime,
                starts=tuple(self.trackers[self.current[metric.name]].starts),
            )
        serve_end = None
        if self.serve_end is not None:
            serve_end = (frozenset({self.serve_end[0]}), self.serve_end[1])
        return Snapshot(
            result=result,
            elapsed=elapsed,
            serve_end=serve_end,
            time=trio.current_time(),
            serving=self.serving,
            names=tuple(s.name for s in self.manager.services()),
            services=services,
            instances={reg: (t.live, t.running) for reg, t in self.trackers.items()},
            tasks=self.tasks.runners(),
        )

    def close(self) -> None:
        """Cancel serve (running the shutdown) and end the Trio run."""
        if self._token is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run(self._close, trio_token=self._token)
        self._thread.join(30)
        if self._thread.is_alive():
            raise AssertionError("the Trio run did not end")
        if self._crash is not None:
            raise AssertionError("the Trio run crashed") from self._crash

    async def _close(self) -> None:
        self.clock.autojump_threshold = 0
        if self.serving:
            self.serve_scope.cancel()
            with trio.fail_after(HANG):
                await self.serve_done.wait()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()


# --------------------------------------------------------------------- the machine

durations = st.sampled_from((None, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0))
attempts = st.builds(Attempt, duration=durations, end=st.sampled_from(ENDS))
specs = st.builds(
    Spec,
    name=st.sampled_from(NAMES),
    script=st.lists(attempts, min_size=1, max_size=3).map(tuple),
    cancel_ignore=st.sampled_from((0.0, 0.0, 0.5, 1.0, 2.0, 4.0)),
    ready_after=st.sampled_from((None, None, 0.0, 0.5, 1.0)),
    policy=st.sampled_from(list(RestartPolicy)),
    max_restarts=st.sampled_from((0, 0, 1, 2, 3)),
    restart_delay=st.sampled_from((0.5, 1.0, 2.0)),
    max_restart_delay=st.sampled_from((0.5, 1.0, 2.0, 4.0, 60.0)),
    restart_window=st.sampled_from((2.0, 4.0, 10.0, 300.0)),
    max_in_window=st.sampled_from((0, 1, 2, 3, 5)),
    multiplier=st.sampled_from((1.0, 2.0, 3.0)),
    auto_start=st.sampled_from((True, True, True, False)),
    stop_timeout=st.sampled_from((0.5, 1.0, 3.0, 10.0)).map(lambda t: t + STOP_PHASE),
)
LIFETIME = ("start_count", "error_count", "success_count", "total_uptime")
QUIET = (S.STOPPED, S.FAILED, S.COMPLETED)


class SupervisorMachine(RuleBasedStateMachine):
    """Random services and operations, each step checked against `Model`."""

    examples: ClassVar[int] = 0
    steps: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        SupervisorMachine.examples += 1
        self.harness: Harness | None = None
        self.worlds: list[Model] = []
        self.specs: dict[str, Spec] = {}
        self.lifetime: dict[int, tuple[float, ...]] = {}

    @initialize(stop_timeout=st.sampled_from((3.0, 30.0)).map(lambda t: t + MANAGER_PHASE))
    def setup(self, stop_timeout: float) -> None:
        self.harness = Harness(stop_timeout)
        self.worlds = [Model(stop_timeout)]

    @property
    def serving(self) -> bool:
        return self.worlds[0].serving

    @rule(spec=specs)
    def add(self, spec: Spec) -> None:
        self.step(Op("add", spec=spec))

    @rule(
        verb=st.sampled_from(("start", "stop", "restart", "reset", "delete")),
        name=st.sampled_from(NAMES),
    )
    def control(self, verb: str, name: str) -> None:
        self.step(Op(verb, name=name))

    @rule(verb=st.sampled_from(("remove_all", "restart_all")))
    def everyone(self, verb: str) -> None:
        self.step(Op(verb))

    @rule(dt=st.sampled_from((0.5, 1.0, 2.0, 3.5, 10.0, 60.0)))
    def advance(self, dt: float) -> None:
        self.step(Op("advance", dt=dt))

    @precondition(lambda self: not self.serving)
    @rule()
    def serve(self) -> None:
        self.step(Op("serve"))

    @precondition(lambda self: self.serving)
    @rule()
    def cancel(self) -> None:
        self.step(Op("cancel"))

    def step(self, op: Op) -> None:
        assert self.harness is not None
        SupervisorMachine.steps += 1
        stop_bound = None
        if op.kind in ("start", "stop", "restart", "delete") and op.name in self.specs:
            stop_bound = self.specs[op.name].stop_timeout
        predictions = [outcome for world in self.worlds for outcome in predict(world, op)]
        seen = self.harness.step(op)
        self.verify(op, seen, stop_bound)
        matching = [(w, p) for w, p in predictions if not p.mismatches(seen)]
        if not matching:
            closest = min(predictions, key=lambda wp: len(wp[1].mismatches(seen)))[1]
            raise AssertionError(
                f"{op} diverged from the model:\n" + "\n".join(closest.mismatches(seen))
            )
        self.worlds = [w for w, _ in matching[:8]]
        self.specs = {n: s for n, s in self.specs.items() if n in seen.names}
        if op.kind == "add" and seen.result is None:
            assert op.spec is not None
            self.specs[op.spec.name] = op.spec

    def verify(self, op: Op, seen: Snapshot, stop_bound: float | None) -> None:
        """What must hold after every step, whatever the model says."""
        assert self.harness is not None
        assert seen.result in (
            None,
            "ServiceNotFound",
            "ServiceStopTimeout",
            "ServiceAlreadyExists",
        )
        if seen.result == "ServiceStopTimeout":  # a start waits for an exiting instance
            assert op.kind in ("start", "stop", "restart", "delete")
        if stop_bound is not None:  # a stop returns in time, or raises ServiceStopTimeout then
            assert seen.elapsed <= stop_bound
        if seen.serve_end is not None:  # documented endings only; no task left behind
            assert seen.serve_end[0] <= {"cancelled", "FatalError", "TerminateSupervisor"}
            assert self.harness.leftover == {}
        assert self.harness.tasks.others() == []
        for reg, tracker in self.harness.trackers.items():
            assert tracker.max_live <= 1, f"two instances of registration {reg} at once"
        current = {self.harness.current[n]: n for n in seen.names}
        for reg, (live, running) in seen.instances.items():
            name = current.get(reg)
            if name is None:  # deleted
                assert live == 0
            elif seen.services[name].status in QUIET:
                assert running == 0, f"{name} runs while {seen.services[name].status}"
        for name, view in seen.services.items():
            reg = self.harness.current[name]
            now = tuple(float(getattr(view, f)) for f in LIFETIME)
            before = self.lifetime.get(reg, (0.0,) * len(LIFETIME))
            assert all(b <= n for b, n in zip(before, now, strict=True)), name
            self.lifetime[reg] = now

    def teardown(self) -> None:
        if self.harness is not None:
            self.harness.close()
            assert self.harness.leftover == {}


@pytest.mark.reliability(
    "model check",
    "random services and operations agree with the reference model after every step: "
    "statuses, counters, start times, stop bounds, at most one instance, no task left",
)
def test_supervisor_matches_model(record_property: Callable[[str, object], None]) -> None:
    """trisup behaves as the reference model of SPEC §4-§7 under random steps."""
    SupervisorMachine.examples = SupervisorMachine.steps = 0
    run_state_machine_as_test(
        SupervisorMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    record_property("cases", SupervisorMachine.examples)
    record_property("unit", "examples")
    record_property("detail", f"{SupervisorMachine.steps:,} steps")
