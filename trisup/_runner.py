"""One supervised service: its lifecycle, its task, the outcome rules and the restart loop.

A runner is the only writer of its service's state. The phase changes in one
place, `Runner._move`, checked against the lifecycle's table (`_lifecycle.py`).
The manager and the tree do not assign runner fields: they *request* (start,
stop, restart, delete, a group or dependency restart) through the ``request_*``
methods, which record the request and cancel or wake the task; the runner's task
decides, in `Runner._go_on`, what its instance does next. Requests are decided
in the order they were made, so the latest wins, and a delete wins over all.

One long-lived task runs every attempt, each in the task's own frame, inside a
shielded cancel scope that only the manager cancels (one scope per *life*: from a
start to the stop that ends it). A task that goes on after a stop (a restart)
starts its next life in the same task, so two instances of one service never
overlap. The backoff wait parks the task on the manager's timer (`_timer.py`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping

import trio
from trio_util import AsyncValue

from ._backoff import RestartWindow, give_up_reason, jittered, next_delay
from ._config import ServiceConfig
from ._context import ServeContext, clear_current, set_current, trio_now
from ._errors import ServiceStartTimeout, error_message, find_terminate
from ._events import (
    EventHub,
    ServiceBackingOff,
    ServiceExited,
    ServiceFailed,
    ServicePhaseChanged,
    ServiceReady,
    ServiceRemoved,
    ServiceRestarting,
    ServiceStarting,
    ServiceStatusChanged,
    ServiceStopDone,
)
from ._lifecycle import (
    BACKOFF,
    COMPLETED,
    FAILED,
    GROUP_WAIT,
    IDLE,
    LIVE,
    MOVES,
    REMOVED,
    RUNNING,
    STARTING,
    STOPPING,
    WAITING_DEPS,
    Phase,
    status_of,
)
from ._outcome import (
    CLEAN,
    ESCAPE,
    FAILURE,
    FATAL,
    NO_RESTART,
    RESTART_NOW,
    STOPPED,
    AttemptOutcome,
    classify,
    escapes,
)
from ._service import FunctionService, Service, accepts_task_status
from ._status import RestartPolicy, ServiceStatus

__all__ = ["Runner"]

_DEBUG, _INFO, _WARNING, _ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
_SHORT_DELAY = 0.001  # seconds: a shorter wait is a checkpoint, not a park on the timer
_QUICK_RESTART_NOW = 1.0  # seconds: a RestartNow sooner than this waits restart_delay first
# how the task's next life begins (_EXIT: there is none)
_EXIT, _AGAIN, _GROUP, _BACKOFF, _FRESH = 0, 1, 2, 3, 4  # _FRESH: _AGAIN, counters cleared
# what an attempt's outcome asks for, and what the restart path decided
_END, _RESTART, _NOW, _NEXT, _GROUPED = 0, 1, 2, 3, 4


_UNDERWAY = frozenset({STARTING, RUNNING, WAITING_DEPS})


class _Readiness:
    """The ``task_status`` a service receives; ``started()`` marks it ready."""

    __slots__ = ("_attempt", "_runner", "_used")

    def __init__(self, runner: Runner, attempt: int) -> None:
        self._runner = runner
        self._attempt = attempt
        self._used = False

    def started(self, value: object = None) -> None:
        """Report that the service is ready."""
        if self._used:
            raise RuntimeError("called 'started' twice on the same task status")
        self._used = True
        self._runner.mark_ready(self._attempt)


class Runner:
    """The state and the task of one registered service."""

    # a slot per field: 10,000 runners are ~1.5 KB each smaller than with a __dict__
    __slots__ = (
        "_again",
        "_changed",
        "_exit_error",
        "_go",
        "_last_logged",
        "_readiness",
        "_status",
        "_status_value",
        "_stop_event",
        "_wait_cut",
        "accepts_task_status",
        "attempt",
        "config",
        "consec_failures",
        "created_at",
        "ctx",
        "current_delay",
        "deleting",
        "depends_on",
        "error",
        "error_count",
        "generation",
        "group",
        "held",
        "hub",
        "last_error",
        "last_error_time",
        "last_start_time",
        "last_stop_time",
        "life",
        "name",
        "phase",
        "position",
        "ready",
        "registry",
        "restart_count",
        "run_started",
        "scope",
        "seq",
        "service",
        "start_count",
        "stop_asked",
        "success_count",
        "task",
        "total_uptime",
        "window",
        "window_restarts",
        "window_start",
    )

    def __init__(
        self,
        service: Service,
        config: ServiceConfig,
        created_at: float,
        hub: EventHub,
        registry: MutableMapping[str, Runner],
    ) -> None:
        self.service = service
        self.hub = hub
        self.registry = registry  # the manager's: a deleted runner leaves it once its task exited
        self.name: str = service.name
        self.config = config
        self.accepts_task_status = accepts_task_status(service)
        self.created_at = created_at
        self.depends_on: tuple[str, ...] = ()
        self.position = 0  # fixed when added: dependency order, then registration order
        # lifetime counters
        self.start_count = 0
        self.error_count = 0
        self.success_count = 0
        self.total_uptime = 0.0
        # counters a manual start, restart or reset clears
        self.restart_count = 0
        self.consec_failures = 0
        self.current_delay = config.restart_delay
        self.window = RestartWindow()
        self.window_restarts = 0
        self.window_start: float | None = None
        self.generation = 0
        # the last error and times (wall-clock POSIX seconds)
        self.last_error = ""
        self.last_error_time: float | None = None
        self.error: BaseException | None = None
        self.last_start_time: float | None = None
        self.last_stop_time: float | None = None
        self._last_logged: str | None = None
        self._exit_error: BaseException | None = None
        # the lifecycle (written by _move) and the requests made of it
        self.phase: Phase = IDLE
        self.held = not config.auto_start  # stopped by hand
        self.deleting = False
        self.stop_asked = False  # a stop of the current life was requested
        self._again = _EXIT
        self.seq = 0  # counts requests: a later one supersedes an earlier one's wait
        self.group: object | None = None  # the group restart that holds it in GROUP_WAIT
        # the task and its current life and attempt
        self.ctx: ServeContext | None = None
        self.task: trio.lowlevel.Task | None = None
        self.scope: trio.CancelScope | None = None
        self.life = 0
        self.attempt = 0
        self.ready = False
        self.run_started: float | None = None  # set while an attempt is in serve
        self._wait_cut = False
        self._go: trio.Event | None = None
        self._changed: trio.Event | None = None
        self._stop_event: trio.Event | None = None
        self._readiness: AsyncValue[bool] | None = None
        self._status: ServiceStatus | None = self.status_now()
        self._status_value: AsyncValue[ServiceStatus | None] | None = None

    # ------------------------------------------------------------ the lifecycle

    def status_now(self) -> ServiceStatus:
        """The status, derived from the phase (SPEC §4)."""
        return status_of(
            self.phase, held=self.held, consec_failures=self.consec_failures, ready=self.ready
        )

    @property
    def status(self) -> AsyncValue[ServiceStatus | None]:
        """The published status, for ``wait_status`` (made on first use: it is large)."""
        if self._status_value is None:
            self._status_value = AsyncValue(self._status)
        return self._status_value

    def _move(self, to: Phase) -> None:
        """The one place a phase changes; the move must be in the lifecycle's table."""
        old = self.phase
        if to is not old:
            if to not in MOVES[old]:
                raise AssertionError(f"service {self.name!r}: no move from {old} to {to}")
            self.phase = to
            hub = self.hub
            if hub.wanted_status():
                hub.emit(
                    ServicePhaseChanged(
                        manager=hub.manager, time=trio_now(), service=self.name, old=old, new=to
                    ),
                    _DEBUG,
                )
        self._publish()

    def _publish(self) -> None:
        """Tell waiters that something changed: statuses, readiness, verbs' waits."""
        if self._readiness is not None:
            self._readiness.value = self.phase is RUNNING
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()
        if self.phase is REMOVED:
            return
        new = self.status_now()
        old = self._status
        if new is not old:
            self._status = new
            if self._status_value is not None:
                self._status_value.value = new
            hub = self.hub
            if old is not None and hub.wanted_status():
                hub.emit(
                    ServiceStatusChanged(
                        manager=hub.manager, time=trio_now(), service=self.name, old=old, new=new
                    ),
                    _DEBUG,
                )

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until *done()* holds, asked again after every change (no checkpoint if it holds)."""
        while not done():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def entered_since(self, attempt: int) -> bool:
        """Whether a start made at *attempt* entered ``serve``, waits on a dependency or ended."""
        phase = self.phase
        return phase not in LIVE or self.attempt > attempt or phase is WAITING_DEPS

    def settled_since(self, attempt: int) -> bool:
        """Whether a start made at *attempt* is ready, has ended its attempt, waits or ended."""
        phase = self.phase
        if phase not in LIVE or phase is WAITING_DEPS:
            return True
        return self.attempt > attempt and phase is not STARTING

    def ended_since(self, life: int) -> bool:
        """Whether the instance of *life* has exited (the task ended or began another life)."""
        return self.life != life or self.phase not in LIVE

    @property
    def alive(self) -> bool:
        """Whether the service's runner task lives."""
        return self.phase in LIVE

    @property
    def may_start_again(self) -> bool:
        """Whether the tree may start this service now (nothing holds it down)."""
        return not (self.held or self.deleting or self.phase in LIVE or self.phase is FAILED)

    def reset_counters(self) -> None:
        """Clear the counters that a manual start, restart or reset clears."""
        self.generation += 1
        self.restart_count = 0
        self.consec_failures = 0
        self.current_delay = self.config.restart_delay
        self.window.clear()
        self.window_restarts = 0
        self.window_start = None

    # ---------------------------------------------------------------- requests

    def spawn(self, ctx: ServeContext) -> None:
        """Start the runner task in the manager's nursery (no task may live)."""
        assert self.phase not in LIVE, self.name  # never two tasks
        self.ctx = ctx
        self.stop_asked = False
        self._again = _EXIT
        self._move(STARTING)  # a task lives from now on
        ctx.nursery.start_soon(self._run, ctx, name=f"trisup:{self.name}")

    def request_start(self, ctx: ServeContext | None) -> bool:
        """A manual start; whether an instance is to enter ``serve`` (so a caller may wait).

        A no-op if an attempt is starting or running (or waits on a dependency).
        *ctx* is ``None`` while the manager does not accept starts: the start is
        only recorded then.
        """
        phase = self.phase
        alive = phase in LIVE
        if alive and not self.stop_asked and phase in _UNDERWAY:
            return False  # starting or running: a no-op
        self.held = False
        self.seq += 1
        self.reset_counters()
        if ctx is None:  # only recorded: the next serve starts it
            self._again = _EXIT
            if not alive:
                self._move(IDLE)
            else:
                self._publish()
            return False
        if not alive:
            self.spawn(ctx)
        elif self.stop_asked:
            self._again = _AGAIN  # the instance is exiting: a new one follows in this task
        elif phase is BACKOFF:
            self._wait_cut = True
            if self.ctx is not None and self.task is not None:
                self.ctx.timer.wake(self.task)  # unless still in the checkpoint that begins it
        elif phase is GROUP_WAIT:
            self.release()  # out of the group restart: it starts now
        self._publish()
        return True

    def request_stop(self, *, hold: bool = True, delete: bool = False) -> bool:
        """Stop the instance (held by hand, deleted, or for a shutdown); whether one lives.

        The shutdown's stop (*hold* false) is not a request of its own: it supersedes
        nothing, since it holds nothing and nothing starts while the manager stops.
        """
        if hold or delete:
            self.seq += 1
        if delete:
            self.deleting = True
        if hold:
            self.held = True
        self._again = _EXIT
        if self.phase not in LIVE:
            if delete:
                self._remove()
            else:
                self._publish()
            return False
        self._cancel()
        return True

    def keep(self) -> None:
        """A delete whose stop timed out: the service stays registered, stopped."""
        self.deleting = False
        self.held = True
        self._publish()

    def exited(self) -> bool:
        """Whether no task of the service lives."""
        return self.phase not in LIVE

    def request_restart(self, *, again: int = _AGAIN, fresh: bool = True) -> None:
        """Stop the instance and start the next one in the same task.

        *fresh*: a manual restart (counters cleared once the old instance has
        exited: a restart whose stop times out starts and clears nothing);
        otherwise a dependency or group restart that keeps them.
        """
        self.seq += 1
        if fresh:
            self.held = False
            again = _FRESH
        if self.phase not in LIVE:
            if fresh:
                self.reset_counters()
            self._publish()
            return
        self._again = again
        self._cancel()

    def request_group_stop(self, group: object) -> None:
        """A group restart stops it: a ``NEVER`` service stays down, others wait for the group."""
        if self.config.restart_policy is RestartPolicy.NEVER:
            self.request_stop(hold=False)
        else:
            self.group = group
            self.request_restart(again=_GROUP, fresh=False)

    def release(self) -> None:
        """End the ``GROUP_WAIT`` park: the next attempt starts now."""
        self.group = None
        if self._go is not None:
            self._go.set()

    def reset(self) -> None:
        """``reset_service``: clear the counters and a failure; starts nothing."""
        self.reset_counters()
        if self.phase is FAILED:
            self._move(IDLE)
        else:
            self._publish()

    def _cancel(self, *, at_once: bool = False) -> None:
        """Ask the current life to end.

        A running service with a ``grace_period`` sees its ``stop_requested``
        event set and is cancelled only when the grace period has passed;
        otherwise (or *at_once*) it is cancelled now.
        """
        first = not self.stop_asked
        self.stop_asked = True
        if self._stop_event is not None:
            self._stop_event.set()
        phase = self.phase
        if phase is STARTING or phase is RUNNING:
            self._move(STOPPING)
        else:
            self._publish()
        scope = self.scope
        if scope is None:
            return
        grace = self.config.grace_period
        if at_once or grace <= 0 or self.run_started is None:
            scope.cancel(reason=f"trisup: stop {self.name}")
        elif first:
            scope.deadline = min(scope.deadline, trio.current_time() + grace)

    def cancel_now(self) -> None:
        """The shutdown's last resort: cancel the instance at once, whatever its grace period."""
        if self.phase in LIVE:
            self._cancel(at_once=True)

    def stop_event(self) -> trio.Event:
        """The event set when a stop of the current attempt is requested."""
        if self._stop_event is None:
            self._stop_event = trio.Event()
            if self.stop_asked:
                self._stop_event.set()
        return self._stop_event

    def readiness(self) -> AsyncValue[bool]:
        """Whether an attempt is running and ready (for dependents to wait on)."""
        if self._readiness is None:
            self._readiness = AsyncValue(self.phase is RUNNING)
        return self._readiness

    def owns_current_task(self) -> bool:
        """Whether the calling task is the runner task or one it started."""
        if self.task is None:
            return False
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            if task is self.task:
                return True
            nursery = task.parent_nursery
            task = nursery.parent_task if nursery is not None else None
        return False

    def mark_ready(self, attempt: int) -> None:
        """Called through ``task_status.started()``."""
        if attempt != self.attempt or self.run_started is None or self.ready:
            return
        self.ready = True
        scope = self.scope
        if scope is not None and not self.stop_asked:
            scope.deadline = math.inf  # the start timeout no longer applies
        if self.phase is STARTING:
            self._move(RUNNING)
        else:
            self._publish()
        if self.hub.wanted(_DEBUG):
            self.hub.emit(
                ServiceReady(manager=self.hub.manager, time=trio_now(), service=self.name), _DEBUG
            )

    def healthy(self, attempt: int) -> None:
        """The run of *attempt* reached ``restart_window`` of uptime."""
        if self.run_started is not None and attempt == self.attempt:
            self._healthy_reset()
            self._publish()

    def _healthy_reset(self) -> None:
        self.consec_failures = 0
        self.current_delay = self.config.restart_delay
        self.window.clear()
        self.window_restarts = 0
        self.window_start = None

    def _remove(self) -> None:
        """Deleted and exited: leave the registry (the name may be added again)."""
        self._move(REMOVED)
        if self.registry.get(self.name) is self:
            del self.registry[self.name]
        self.status.value = None
        if self.hub.wanted(_INFO):
            self.hub.emit(
                ServiceRemoved(manager=self.hub.manager, time=trio_now(), service=self.name),
                _INFO,
            )

    # ------------------------------------------------------------------ the task

    def _go_on(self, ctx: ServeContext) -> int:
        """At the end of a life: what the task does next (the one place that decides).

        The latest request is what the fields say now: a delete, a hold or the
        shutdown end the task; a restart (by hand, of a group or of dependents)
        begins the next life in this task.
        """
        again = self._again
        if self.deleting or self.held or ctx.stopping or not self.stop_asked:
            return _EXIT
        if again == _FRESH:
            self.reset_counters()
            return _AGAIN
        return again

    async def _run(self, ctx: ServeContext) -> None:
        self.task = trio.lowlevel.current_task()
        set_current(self)
        begin = _AGAIN  # how the next life begins: an attempt, a group park, or the backoff
        try:
            while True:
                self.life += 1
                resume = False  # stays so when a stop ends the life
                with trio.CancelScope(shield=True) as scope:
                    self.scope = scope
                    if self.stop_asked:
                        scope.cancel()
                    resume = await self._life(ctx, scope, begin)
                self.scope = None
                if resume and not (self.stop_asked or ctx.stopping):
                    begin = _BACKOFF  # the start timeout spent the scope: back off in a fresh one
                    continue
                begin = self._go_on(ctx)
                if begin == _EXIT:
                    break
                self.stop_asked = False
                self._again = _EXIT
                self._stop_event = None
                self._publish()  # a new life: the stop's waiters may return
        finally:
            if self.stop_asked and self.hub.wanted(_INFO):
                self.hub.emit(
                    ServiceStopDone(manager=self.hub.manager, time=trio_now(), service=self.name),
                    _INFO,
                )
            clear_current()
            self.task = None
            self.scope = None
            self.run_started = None
            self.ready = False
            self.group = None
            self._go = None
            self.stop_asked = False
            self._again = _EXIT
            if self.deleting:
                self._remove()
            elif self.phase in LIVE:
                self._move(IDLE)
            else:
                self._publish()

    async def _life(self, ctx: ServeContext, scope: trio.CancelScope, begin: int) -> bool:
        """Attempts and backoff waits until a stop or an end; whether to resume at the backoff."""
        deps = begin != _BACKOFF
        if begin == _GROUP:
            await self._park_in_group()
        elif begin == _BACKOFF:
            decided = await self._backoff(ctx, restart_now=False, uptime=0.0)
            if decided == _END:
                return False
            deps = decided == _GROUPED
        while True:
            if self.stop_asked or ctx.stopping:
                return False
            if deps and self.depends_on:
                await self._wait_for_dependencies(ctx)
            # the attempt runs in this frame: no coroutine of its own per service
            attempt = self._begin(ctx, scope)
            try:
                await self._open(attempt)
            except BaseException as exc:
                error: BaseException | None = _trimmed(exc)
            else:
                error = None
            how = self._classify(ctx, scope, error)
            del error  # a stop's Cancelled must not outlive its attempt
            if how == _END:
                return False
            if scope.cancel_called:
                return True  # the start timeout cancelled this scope
            uptime = (self.last_stop_time or 0.0) - (self.last_start_time or 0.0)
            decided = await self._backoff(ctx, restart_now=how == _NOW, uptime=uptime)
            if decided == _END:
                return False
            deps = decided == _GROUPED

    async def _wait_for_dependencies(self, ctx: ServeContext) -> None:
        """Wait until every dependency is running and ready at the same time."""
        while True:
            pending = [
                d
                for name in self.depends_on
                if (d := ctx.tree.runners.get(name)) is not None and d.phase is not RUNNING
            ]
            if not pending:
                return
            self._move(WAITING_DEPS)
            await pending[0].readiness().wait_value(True)  # pyright: ignore[reportUnknownMemberType]

    async def _park_in_group(self) -> None:
        """Wait in ``GROUP_WAIT`` until the group restart (or a manual start) releases it."""
        go = self._go = trio.Event()
        self._move(GROUP_WAIT)
        if self.group is None:  # released before it parked
            return
        await go.wait()
        self._go = None

    def _begin(self, ctx: ServeContext, scope: trio.CancelScope) -> int:
        """Count and announce a new attempt; return its number."""
        self._stop_event = None
        self.attempt += 1
        attempt = self.attempt
        ready = not self.accepts_task_status
        self.ready = ready
        self.start_count += 1
        now = trio.current_time()
        self.run_started = now
        self.last_start_time = now + ctx.wall_offset
        config = self.config
        if self.consec_failures or len(self.window) or self.current_delay != config.restart_delay:
            ctx.timer.schedule(now + config.restart_window, self, attempt)
        if not ready and config.start_timeout is not None:
            scope.deadline = now + config.start_timeout
        self._move(RUNNING if ready else STARTING)
        hub = self.hub
        if hub.wanted(_DEBUG):
            hub.emit(
                ServiceStarting(
                    manager=hub.manager, time=now, service=self.name, start_count=self.start_count
                ),
                _DEBUG,
            )
            if ready:
                hub.emit(ServiceReady(manager=hub.manager, time=now, service=self.name), _DEBUG)
        return attempt

    def _open(self, attempt: int) -> Awaitable[object]:
        """What the attempt awaits: the service's ``serve()``, or a function service's call."""
        service = self.service
        task_status = _Readiness(self, attempt) if self.accepts_task_status else None
        if type(service) is FunctionService:
            return service.call(task_status)  # one coroutine frame less per service
        if task_status is not None:
            return service.serve(task_status=task_status)
        return service.serve()

    def _classify(
        self, ctx: ServeContext, scope: trio.CancelScope, error: BaseException | None
    ) -> int:
        """Apply the outcome rules (SPEC §4); return what the outcome asks for."""
        now = trio.current_time()
        started = self.run_started
        uptime = 0.0 if started is None else now - started
        self.total_uptime += uptime
        self.run_started = None
        self.ready = False
        self.last_stop_time = now + ctx.wall_offset
        config = self.config
        if uptime >= config.restart_window:
            self._healthy_reset()
        stopped = self.stop_asked
        if not stopped and scope.deadline != math.inf:  # the start timeout was armed
            if scope.cancel_called and (error is None or not escapes(error)):
                error = ServiceStartTimeout(config.start_timeout or 0.0)
            else:
                scope.deadline = math.inf
        # kept for the restart decision only; a stop's Cancelled (and the frames of
        # its traceback) must not outlive the attempt
        self._exit_error = None if stopped else error
        kind = classify(error, stopped=stopped)
        if kind is FAILURE:  # rule 5, the common case first
            assert error is not None
            self._record_error(ctx, error, now)
            self.consec_failures += 1
            self._exited(kind, error, uptime, _WARNING)
            if config.restart_policy is RestartPolicy.NEVER:
                self._move(FAILED)
                self._failed("restart policy is never")
                return _END
            self._publish()  # CRASHING from the moment it failed
            return _RESTART
        if kind is STOPPED:  # rule 2
            self.success_count += 1
            self._exited(kind, error, uptime, _DEBUG)
            return _END
        if kind is CLEAN:  # rule 6
            self.success_count += 1
            self.consec_failures = 0
            self._exited(kind, None, uptime, _INFO)
            if config.restart_policy is RestartPolicy.ALWAYS:
                return _RESTART
            self._move(COMPLETED)
            return _END
        assert error is not None  # the other outcomes come from an exception
        if kind is RESTART_NOW:  # the service asked for it: not a failure, no backoff
            self._exited(kind, None, uptime, _INFO)
            return _NOW
        if kind is ESCAPE:  # rule 1: KeyboardInterrupt, SystemExit, ... tear down
            raise error
        if kind is NO_RESTART:  # rule 4, every leaf a bare DoNotRestart
            self.success_count += 1
            self._exited(kind, error, uptime, _INFO)
            self._move(COMPLETED)
            return _END
        self._record_error(ctx, error, now)
        self._move(FAILED)
        if kind is FATAL:  # rule 3
            self._exited(kind, error, uptime, _ERROR)
            self._failed("fatal error")
            ctx.terminate(find_terminate(error))
        else:  # rule 4, with a cause or beside other errors
            self._exited(kind, error, uptime, _WARNING)
            self._failed("do not restart")
        return _END

    def _record_error(self, ctx: ServeContext, error: BaseException, now: float) -> None:
        self.error_count += 1
        self.error = error
        self.last_error = error_message(error)
        self.last_error_time = now + ctx.wall_offset

    def _exited(
        self, kind: AttemptOutcome, error: BaseException | None, uptime: float, level: int
    ) -> None:
        if error is not None and level > _DEBUG:
            text = self.last_error
            if text == self._last_logged:
                level = _DEBUG  # the seed's de-duplication of identical failures
            self._last_logged = text
        hub = self.hub
        if hub.wanted(level):
            hub.emit(
                ServiceExited(
                    manager=hub.manager,
                    time=trio_now(),
                    service=self.name,
                    outcome=kind.value,
                    error=error,
                    uptime=uptime,
                ),
                level,
                exc_info=error if level > _DEBUG else None,
            )

    def _failed(self, reason: str) -> None:
        hub = self.hub
        if hub.wanted(_ERROR):
            hub.emit(
                ServiceFailed(
                    manager=hub.manager, time=trio_now(), service=self.name, reason=reason
                ),
                _ERROR,
            )

    async def _backoff(self, ctx: ServeContext, *, restart_now: bool, uptime: float) -> int:
        """The restart path: give up, take part in a group restart, or wait and go on."""
        config = self.config
        if restart_now:  # the service's own request: no budget, no growth, never a spin
            quick = uptime < _QUICK_RESTART_NOW
            return await self._wait(ctx, config.restart_delay if quick else 0.0, count=False)
        tree = ctx.tree
        group = tree.stopping_group(self)
        if group is not None:  # it died while a group restart stops its group: part of it
            self.group = group
            await self._park_in_group()
            return _GROUPED
        now = trio.current_time()
        in_window = self.window.count(now, config.restart_window)
        self.window_restarts = in_window
        self.window_start = None if not in_window else self._wall(ctx, self.window.oldest())
        reason = give_up_reason(
            restart_count=self.restart_count,
            max_restarts=config.max_restarts,
            in_window=in_window,
            max_restarts_in_window=config.max_restarts_in_window,
            restart_window=config.restart_window,
        )
        if reason is not None:
            self._move(FAILED)
            self._failed(reason)
            return _END
        if not tree.note_restart(ctx, self, self._exit_error):
            return _END  # the manager gave up: it is shutting down
        delay = jittered(self.current_delay, config.jitter, ctx.rng)
        hub = self.hub
        if hub.wanted(_INFO):
            hub.emit(
                ServiceBackingOff(manager=hub.manager, time=now, service=self.name, delay=delay),
                _INFO,
            )
        if tree.has_dependencies:
            dependents = tree.dependents(self)
            if dependents:
                ctx.nursery.start_soon(tree.restart_dependents, ctx, dependents)
        group = tree.start_group_restart(ctx, self, delay)
        if group is not None:  # one-for-all / rest-for-one: the tree restarts everyone in order
            self.group = group
            await self._park_in_group()
            return _GROUPED
        return await self._wait(ctx, delay, count=True)

    async def _wait(self, ctx: ServeContext, delay: float, *, count: bool) -> int:
        """Wait out *delay* in ``BACKOFF``; a manual start cuts it short (no restart counted)."""
        generation = self.generation
        deadline = trio.current_time() + delay
        self._wait_cut = False
        self._move(BACKOFF)
        # A short delay gets a checkpoint first: it is often over by then, and a timed
        # wait costs more. A longer one parks on the manager's timer at once (a second
        # pass through the scheduler per restart would double the batch that other
        # tasks queue behind in a crash storm). A stop cancels the park.
        if delay < _SHORT_DELAY or trio.current_time() >= deadline:
            await trio.lowlevel.checkpoint()  # every turn yields, even with no wait left
        if not self._wait_cut and trio.current_time() < deadline:
            await ctx.timer.sleep_until(deadline)
        if self._wait_cut:
            return _NEXT  # start_service cut the wait short and cleared the counters
        if ctx.stopping:
            return _END  # the manager is shutting down: no restart follows, none is counted
        if count:
            self.count_restart(ctx, grow=generation == self.generation)
        return _NEXT

    def count_restart(self, ctx: ServeContext, *, grow: bool = True) -> None:
        """Count an automatic restart: grow the delay, record it in the window.

        A reset during the wait (*grow* false) keeps the fresh delay.
        """
        config = self.config
        if grow:
            self.current_delay = next_delay(
                self.current_delay, config.backoff_multiplier, config.max_restart_delay
            )
        now = trio.current_time()
        self.restart_count += 1
        self.window.record(now, config.max_restarts_in_window)
        self.window_restarts = self.window.count(now, config.restart_window)
        self.window_start = self._wall(ctx, self.window.oldest())
        hub = self.hub
        if hub.wanted(_DEBUG):
            hub.emit(
                ServiceRestarting(
                    manager=hub.manager,
                    time=now,
                    service=self.name,
                    restart_count=self.restart_count,
                ),
                _DEBUG,
            )

    @staticmethod
    def _wall(ctx: ServeContext, t: float | None) -> float | None:
        return None if t is None else t + ctx.wall_offset


def _trimmed(exc: BaseException) -> BaseException:
    """*exc*, its traceback starting at the service's own code.

    trisup's frames would only add noise to logs, and keep the runner's state
    alive for as long as the error is kept (through the backoff wait and after).
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code in _OWN_FRAMES:
        tb = tb.tb_next
    exc.__traceback__ = tb
    return exc


# the frames between the runner and a service's own code
_OWN_FRAMES = frozenset(
    (
        Runner._life.__code__,  # pyright: ignore[reportPrivateUsage]
        Runner._open.__code__,  # pyright: ignore[reportPrivateUsage]
        FunctionService.call.__code__,
        FunctionService.serve.__code__,
    )
)
