"""One supervised service: its runner task, cancel scope, outcome rules and restart loop.

A runner owns every counter of its service and is the only writer of them,
except for the manager's control verbs, which reset them synchronously. One
long-lived task runs all attempts, each in that task's own frame, inside the
runner's shielded cancel scope, which only the manager cancels. The backoff
wait parks the task on the manager's timer (`_timer.py`) inside the same scope,
so a stop during the wait ends it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

import trio
from trio_util import AsyncValue

from ._backoff import RestartWindow, jittered, next_delay
from ._config import ServiceConfig
from ._context import ServeContext, clear_current, set_current, trio_now
from ._errors import error_message, find_terminate
from ._events import (
    EventHub,
    ServiceBackingOff,
    ServiceExited,
    ServiceFailed,
    ServiceReady,
    ServiceRestarting,
    ServiceStarting,
    ServiceStatusChanged,
    ServiceStopped,
)
from ._outcome import CLEAN, ESCAPE, FAILURE, FATAL, NO_RESTART, STOPPED, Outcome, classify
from ._service import FunctionService, Service, accepts_task_status
from ._status import Metric, RestartPolicy, ServiceInfo, ServiceStatus

__all__ = ["Runner"]


_DEBUG = logging.DEBUG
_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR
_SHORT_DELAY = 0.001  # seconds; see _backoff


def _datetime(posix: float | None) -> datetime | None:
    return None if posix is None else datetime.fromtimestamp(posix, UTC)


def _details(service: Service) -> dict[str, object]:
    """A copy of what the service's optional ``details()`` method returns."""
    method: object = getattr(service, "details", None)
    if not callable(method):
        return {}
    try:
        value: object = method()
    except Exception:  # a broken details() must not break get_service_info
        return {}
    return dict(value) if isinstance(value, dict) else {}  # pyright: ignore[reportUnknownArgumentType]


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
        "_done",
        "_entered",
        "_exit_error",
        "_last_logged",
        "_readiness",
        "_settled",
        "_status",
        "_status_value",
        "_stop_event",
        "_wait_cut",
        "accepts_task_status",
        "alive",
        "attempt",
        "cancelled",
        "completed",
        "config",
        "consec_failures",
        "created_at",
        "ctx",
        "current_delay",
        "deleted",
        "depends_on",
        "depth",
        "error",
        "error_count",
        "failed",
        "generation",
        "group_pending",
        "hub",
        "last_error",
        "last_error_time",
        "last_start_time",
        "last_stop_time",
        "name",
        "ready",
        "restart_count",
        "restart_pending",
        "run_started",
        "running",
        "scope",
        "service",
        "start_count",
        "start_seq",
        "stopped",
        "success_count",
        "task",
        "total_uptime",
        "waiting",
        "window",
        "window_restarts",
        "window_start",
    )

    def __init__(
        self, service: Service, config: ServiceConfig, created_at: float, hub: EventHub
    ) -> None:
        self.service = service
        self.hub = hub
        self.name: str = service.name
        self.config = config
        self.accepts_task_status = accepts_task_status(service)
        self.created_at = created_at
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
        self.failed = False
        self.completed = False
        self.stopped = not config.auto_start
        self.deleted = False
        # the last error and times (wall-clock POSIX seconds)
        self.last_error = ""
        self.last_error_time: float | None = None
        self.error: BaseException | None = None
        self.last_start_time: float | None = None
        self.last_stop_time: float | None = None
        self._last_logged: str | None = None
        # the task, while it lives
        self.ctx: ServeContext | None = None
        self.task: trio.lowlevel.Task | None = None
        self.scope: trio.CancelScope | None = None
        self.alive = False
        self.cancelled = False
        self.restart_pending = False
        self.running = False
        self.ready = False
        self.waiting = False
        self.attempt = 0
        self.run_started = 0.0
        self.start_seq = 0
        self._wait_cut = False
        self._done: trio.Event | None = None
        self._entered: trio.Event | None = None
        self._settled: trio.Event | None = None
        self._stop_event: trio.Event | None = None
        self._readiness: AsyncValue[bool] | None = None
        self._exit_error: BaseException | None = None
        self.group_pending = False
        self.depends_on: tuple[str, ...] = ()
        self.depth = 0
        self._status: ServiceStatus | None = self.compute_status()
        self._status_value: AsyncValue[ServiceStatus | None] | None = None

    @property
    def status(self) -> AsyncValue[ServiceStatus | None]:
        """The published status, for ``wait_status`` (made on first use: it is large)."""
        if self._status_value is None:
            self._status_value = AsyncValue(self._status)
        return self._status_value

    # ----------------------------------------------------------------- status

    def compute_status(self) -> ServiceStatus:
        """The status, by the rules of SPEC §4 (first match wins)."""
        if self.stopped:
            return ServiceStatus.STOPPED
        if self.failed:
            return ServiceStatus.FAILED
        if self.completed:
            return ServiceStatus.COMPLETED
        if self.running and not self.ready:
            return ServiceStatus.STARTING
        if self.running or self.waiting or self.group_pending:
            return ServiceStatus.CRASHING if self.consec_failures else ServiceStatus.RUNNING
        if self.consec_failures:
            return ServiceStatus.ERROR
        return ServiceStatus.IDLE

    def update_status(self) -> None:
        """Publish the status to ``wait_status`` waiters (and the status log)."""
        if self._readiness is not None:
            self._readiness.value = self.running and self.ready
        new = self.compute_status()
        old = self._status
        if new is not old and not self.deleted:
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

    def reset_counters(self) -> None:
        """Clear the counters that a manual start, restart or reset clears."""
        self.generation += 1
        self.restart_count = 0
        self.consec_failures = 0
        self.current_delay = self.config.restart_delay
        self.window.clear()
        self.window_restarts = 0
        self.window_start = None
        self.failed = False

    def info(self, now: float | None) -> ServiceInfo:
        """A snapshot; *now* is the trio time, or ``None`` outside a run."""
        uptime = now - self.run_started if (self.running and now is not None) else 0.0
        total = self.total_uptime + uptime
        status = self.compute_status()
        metric = Metric(
            name=self.name,
            status=status,
            start_count=self.start_count,
            error_count=self.error_count,
            success_count=self.success_count,
            consec_failures=self.consec_failures,
            last_error=self.last_error,
            last_error_time=_datetime(self.last_error_time),
            last_start_time=_datetime(self.last_start_time),
            last_stop_time=_datetime(self.last_stop_time),
            current_uptime=uptime,
            total_uptime=total,
            average_uptime=total / self.start_count if self.start_count else 0.0,
            created_at=_datetime(self.created_at),
            current_delay=self.current_delay,
            restarts_in_window=self.window_restarts,
        )
        return ServiceInfo(
            metric=metric,
            stopped=self.stopped,
            failed=self.failed,
            restart_count=self.restart_count,
            window_restarts=self.window_restarts,
            current_delay=self.current_delay,
            window_start=_datetime(self.window_start),
            last_service_start=_datetime(self.last_start_time),
            error=self.error,
            details=_details(self.service),
            running=self.running,
        )

    # ------------------------------------------------------- control (manager)

    def spawn(self, ctx: ServeContext) -> None:
        """Start the runner task in the manager's nursery."""
        self.ctx = ctx
        self.alive = True
        self.cancelled = False
        ctx.start_seq += 1
        self.start_seq = ctx.start_seq
        ctx.nursery.start_soon(self._run, ctx, name=f"trisup:{self.name}")

    def request_cancel(self, *, at_once: bool = False) -> None:
        """Ask the current task to end.

        A running service with a ``grace_period`` sees its ``stop_requested``
        event set and is cancelled only when the grace period has passed;
        otherwise (or *at_once*) it is cancelled now.
        """
        if not self.alive:
            return
        first = not self.cancelled
        self.cancelled = True
        if self._stop_event is not None:
            self._stop_event.set()
        scope = self.scope
        if scope is None:
            return
        grace = self.config.grace_period
        if at_once or grace <= 0 or not self.running:
            scope.cancel(reason=f"trisup: stop {self.name}")
        elif first:
            scope.deadline = min(scope.deadline, trio.current_time() + grace)

    def readiness(self) -> AsyncValue[bool]:
        """Whether an attempt is running and ready (for dependents to wait on)."""
        if self._readiness is None:
            self._readiness = AsyncValue(self.running and self.ready)
        return self._readiness

    async def _wait_for_dependencies(self, ctx: ServeContext) -> None:
        """Wait until every dependency is running and ready at the same time."""
        while True:
            pending = [
                d
                for name in self.depends_on
                if (d := ctx.tree.runners.get(name)) is not None and not (d.running and d.ready)
            ]
            if not pending:
                return
            await pending[0].readiness().wait_value(True)  # pyright: ignore[reportUnknownMemberType]

    def stop_event(self) -> trio.Event:
        """The event set when a stop of the current attempt is requested."""
        if self._stop_event is None:
            self._stop_event = trio.Event()
            if self.cancelled:
                self._stop_event.set()
        return self._stop_event

    def interrupt_wait(self) -> bool:
        """Cut a backoff wait short so the next attempt starts at once."""
        if not self.waiting or self.cancelled:
            return False
        self._wait_cut = True
        if self.ctx is not None and self.task is not None:
            self.ctx.timer.wake(self.task)  # unless still in the checkpoint that begins it
        return True

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

    async def wait_done(self) -> None:
        """Wait until the runner task has exited (at once if none lives)."""
        if not self.alive:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def entered_event(self) -> trio.Event:
        """An event set once the next attempt has entered ``serve``."""
        if self._entered is None:
            self._entered = trio.Event()
        return self._entered

    async def spawn_settled(self, ctx: ServeContext) -> None:
        """Start the runner task; wait until ready or its first attempt is classified."""
        settled = self.settled_event()
        self.spawn(ctx)
        await settled.wait()

    @property
    def may_start_again(self) -> bool:
        """Whether a strategy or a dependency restart may start this service now."""
        return not (self.stopped or self.alive or self.deleted or self.failed)

    def settled_event(self) -> trio.Event:
        """An event set once the service is ready or its first attempt is classified."""
        if self._settled is None:
            self._settled = trio.Event()
        return self._settled

    def mark_ready(self, attempt: int) -> None:
        """Called through ``task_status.started()``."""
        if attempt != self.attempt or not self.running:
            return
        self.ready = True
        self.update_status()
        if self.hub.wanted(_DEBUG):
            self.hub.emit(
                ServiceReady(manager=self.hub.manager, time=trio_now(), service=self.name), _DEBUG
            )
        self._set_settled()

    def healthy(self, attempt: int) -> None:
        """The run of *attempt* reached ``restart_window`` of uptime."""
        if self.running and attempt == self.attempt:
            self._healthy_reset()
            self.update_status()

    # ----------------------------------------------------------------- the task

    def _set_settled(self) -> None:
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def _healthy_reset(self) -> None:
        self.consec_failures = 0
        self.current_delay = self.config.restart_delay
        self.window.clear()
        self.window_restarts = 0
        self.window_start = None

    async def _run(self, ctx: ServeContext) -> None:
        self.task = trio.lowlevel.current_task()
        set_current(self)
        try:
            while True:
                with trio.CancelScope(shield=True) as scope:
                    self.scope = scope
                    if self.cancelled:
                        scope.cancel()
                    if self.depends_on:
                        await self._wait_for_dependencies(ctx)
                    while not self.cancelled and not ctx.stopping:
                        # the attempt runs in this frame: no coroutine of its own per service
                        attempt = self._begin(ctx)
                        try:
                            await self._open(attempt)
                        except BaseException as exc:
                            error: BaseException | None = _trimmed(exc)
                        else:
                            error = None
                        restart = self._classify(ctx, error)
                        del error  # a stop's Cancelled must not outlive its attempt
                        if not restart:
                            break
                        if not await self._backoff(ctx):
                            break
                if not (self.restart_pending and self.cancelled) or ctx.stopping:
                    break
                # a restart requested from inside the service: same task, fresh start
                self.restart_pending = False
                self.cancelled = False
                self.reset_counters()
                self.completed = False
        finally:
            if self.cancelled and self.hub.wanted(_INFO):
                self.hub.emit(
                    ServiceStopped(manager=self.hub.manager, time=trio_now(), service=self.name),
                    _INFO,
                )
            clear_current()
            self.task = None
            self.scope = None
            self.alive = False
            self.cancelled = False
            self.restart_pending = False
            self.running = False
            self.waiting = False
            self.update_status()
            for event in (self._done, self._entered, self._settled):
                if event is not None:
                    event.set()
            self._done = self._entered = self._settled = None

    def _begin(self, ctx: ServeContext) -> int:
        """Count and announce a new attempt; return its number."""
        self._stop_event = None
        self.attempt += 1
        attempt = self.attempt
        self.running = True
        self.ready = not self.accepts_task_status
        self.start_count += 1
        now = trio.current_time()
        self.run_started = now
        self.last_start_time = now + ctx.wall_offset
        config = self.config
        if self.consec_failures or len(self.window) or self.current_delay != config.restart_delay:
            ctx.timer.schedule(now + config.restart_window, self, attempt)
        self.update_status()
        hub = self.hub
        if hub.wanted(_DEBUG):
            hub.emit(
                ServiceStarting(
                    manager=hub.manager, time=now, service=self.name, start_count=self.start_count
                ),
                _DEBUG,
            )
            if self.ready:
                hub.emit(ServiceReady(manager=hub.manager, time=now, service=self.name), _DEBUG)
        if self._entered is not None:
            self._entered.set()
            self._entered = None
        if self.ready:
            self._set_settled()
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

    def _classify(self, ctx: ServeContext, error: BaseException | None) -> bool:
        """Apply the outcome rules; return whether to take the restart path."""
        now = trio.current_time()
        uptime = now - self.run_started
        self.total_uptime += uptime
        self.running = False
        self.ready = False
        self.last_stop_time = now + ctx.wall_offset
        config = self.config
        if uptime >= config.restart_window:
            self._healthy_reset()
        stopped = self.cancelled
        # kept for the restart decision only; a stop's Cancelled (and the frames of
        # its traceback) must not outlive the attempt
        self._exit_error = None if stopped else error
        kind = classify(error, stopped=stopped)
        try:
            if kind is FAILURE:  # rule 5, the common case first
                assert error is not None
                self._record_error(ctx, error, now)
                self.consec_failures += 1
                self._exited(kind, error, uptime, _WARNING)
                if config.restart_policy is RestartPolicy.NEVER:
                    self.failed = True
                    self._failed("restart policy is never")
                    return False
                self.waiting = True  # the restart path: CRASHING, never a passing ERROR
                return True
            if kind is STOPPED:  # rule 2
                self.success_count += 1
                self._exited(kind, error, uptime, _DEBUG)
                return False
            if kind is CLEAN:  # rule 6
                self.success_count += 1
                self.consec_failures = 0
                self._exited(kind, None, uptime, _INFO)
                if config.restart_policy is RestartPolicy.ALWAYS:
                    self.waiting = True
                    return True
                self.completed = True
                return False
            assert error is not None  # the other outcomes come from an exception
            if kind is ESCAPE:  # rule 1: KeyboardInterrupt, SystemExit, ... tear down
                raise error
            if kind is NO_RESTART:  # rule 4, every leaf a bare DoNotRestart
                self.success_count += 1
                self.completed = True
                self._exited(kind, error, uptime, _INFO)
                return False
            self._record_error(ctx, error, now)
            self.failed = True
            if kind is FATAL:  # rule 3
                self._exited(kind, error, uptime, _ERROR)
                self._failed("fatal error")
                ctx.terminate(find_terminate(error))
            else:  # rule 4, with a cause or beside other errors
                self._exited(kind, error, uptime, _WARNING)
                self._failed("do not restart")
            return False
        finally:
            self.update_status()
            self._set_settled()

    def _record_error(self, ctx: ServeContext, error: BaseException, now: float) -> None:
        self.error_count += 1
        self.error = error
        self.last_error = error_message(error)
        self.last_error_time = now + ctx.wall_offset

    def _exited(
        self, kind: Outcome, error: BaseException | None, uptime: float, level: int
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

    def _give_up(self, why: str) -> bool:
        self.waiting = False
        self.failed = True
        self.update_status()
        self._failed(why)
        return False

    async def _backoff(self, ctx: ServeContext) -> bool:
        """The restart path; return whether to serve again."""
        config = self.config
        if config.max_restarts > 0 and self.restart_count >= config.max_restarts:
            return self._give_up(f"max_restarts={config.max_restarts} reached")
        now = trio.current_time()
        in_window = self.window.count(now, config.restart_window)
        self.window_restarts = in_window
        self.window_start = None if not in_window else self._wall(ctx, self.window.oldest())
        if config.max_restarts_in_window > 0 and in_window >= config.max_restarts_in_window:
            return self._give_up(
                f"{in_window} restarts within restart_window={config.restart_window:g}s"
            )
        tree = ctx.tree
        if not tree.note_restart(ctx, self, self._exit_error):
            return False  # the manager gave up: it is shutting down
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
        group = tree.siblings(self)
        if group:  # one-for-all / rest-for-one: the tree restarts everyone in order
            self.waiting = False
            self.group_pending = True
            ctx.nursery.start_soon(tree.group_restart, ctx, self, group, delay)
            return False
        generation = self.generation
        deadline = now + delay
        # A short delay gets a checkpoint first: it is often over by then, and a timed
        # wait costs more. A longer one parks on the manager's timer at once (a second
        # pass through the scheduler per restart would double the batch that other
        # tasks queue behind in a crash storm). A stop cancels the park.
        self._wait_cut = False
        if delay < _SHORT_DELAY or trio.current_time() >= deadline:
            await trio.lowlevel.checkpoint()  # every turn yields, even with no wait left
        if not self._wait_cut and trio.current_time() < deadline:
            await ctx.timer.sleep_until(deadline)
        self.waiting = False
        if self._wait_cut:
            return True  # start_service cut the wait short and reset the counters
        if ctx.stopping:
            return False  # the manager is shutting down: no restart follows, none is counted
        self.count_restart(ctx, grow=generation == self.generation)
        return True

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
        Runner._run.__code__,  # pyright: ignore[reportPrivateUsage]
        Runner._open.__code__,  # pyright: ignore[reportPrivateUsage]
        FunctionService.call.__code__,
        FunctionService.serve.__code__,
    )
)
