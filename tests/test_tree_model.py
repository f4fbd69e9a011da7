"""The supervisor's invariants under random trees, strategies, verbs and shutdowns.

`tests/test_model.py` compares ONE_FOR_ONE managers with an exact reference model.
This machine covers what that model leaves out, checking invariants instead of
exact counters: the three strategies, ``depends_on``, ``intensity`` / ``period``,
``grace_period``, ``start_timeout``, ``RestartNow``, services with and without
``task_status``, and every control verb issued concurrently from outside, from a
service's own body and from tasks a service started in its own nursery, with the
manager's shutdown at any step and serving again.

How it is built: the manager lives in a Trio run on a `trio.testing.MockClock`, in
a worker thread (as in `tests/test_model.py`). A step switches the clock's autojump
on, acts, waits until every task is blocked, moves the clock on to the next multiple
of 0.5 s and freezes it again. Verbs issued from outside run in the background, so
they overlap each other, later steps and the shutdown; each is wrapped in
``trio.fail_after(bound)`` (its documented bound in virtual time) and may raise only
what SPEC §5 allows. Service bodies are scripted (run, fail, return, DoNotRestart,
RestartNow, call a verb after a while, report readiness late or never, ignore
cancellation for a while with a shielded cleanup) and take commands (a verb to
call, inline or from a task of their nursery) while they run.

What must hold, checked as it happens or after every step (see `Harness.check`):

- never two live instances of one name, and a live instance's name is registered
  (to its own registration) at every moment (checked after every task step);
- nothing of trisup's is alive while the manager does not serve;
- every verb, the startup and the shutdown return within their bounds, and raise
  only the documented errors;
- the status agrees with the phase, the hold and the instance (SPEC §4's table);
- ``start_count`` is the number of times the body was entered; the lifetime
  counters never decrease;
- a NEVER service is never restarted behind the operator's back (a bystander of a
  group restart stays down); a held service never runs past its grace period;
- ``serve`` reports started only once every auto-start service has entered ``serve``
  (or waits on a dependency), and no attempt stays unready past ``start_timeout``.

Each kind of violation raises its own `Violation` subclass, so hypothesis reports
(and shrinks) distinct defects separately.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from trio._core import _run as trio_run  # pyright: ignore[reportPrivateUsage]

import trisup
from trisup import RestartPolicy, ServiceStatus, Strategy

S = ServiceStatus
GRID = 0.5
STOP_PHASE = 1 / 64  # service stop timeouts sit off the grid: no tie with a body's event
MANAGER_PHASE = 1 / 128  # the manager's stop_timeout neither
MARGIN = 1 / 256  # what a verb may take past the wait it is bounded by (virtual seconds)
NAMES = ("a", "b", "c", "d")
VERBS = ("start", "stop", "restart", "reset", "delete", "remove_all", "restart_all")
SELF_REQUESTS = ("stop", "restart", "delete")  # from inside, on itself: request, return at once
EVERYONE = ("remove_all", "restart_all")
OFFSETS = (0.0, 0.0, 2.0**-10, 2.0**-9, 0.25, 1.0)  # when a verb of a burst is issued
STEPS = 30
EXAMPLES = settings().max_examples  # the profile's: 300 in CI, 5,000 with HYPOTHESIS_PROFILE=fuzz


Action = Callable[[], Awaitable[None] | None]

# --------------------------------------------------------------------- violations


class Violation(AssertionError):
    """An invariant of the supervisor does not hold."""


class Overlap(Violation):
    """Two instances of one name were alive at once."""


class Unregistered(Violation):
    """An instance lived while its name was not registered to its own registration."""


class Leftover(Violation):
    """A body or a trisup task was alive while the manager did not serve."""


class SlowVerb(Violation):
    """A verb ran past its documented bound."""


class SlowStartup(Violation):
    """serve's startup ran past its bound."""


class SlowShutdown(Violation):
    """serve did not return within its shutdown bound (or the run never ended)."""


class NoCheckpoint(Violation):
    """A verb returned without a checkpoint."""


class WrongError(Violation):
    """A verb raised an error SPEC does not allow there."""


class BadEnding(Violation):
    """serve ended with an error SPEC does not allow there."""


class WrongStatus(Violation):
    """The status disagrees with the phase, the hold or the instance."""


class WrongCount(Violation):
    """start_count is not the number of entries, or a lifetime counter decreased."""


class HeldRuns(Violation):
    """A service stopped by hand runs (past its grace period)."""


class NeverRestarted(Violation):
    """A NEVER service was started again although nobody asked for it."""


class EarlyStartup(Violation):
    """serve reported started before an auto-start service had entered serve."""


class NotReadyInTime(Violation):
    """An attempt stayed unready (and not cancelled) past its start_timeout."""


PRIORITY: tuple[type[Violation], ...] = (
    Overlap,
    Unregistered,
    Leftover,
    SlowShutdown,
    SlowStartup,
    SlowVerb,
    HeldRuns,
    NeverRestarted,
    EarlyStartup,
    NotReadyInTime,
    NoCheckpoint,
    WrongError,
    BadEnding,
    WrongStatus,
    WrongCount,
)


# ----------------------------------------------------------------------- scenarios


@dataclass(frozen=True, repr=False)
class Call:
    """A verb a service calls: on *target*, inline or from a task of its own nursery."""

    verb: str
    target: str
    via_task: bool
    spec: Spec | None = None  # what "add" adds

    def __repr__(self) -> str:
        what = f"add({self.spec!r})" if self.spec is not None else f"{self.verb}({self.target})"
        return f"{what} via a task" if self.via_task else what

    def _repr_pretty_(self, p: object, cycle: bool) -> None:  # hypothesis's printer
        p.text(repr(self))  # type: ignore[attr-defined]  # hypothesis's RepresentationPrinter


@dataclass(frozen=True, repr=False)
class Attempt:
    """One attempt of a scripted body: after *duration* it ends (or calls) as *end* says."""

    duration: float | None  # None: runs until cancelled
    end: str  # return | fail | no_restart | restart_now | call (then runs on)
    call: Call | None = None

    def __repr__(self) -> str:
        if self.duration is None:
            return "forever"
        end = f"call {self.call!r}" if self.call is not None else self.end
        return f"{end} at {self.duration:g}"


@dataclass(frozen=True, repr=False)
class Spec:
    """A service to add: its body's script and its configuration."""

    name: str
    script: tuple[Attempt, ...]
    ready: float | str  # "plain" (no task_status), "never", or seconds until started()
    cleanup: float  # how long it ignores a cancellation (a shielded cleanup)
    policy: RestartPolicy
    restart_delay: float
    max_restarts: int
    max_in_window: int
    auto_start: bool
    stop_timeout: float
    grace: float
    start_timeout: float | None
    deps: tuple[str, ...]

    def __repr__(self) -> str:
        shown = [f"{self.name}: {', '.join(map(repr, self.script))}"]
        for key, value in (
            ("ready", self.ready),
            ("cleanup", self.cleanup),
            ("policy", self.policy.name),
            ("restart_delay", self.restart_delay),
            ("max_restarts", self.max_restarts),
            ("max_in_window", self.max_in_window),
            ("auto_start", self.auto_start),
            ("stop_timeout", self.stop_timeout),
            ("grace", self.grace),
            ("start_timeout", self.start_timeout),
            ("deps", ",".join(self.deps)),
        ):
            if value != _DEFAULTS[key]:
                shown.append(f"{key}={value}")
        return f"<{'; '.join(shown)}>"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:  # hypothesis's printer
        p.text(repr(self))  # type: ignore[attr-defined]  # hypothesis's RepresentationPrinter

    @property
    def may_outlive_stop(self) -> bool:
        """Whether a stop of it may time out: grace plus cleanup reach its stop_timeout."""
        return self.grace + self.cleanup >= self.stop_timeout


_DEFAULTS: dict[str, object] = {  # what a Spec's repr leaves out (the simplest values)
    "ready": "plain",
    "cleanup": 0.0,
    "policy": "ALWAYS",
    "restart_delay": 0.5,
    "max_restarts": 0,
    "max_in_window": 0,
    "auto_start": True,
    "stop_timeout": 1.0 + STOP_PHASE,
    "grace": 0.0,
    "start_timeout": None,
    "deps": "",
}


@dataclass(eq=False)
class Instance:
    """One live instance of a body, as seen from inside it."""

    entered_at: float
    ready: bool
    cancelled_at: float | None = None
    stop_seen_at: float | None = None  # when current_service().stop_requested was set


@dataclass(eq=False)
class Reg:
    """One registration of a name (a delete and a re-add make a new one)."""

    spec: Spec
    deps: tuple[str, ...]
    send: trio.MemorySendChannel[Call]
    recv: trio.MemoryReceiveChannel[Call]
    service: trisup.Service | None = None
    entries: int = 0
    instance: Instance | None = None
    grants: int = 1  # starts somebody asked for (add, serve, start, restart, RestartNow)
    delete_issued: bool = False
    seen: tuple[int, int, int] = (0, 0, 0)  # start, error, success counts last seen
    entries_at_serve: int | None = None  # None: added after this serve began
    flagged: bool = False


# --------------------------------------------------------------------- the harness


class Instrument(trio.abc.Instrument):
    """Tracks trisup's tasks (and every task below them); checks registration per step."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.alive: dict[trio.lowlevel.Task, str] = {}

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith("trisup:"):
            self.alive[task] = task.name
            return
        nursery = task.parent_nursery
        parent = nursery.parent_task if nursery is not None else None
        if parent is not None and parent in self.alive:
            self.alive[task] = self.alive[parent]

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.pop(task, None)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.harness.check_registered()

    def runners(self) -> dict[str, int]:
        """trisup's live tasks (runners, timer, what services started), by root name."""
        return dict(Counter(self.alive.values()))


class _Startup:
    """The ``task_status`` given to ``serve``: checks what startup promised, then tells."""

    def __init__(self, harness: Harness, event: trio.Event) -> None:
        self._harness = harness
        self._event = event

    def started(self, value: None = None) -> None:
        self._harness.check_startup()
        self._event.set()


class Harness:
    """A manager in a Trio run on a frozen `MockClock`, in a thread, one step at a time."""

    def __init__(
        self,
        strategy: Strategy,
        intensity: int | None,
        period: float,
        stop_timeout: float,
        stop_order: str = "position",
    ) -> None:
        self.clock = trio.testing.MockClock()  # rate 0, no autojump: frozen between steps
        self.instrument = Instrument(self)
        self.manager = trisup.Manager(
            "m",
            stop_timeout=stop_timeout,
            strategy=strategy,
            intensity=intensity,
            period=period,
            stop_order=stop_order,
        )
        self.manager.before_stop(self._note_stopping)
        self.intensity = intensity
        self.stop_timeout = stop_timeout
        self.violations: list[tuple[type[Violation], str]] = []
        self.current: dict[str, Reg] = {}
        self.by_service: dict[int, Reg] = {}
        self.regs: list[Reg] = []
        self.live: Counter[str] = Counter()
        self.live_regs: Counter[Reg] = Counter()
        self.serving = False
        self.stopping = False
        self.stop_began = 0.0
        self.inflight = 0
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

    # ------------------------------------------------------------ the Trio thread

    def _thread_main(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                ready.set()
                await trio.sleep_forever()

        try:
            trio.run(main, clock=self.clock, instruments=[self.instrument])
        except BaseException as exc:  # reported by close()
            self._crash = exc
            ready.set()

    def run(self, action: Action) -> list[tuple[type[Violation], str]]:
        """Do *action* (sync or async) in the Trio thread, settle; return new violations."""
        assert self._token is not None
        return trio.from_thread.run(self._step, action, trio_token=self._token)

    async def _step(self, action: Action) -> list[tuple[type[Violation], str]]:
        # Trio shuffles each batch of runnable tasks with its own Random. Reseeded at every
        # step, a step's interleaving depends on the state only, not on the steps before, so
        # hypothesis can drop a step that does not matter without losing the failure.
        trio_run._r.seed(0)  # pyright: ignore[reportPrivateUsage]
        self.clock.autojump_threshold = 0
        try:
            result = action()
            if result is not None:
                await result
            await self._settle()
            self.check()
        finally:
            self.clock.autojump_threshold = math.inf
        found, self.violations = self.violations, []
        return found

    def violate(self, kind: type[Violation], message: str) -> None:
        """Record a violation (raising inside trisup's tasks would change what they do)."""
        self.violations.append((kind, f"t={trio.current_time():g}: {message}"))

    def _note_stopping(self) -> None:
        self.stopping = True
        self.stop_began = trio.current_time()

    def _shutdown_bound(self) -> float:
        """Serve returns within the manager's stop_timeout plus the longest cleanup."""
        cleanup = max((r.spec.cleanup for r in self.regs), default=0.0)
        return self.stop_timeout + cleanup + MARGIN

    async def _settle(self) -> None:
        """Let everything due happen, finish a shutdown in progress, then go to the grid."""
        for _ in range(3):
            await trio.testing.wait_all_tasks_blocked()
            if self.serving and self.stopping:
                await self._wait_serve_done(self.stop_began + self._shutdown_bound())
            now = trio.current_time()
            await trio.sleep_until(math.ceil(now / GRID) * GRID)
            await trio.testing.wait_all_tasks_blocked()
            if not (self.serving and self.stopping):
                return

    async def _wait_serve_done(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self.serve_done.wait()
            return
        self.violate(SlowShutdown, "serve did not return within its shutdown bound")

    # ------------------------------------------------------------- registration

    def registered(self, name: str) -> Reg | None:
        """The registration *name* has now, if any."""
        reg = self.current.get(name)
        return reg if reg is not None and self.manager.has(name) else None

    def add(self, spec: Spec, caller: Reg | None = None) -> None:
        """Add a service for *spec* (sync, as `Manager.add` is)."""
        m = self.manager
        where = "outside" if caller is None else f"inside {caller.spec.name}"
        deps = tuple(d for d in spec.deps if m.has(d))
        existed = m.has(spec.name)
        send, recv = trio.open_memory_channel[Call](math.inf)
        reg = Reg(spec=spec, deps=deps, send=send, recv=recv)
        service = self._service(reg)
        try:
            m.add(
                service,
                depends_on=deps,
                restart_policy=spec.policy,
                restart_delay=spec.restart_delay,
                max_restarts=spec.max_restarts,
                max_restarts_in_window=spec.max_in_window,
                auto_start=spec.auto_start,
                stop_timeout=spec.stop_timeout,
                grace_period=spec.grace,
                start_timeout=spec.start_timeout,
            )
        except trisup.ServiceAlreadyExists:
            if not existed:
                self.violate(
                    WrongError, f"add({spec.name!r}) from {where}: name taken but not has()"
                )
            return
        except Exception as exc:
            self.violate(WrongError, f"add({spec.name!r}) from {where} raised {exc!r}")
            return
        if existed:
            self.violate(WrongError, f"add({spec.name!r}) from {where} replaced a registration")
        reg.service = service
        self.current[spec.name] = reg
        self.by_service[id(service)] = reg
        self.regs.append(reg)

    def _service(self, reg: Reg) -> trisup.Service:
        name = reg.spec.name
        if reg.spec.ready == "plain":

            async def plain() -> None:
                await self.body(reg, None)

            return trisup.new_service(name, plain)

        async def with_readiness(
            *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            await self.body(reg, task_status)

        return trisup.new_service(name, with_readiness)

    def check_registered(self) -> None:
        """After every task step: a live instance's name is registered, to its registration."""
        for reg in self.live_regs:
            if reg.flagged:
                continue
            name = reg.spec.name
            if not self.manager.has(name) or self.current.get(name) is not reg:
                reg.flagged = True
                self.violate(Unregistered, f"an instance of {name} lives, {name} not registered")

    # ------------------------------------------------------------------- bodies

    async def body(self, reg: Reg, task_status: trio.TaskStatus[None] | None) -> None:
        """A scripted service body; counts entries and live instances."""
        spec = reg.spec
        name = spec.name
        now = trio.current_time()
        if self.live[name]:
            self.violate(Overlap, f"{name} entered while another instance of {name} lives")
        if spec.policy is RestartPolicy.NEVER and not reg.deps and not reg.grants:
            self.violate(NeverRestarted, f"{name} (NEVER) started again, nobody asked")
        # one start consumes one grant: a request made in the same instant as an
        # entry it does not cause keeps its grant for the start it does cause
        reg.grants = max(0, reg.grants - 1)
        step = spec.script[reg.entries % len(spec.script)]
        reg.entries += 1
        self.live[name] += 1
        self.live_regs[reg] += 1
        inst = reg.instance = Instance(entered_at=now, ready=spec.ready == "plain")
        end = "return"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, inst)
                try:
                    end = await self._script(reg, inst, step, task_status, nursery)
                except trio.Cancelled:
                    inst.cancelled_at = trio.current_time()
                    if spec.cleanup:
                        with trio.move_on_after(spec.cleanup, shield=True):
                            await trio.sleep_forever()
                    raise
                nursery.cancel_scope.cancel()
        finally:
            self.live[name] -= 1
            self.live_regs[reg] -= 1
            if not self.live_regs[reg]:
                del self.live_regs[reg]
            if reg.instance is inst:
                reg.instance = None
        if end == "fail":
            raise ValueError(f"{name} failed")
        if end == "no_restart":
            raise trisup.no_restart()
        if end == "restart_now":
            reg.grants += 1
            raise trisup.RestartNow()

    @staticmethod
    async def _watch_stop(inst: Instance) -> None:
        await trisup.current_service().stop_requested.wait()
        inst.stop_seen_at = trio.current_time()

    async def _script(
        self,
        reg: Reg,
        inst: Instance,
        step: Attempt,
        task_status: trio.TaskStatus[None] | None,
        nursery: trio.Nursery,
    ) -> str:
        spec = reg.spec
        end_at = math.inf if step.duration is None else inst.entered_at + step.duration
        ready_at = inst.entered_at + spec.ready if isinstance(spec.ready, float) else math.inf
        while True:
            now = trio.current_time()
            if not inst.ready and now >= ready_at:
                assert task_status is not None
                inst.ready = True
                task_status.started()
                continue
            if now >= end_at:
                if step.call is None:
                    return step.end
                end_at = math.inf  # calls once, then runs on
                await self._command(reg, step.call, nursery)
                continue
            command: Call | None = None
            with trio.move_on_at(end_at if inst.ready else min(end_at, ready_at)):
                command = await reg.recv.receive()
            if command is not None:
                await self._command(reg, command, nursery)

    async def _command(self, reg: Reg, call: Call, nursery: trio.Nursery) -> None:
        if call.via_task:
            nursery.start_soon(self.verb, call.verb, call.target, reg, call.spec)
        else:
            await self.verb(call.verb, call.target, reg, call.spec)

    # -------------------------------------------------------------------- verbs

    async def verb(
        self, verb: str, target: str, caller: Reg | None = None, spec: Spec | None = None
    ) -> None:
        """Call *verb* within its bound; record what it must not do."""
        m = self.manager
        where = "outside" if caller is None else f"inside {caller.spec.name}"
        what = f"{verb}({'' if verb in EVERYONE else repr(target)}) from {where}"
        if verb == "add":
            assert spec is not None
            self.add(spec, caller)
            return
        if verb == "reset":
            existed = m.has(target)
            try:
                m.reset_service(target)
            except trisup.ServiceNotFound:
                if existed:
                    self.violate(WrongError, f"{what} raised ServiceNotFound, name registered")
            return
        reg = None if verb in EVERYONE else self.registered(target)
        if verb in EVERYONE:
            regs = [r for r in (self.registered(n) for n in NAMES) if r is not None]
            bound = max((r.spec.stop_timeout for r in regs), default=0.0) + MARGIN
            for r in regs:
                if verb == "remove_all":
                    r.delete_issued = True
                else:
                    r.grants += 1
        elif reg is None:
            bound = MARGIN
        else:
            if verb == "delete":
                reg.delete_issued = True
            elif verb in ("start", "restart"):
                reg.grants += 1
            own = caller is reg and verb in SELF_REQUESTS
            bound = MARGIN if own else reg.spec.stop_timeout + MARGIN
        self.inflight += 1
        try:
            with trio.fail_after(bound):
                if caller is None:
                    with trio.testing.assert_checkpoints():
                        await self._call(verb, target)
                else:
                    await self._call(verb, target)
        except trisup.ServiceNotFound:
            if verb in EVERYONE or (reg is not None and not reg.delete_issued):
                self.violate(WrongError, f"{what} raised ServiceNotFound, no delete pending")
        except trisup.ServiceStopTimeout:
            if verb in EVERYONE or reg is None or not reg.spec.may_outlive_stop:
                self.violate(
                    WrongError, f"{what} raised ServiceStopTimeout, the body exits in time"
                )
        except trio.TooSlowError:
            self.violate(SlowVerb, f"{what} did not return within {bound:g}s")
        except Violation:
            raise
        except AssertionError:  # from assert_checkpoints
            self.violate(NoCheckpoint, f"{what} returned without a checkpoint")
        except Exception as exc:
            self.violate(WrongError, f"{what} raised {exc!r}")
        finally:
            self.inflight -= 1

    async def _call(self, verb: str, target: str) -> None:
        m = self.manager
        if verb == "start":
            await m.start_service(target)
        elif verb == "stop":
            await m.stop_service(target)
        elif verb == "restart":
            await m.restart_service(target)
        elif verb == "delete":
            await m.delete(target)
        elif verb == "remove_all":
            await m.remove_services()
        elif verb == "restart_all":
            await m.restart_services()
        else:
            raise AssertionError(f"unknown verb {verb}")

    async def burst(self, ops: list[tuple[float, str, str]]) -> None:
        """Issue verbs from outside at their offsets; they run on in the background."""
        assert self._nursery is not None
        for offset, verb, target in ops:
            self._nursery.start_soon(self._later, offset, verb, target)
        await trio.sleep(max(offset for offset, _, _ in ops))

    async def _later(self, offset: float, verb: str, target: str) -> None:
        await trio.sleep(offset)
        await self.verb(verb, target)

    async def advance(self, dt: float) -> None:
        """Let *dt* seconds pass."""
        await trio.sleep(dt)

    def command(self, name: str, call: Call) -> None:
        """Have the running instance of *name* call a verb (if one runs)."""
        reg = self.registered(name)
        inst = None if reg is None else reg.instance
        if reg is not None and inst is not None and inst.cancelled_at is None:
            reg.send.send_nowait(call)

    # -------------------------------------------------------------------- serve

    def _startup_bound(self) -> float:
        """Startup waits for each task_status service until ready or its attempt ended."""
        longest_stop = max((r.spec.stop_timeout for r in self.regs), default=0.0)
        total = MARGIN
        for info in self.manager.get_services_info():
            reg = self.current[info.metric.name]
            spec = reg.spec
            if info.stopped or spec.ready == "plain":
                continue
            step = spec.script[reg.entries % len(spec.script)]
            ready = spec.ready if isinstance(spec.ready, float) else math.inf
            dur = math.inf if step.duration is None else step.duration
            exit_after_stop = spec.grace + spec.cleanup
            if step.call is not None:
                # the call may come first and delay readiness, or stop the service
                if dur < ready:
                    ready = max(ready, dur + longest_stop + MARGIN + exit_after_stop)
                dur = math.inf
            elif ready > dur:
                ready = math.inf
            timeout = math.inf if spec.start_timeout is None else spec.start_timeout
            total += min(ready, dur, timeout + exit_after_stop)
        return total

    async def serve(self) -> None:
        """Start serving; wait for startup within its bound."""
        assert self._nursery is not None
        for reg in self.current.values():
            with contextlib.suppress(trio.WouldBlock):
                while True:  # commands for instances of an earlier serve
                    reg.recv.receive_nowait()
            reg.grants += 1
            reg.entries_at_serve = reg.entries
        bound = self._startup_bound()
        self.serve_scope = trio.CancelScope()
        self.serve_done = trio.Event()
        self.serving = True
        self.stopping = False
        startup = trio.Event()
        self._nursery.start_soon(self._serve_task, startup)
        with trio.move_on_after(bound):
            await startup.wait()
            return
        self.violate(SlowStartup, f"serve's startup did not end within {bound:g}s")

    async def _serve_task(self, startup: trio.Event) -> None:
        missing = [
            f"{r.spec.name}->{d}"
            for r in self.current.values()
            if self.manager.has(r.spec.name)
            for d in r.deps
            if not self.manager.has(d)
        ]
        try:
            with self.serve_scope:
                await self.manager.serve(task_status=_Startup(self, startup))
        except trisup.RestartIntensityExceeded:
            if self.intensity is None:
                self.violate(BadEnding, "serve raised RestartIntensityExceeded, no intensity")
        except ValueError as exc:
            if not missing:
                self.violate(BadEnding, f"serve raised {exc!r}")
        except Exception as exc:
            self.violate(BadEnding, f"serve raised {exc!r}")
        finally:
            self.serving = False
            if +self.live:
                self.violate(Leftover, f"serve returned, instances live: {dict(+self.live)}")
            if self.instrument.runners():
                self.violate(Leftover, f"serve returned, tasks live: {self.instrument.runners()}")
            for reg in self.regs:
                reg.entries_at_serve = None
            self.serve_done.set()
            startup.set()

    def check_startup(self) -> None:
        """When serve reports started: every auto-start service has entered serve."""
        m = self.manager
        for name, reg in self.current.items():
            if (
                reg.entries_at_serve is None
                or reg.deps
                or reg.delete_issued
                or not m.has(name)
                or m.get_service_info(name).stopped
            ):
                continue
            if reg.entries == reg.entries_at_serve:
                self.violate(EarlyStartup, f"serve reported started before {name} entered serve")

    async def cancel(self) -> None:
        """Cancel serve; it must return within the shutdown bound."""
        self.serve_scope.cancel()
        await self._wait_serve_done(trio.current_time() + self._shutdown_bound())

    # -------------------------------------------------------------------- check

    def check(self) -> None:
        """The invariants that must hold whenever everything has settled."""
        m = self.manager
        now = trio.current_time()
        if not self.serving:
            if +self.live:
                self.violate(Leftover, f"not serving, instances live: {dict(+self.live)}")
            if self.instrument.runners():
                self.violate(Leftover, f"not serving, tasks live: {self.instrument.runners()}")
        for service, info in zip(m.services(), m.get_services_info(), strict=True):
            reg = self.by_service[id(service)]
            name = info.metric.name
            inst = reg.instance
            metric = info.metric
            counts = (metric.start_count, metric.error_count, metric.success_count)
            if metric.start_count != reg.entries:
                self.violate(
                    WrongCount, f"{name}: start_count {metric.start_count}, entered {reg.entries}"
                )
            if any(now_ < before for now_, before in zip(counts, reg.seen, strict=True)):
                self.violate(WrongCount, f"{name}: lifetime counters {reg.seen} -> {counts}")
            reg.seen = counts
            if info.stopped and info.status is not S.STOPPED:
                self.violate(WrongStatus, f"{name}: stopped but {info.status}")
            if info.status in (S.FAILED, S.COMPLETED) and inst is not None:
                self.violate(WrongStatus, f"{name}: {info.status} while an instance lives")
            if (
                info.stopped
                and inst is not None
                and inst.cancelled_at is None
                and (inst.stop_seen_at is None or now - inst.stop_seen_at > reg.spec.grace)
            ):
                self.violate(HeldRuns, f"{name}: stopped by hand, an instance runs on")
            timeout = reg.spec.start_timeout
            if (
                timeout is not None
                and inst is not None
                and not inst.ready
                and inst.cancelled_at is None
                and now - inst.entered_at > timeout
            ):
                self.violate(NotReadyInTime, f"{name}: unready for {now - inst.entered_at:g}s")
            self._check_phase(name, info, inst)

    def _check_phase(self, name: str, info: trisup.ServiceInfo, inst: Instance | None) -> None:
        phase = info.phase
        P = trisup.Phase
        allowed = statuses_of(phase, held=info.stopped, consec_failures=info.metric.consec_failures)
        problem = ""
        if info.status not in allowed:
            problem = f"status {info.status} (allowed {sorted(allowed)})"
        elif phase is P.REMOVED:
            problem = "registered"
        elif inst is not None and phase not in (P.STARTING, P.RUNNING, P.STOPPING):
            problem = "an instance lives"
        elif inst is None and phase in (P.STARTING, P.RUNNING):
            problem = "no instance lives"
        elif inst is not None and phase is P.RUNNING and not inst.ready:
            problem = "the instance is not ready"
        elif inst is not None and phase is P.RUNNING and inst.stop_seen_at is not None:
            problem = "a stop was requested"
        elif inst is not None and phase is P.STARTING and inst.ready:
            problem = "the instance is ready"
        elif info.stopped and phase not in (P.IDLE, P.STOPPING, P.COMPLETED, P.FAILED):
            problem = "stopped by hand"
        if problem:
            self.violate(WrongStatus, f"{name}: phase {phase}, {problem}")

    # -------------------------------------------------------------------- close

    def close(self) -> list[tuple[type[Violation], str]]:
        """Cancel serve, let every verb return, end the run; return new violations."""
        if self._token is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError, trio.TooSlowError):
                trio.from_thread.run(self._close, trio_token=self._token)
        self._thread.join(2)
        if self._thread.is_alive():  # something of trisup's never exits: freeze the run's clock
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._freeze, trio_token=self._token)
            self.violations.append((SlowShutdown, "the Trio run did not end"))
        elif self._crash is not None:
            raise AssertionError("the Trio run crashed") from self._crash
        return self.violations

    def _freeze(self) -> None:
        self.clock.autojump_threshold = math.inf

    async def _close(self) -> None:
        self.clock.autojump_threshold = 0
        if self.serving:
            self.serve_scope.cancel()
            await self._wait_serve_done(trio.current_time() + self._shutdown_bound())
        with trio.move_on_after(1000):
            while self.inflight:
                await trio.sleep(GRID)
        await trio.testing.wait_all_tasks_blocked()
        self.check()
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()


def statuses_of(phase: object, *, held: bool, consec_failures: int) -> set[ServiceStatus]:
    """The statuses SPEC §4 allows for *phase*, whichever readiness the attempt has."""
    P = trisup.Phase
    if held:
        return {S.STOPPED}
    if phase is P.FAILED:
        return {S.FAILED}
    if phase is P.COMPLETED:
        return {S.COMPLETED}
    running = S.CRASHING if consec_failures else S.RUNNING
    if phase is P.STARTING:
        return {S.STARTING}
    if phase is P.STOPPING:
        return {S.STARTING, running}
    if phase in (P.RUNNING, P.BACKOFF, P.GROUP_WAIT):
        return {running}
    return {S.ERROR if consec_failures else S.IDLE}


# --------------------------------------------------------------------- strategies

ENDS = ("return", "fail", "fail", "no_restart", "restart_now")
READY: tuple[float | str, ...] = ("plain", "plain", 0.0, 0.5, 1.0, "never")
durations = st.sampled_from((None, 0.0, 0.5, 1.0, 2.0, 5.0))
calls = st.builds(
    Call,
    verb=st.sampled_from(VERBS),
    target=st.sampled_from(NAMES),
    via_task=st.booleans(),
)
attempts = st.one_of(
    st.builds(Attempt, duration=durations, end=st.sampled_from(ENDS)),
    st.builds(
        Attempt,
        duration=st.sampled_from((0.5, 1.0, 2.0)),  # > 0: a self-restart loop must not spin
        end=st.just("call"),
        call=calls,
    ),
)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """A service: a name, a script and a configuration; dependencies on earlier names."""
    name = draw(st.sampled_from(NAMES))
    ready = draw(st.sampled_from(READY))
    start_timeout = draw(st.sampled_from((None, 1.5, 3.0)))
    if ready == "never" and start_timeout is None:
        start_timeout = 3.0
    earlier = NAMES[: NAMES.index(name)]
    return Spec(
        name=name,
        script=tuple(draw(st.lists(attempts, min_size=1, max_size=3))),
        ready=ready,
        cleanup=draw(st.sampled_from((0.0, 0.0, 0.5, 1.0, 4.0))),
        policy=draw(st.sampled_from(list(RestartPolicy))),
        restart_delay=draw(st.sampled_from((0.5, 1.0, 2.0))),
        max_restarts=draw(st.sampled_from((0, 0, 2))),
        max_in_window=draw(st.sampled_from((0, 3, 5))),
        auto_start=draw(st.sampled_from((True, True, True, False))),
        stop_timeout=draw(st.sampled_from((1.0, 3.0))) + STOP_PHASE,
        grace=draw(st.sampled_from((0.0, 0.0, 0.5, 2.0))),
        start_timeout=start_timeout,
        deps=tuple(draw(st.sets(st.sampled_from(earlier), max_size=2))) if earlier else (),
    )


ops = st.lists(
    st.tuples(st.sampled_from(OFFSETS), st.sampled_from(VERBS), st.sampled_from(NAMES)),
    min_size=1,
    max_size=3,
)


# ---------------------------------------------------------------------- machine


class TreeMachine(RuleBasedStateMachine):
    """Random trees and concurrent verbs; the invariants checked after every step."""

    examples: ClassVar[int] = 0
    steps: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        TreeMachine.examples += 1
        self.harness: Harness | None = None

    @initialize(
        strategy=st.sampled_from(list(Strategy)),
        intensity=st.sampled_from((None, None, 1, 3)),
        period=st.sampled_from((1.0, 10.0)),
        stop_timeout=st.sampled_from((3.0, 10.0)).map(lambda t: t + MANAGER_PHASE),
        stop_order=st.sampled_from(("position", "dependencies")),
    )
    def setup(
        self,
        strategy: Strategy,
        intensity: int | None,
        period: float,
        stop_timeout: float,
        stop_order: str,
    ) -> None:
        self.harness = Harness(strategy, intensity, period, stop_timeout, stop_order)

    @property
    def h(self) -> Harness:
        assert self.harness is not None
        return self.harness

    def _do(self, action: Action) -> None:
        TreeMachine.steps += 1
        raise_first(self.h.run(action))

    @rule(spec=specs())
    def add(self, spec: Spec) -> None:
        self._do(lambda: self.h.add(spec))

    @rule(ops=ops)
    def burst(self, ops: list[tuple[float, str, str]]) -> None:
        self._do(lambda: self.h.burst(ops))

    @rule(name=st.sampled_from(NAMES), call=calls)
    def inside(self, name: str, call: Call) -> None:
        self._do(lambda: self.h.command(name, call))

    @rule(name=st.sampled_from(NAMES), spec=specs(), via_task=st.booleans())
    def inside_add(self, name: str, spec: Spec, via_task: bool) -> None:
        call = Call("add", spec.name, via_task, spec)
        self._do(lambda: self.h.command(name, call))

    @rule(dt=st.sampled_from((0.5, 1.0, 2.0, 5.0, 20.0)))
    def advance(self, dt: float) -> None:
        self._do(lambda: self.h.advance(dt))

    @precondition(lambda self: not self.h.serving)
    @rule()
    def serve(self) -> None:
        self._do(self.h.serve)

    @precondition(lambda self: self.h.serving)
    @rule()
    def cancel(self) -> None:
        self._do(self.h.cancel)

    def teardown(self) -> None:
        if self.harness is not None:
            raise_first(self.harness.close())


def raise_first(found: list[tuple[type[Violation], str]]) -> None:
    """Raise the most serious violation found (its kind tells hypothesis which bug it is)."""
    if not found:
        return
    kinds = {kind for kind, _ in found}
    kind = next(k for k in PRIORITY if k in kinds)
    raise kind("\n".join(f"{k.__name__}: {message}" for k, message in found))


@pytest.mark.reliability(
    "model check",
    "random supervision trees (three strategies, dependencies, intensity, grace, start "
    "timeouts) under concurrent verbs from outside and inside services and shutdowns: at "
    "most one instance per name, nothing left after serve, every verb within its bound, "
    "status consistent with the phase, counters as entered",
)
def test_tree_invariants(record_property: Callable[[str, object], None]) -> None:
    """trisup keeps its invariants under random trees, concurrent verbs and shutdowns."""
    TreeMachine.examples = TreeMachine.steps = 0
    run_state_machine_as_test(
        TreeMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    record_property("cases", TreeMachine.examples)
    record_property("unit", "examples")
    record_property("detail", f"{TreeMachine.steps:,} steps")
