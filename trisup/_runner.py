"""A service's task: the one place that decides what its instance does next.

`Runner` is the third layer of a runner (`ServiceState` holds the state and
writes the phase, `Requests` records what the manager and the tree ask). The
task decides, in `Runner._go_on`, what follows the end of each *life* (from a
start to the stop that ends it): exit, or a new life in the same task (a
restart, by hand, of a group or of dependents), so two instances of one service
never overlap and the latest request wins. Within a life it runs the attempts
(each in the task's own frame, inside a shielded cancel scope that only the
manager cancels), applies the outcome rules (`_outcome.py`) and takes the restart
path: give up, park in a group restart, or wait out the backoff parked on the
manager's timer (`_timer.py`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

import trio

from ._backoff import give_up_reason, jittered
from ._context import ServeContext, clear_current, set_current, trio_now
from ._errors import ServiceStartTimeout, find_terminate
from ._events import (
    ServiceBackingOff,
    ServiceReady,
    ServiceStarting,
    ServiceStopDone,
)
from ._lifecycle import (
    BACKOFF,
    COMPLETED,
    FAILED,
    GROUP_WAIT,
    IDLE,
    LIVE,
    RUNNING,
    STARTING,
    WAITING_DEPS,
)
from ._outcome import (
    CLEAN,
    ESCAPE,
    FAILURE,
    FATAL,
    NO_RESTART,
    RESTART_NOW,
    STOPPED,
    classify,
    escapes,
)
from ._requests import Requests
from ._service import FunctionService
from ._state import (
    AGAIN,
    BACKOFF_FIRST,
    DEBUG,
    ERROR,
    EXIT,
    FRESH,
    GROUP,
    INFO,
    WARNING,
)
from ._status import RestartPolicy

__all__ = ["Runner"]

_SHORT_DELAY = 0.001  # seconds: a shorter wait is a checkpoint, not a park on the timer
_QUICK_RESTART_NOW = 1.0  # seconds: a RestartNow sooner than this waits restart_delay first
# what an attempt's outcome asks for, and what the restart path decided
_END, _RESTART, _NOW, _NEXT, _GROUPED = 0, 1, 2, 3, 4
_GIVE_UP, _JOIN_GROUP = -1.0, -2.0  # what the restart path returns instead of a delay


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


class Runner(Requests):
    """One registered service: its state, the requests it takes, and its task."""

    __slots__ = ()

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
        if self.hub.wanted(DEBUG):
            self.hub.emit(
                ServiceReady(manager=self.hub.manager, time=trio_now(), service=self.name), DEBUG
            )

    def _go_on(self, ctx: ServeContext) -> int:
        """At the end of a life: what the task does next (the one place that decides).

        The latest request is what the fields say now: a delete, a hold or the
        shutdown end the task; a restart (by hand, of a group or of dependents)
        begins the next life in this task.
        """
        again = self._again
        if self.deleting or self.held or not self.stop_asked:
            return EXIT
        if again == FRESH:  # the restart's stop is done: its start clears the counters,
            self.reset_counters()  # also when the shutdown only lets it record the start
            again = AGAIN
        return EXIT if ctx.stopping else again

    async def _run(self, ctx: ServeContext) -> None:
        self.task = trio.lowlevel.current_task()
        set_current(self)
        begin = AGAIN  # how the next life begins: an attempt, a group park, or the backoff
        first = self.attempt  # no attempt since: a stop stops nothing that ran
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
                    begin = BACKOFF_FIRST  # the start timeout spent the scope: a fresh one
                    continue
                begin = self._go_on(ctx)
                if begin == EXIT:
                    break
                self.stop_asked = False
                self._again = EXIT
                self._stop_event = None
                self._publish()  # a new life: the stop's waiters may return
        finally:
            if self.stop_asked and self.attempt > first and self.hub.wanted(INFO):
                self.hub.emit(
                    ServiceStopDone(manager=self.hub.manager, time=trio_now(), service=self.name),
                    INFO,
                )
            clear_current()
            self.task = None
            self.scope = None
            self.run_started = None
            self.ready = False
            self.group = None
            self._go = None
            self.stop_asked = False
            self._again = EXIT
            if self.deleting:
                self._remove()
            elif self.phase in LIVE:
                self._move(IDLE)
            else:
                self._publish()

    async def _life(self, ctx: ServeContext, scope: trio.CancelScope, begin: int) -> bool:
        """Attempts and backoff waits until a stop or an end; whether to resume at the backoff."""
        deps = begin != BACKOFF_FIRST
        if begin == GROUP:
            await self._park_in_group()
        elif begin == BACKOFF_FIRST:
            decided = await self._after(ctx, False, 0.0)
            if decided == _END:
                return False
            deps = decided == _GROUPED
        while True:
            if self.stop_asked or ctx.stopping:
                return False
            if deps and self.depends_on:
                await self._wait_for_dependencies(ctx)
                if self.stop_asked or ctx.stopping:
                    return False  # stopped as its dependencies became ready
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
            decided = await self._after(ctx, how == _NOW, uptime)
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
        if hub.wanted(DEBUG):
            hub.emit(
                ServiceStarting(
                    manager=hub.manager, time=now, service=self.name, start_count=self.start_count
                ),
                DEBUG,
            )
            if ready:
                hub.emit(ServiceReady(manager=hub.manager, time=now, service=self.name), DEBUG)
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
            self._exited(kind, error, uptime, WARNING)
            if config.restart_policy is RestartPolicy.NEVER:
                self._move(FAILED)
                self._failed("restart policy is never")
                return _END
            return _RESTART
        if kind is STOPPED:  # rule 2: the stop's Cancelled (or its group) is no error
            self.success_count += 1
            self._exited(kind, None, uptime, DEBUG)
            return _END
        if kind is CLEAN:  # rule 6
            self.success_count += 1
            self.consec_failures = 0
            self._exited(kind, None, uptime, INFO)
            if config.restart_policy is RestartPolicy.ALWAYS:
                return _RESTART
            self._move(COMPLETED)
            return _END
        assert error is not None  # the other outcomes come from an exception
        if kind is RESTART_NOW:  # the service asked for it: not a failure, no backoff
            self._exited(kind, None, uptime, INFO)
            return _NOW
        if kind is ESCAPE:  # rule 1: KeyboardInterrupt, SystemExit, ... tear down
            raise error
        if kind is NO_RESTART:  # rule 4, every leaf a bare DoNotRestart: asked for, no trace
            self.success_count += 1
            self._exited(kind, error, uptime, INFO, trace=False)
            self._move(COMPLETED)
            return _END
        self._record_error(ctx, error, now)
        self._move(FAILED)
        if kind is FATAL:  # rule 3
            self._exited(kind, error, uptime, ERROR)
            self._failed(f"fatal error: {self.last_error}")
            ctx.terminate(find_terminate(error))
        else:  # rule 4, with a cause or beside other errors
            self._exited(kind, error, uptime, WARNING)
            self._failed(f"not restarted (no_restart): {self.last_error}")
        return _END

    def _restart_path(self, ctx: ServeContext, *, restart_now: bool, uptime: float) -> float:
        """The restart path: the delay to wait, or `_GIVE_UP` or `_JOIN_GROUP`."""
        config = self.config
        if restart_now:  # the service's own request: no budget, no growth, never a spin
            return config.restart_delay if uptime < _QUICK_RESTART_NOW else 0.0
        tree = ctx.tree
        if tree.groups:
            group = tree.stopping_group(self)
            if group is not None:  # it died while a group restart stops its group: part of it
                self.group = group
                return _JOIN_GROUP
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
            return _GIVE_UP
        if not tree.note_restart(ctx, self, self._exit_error):
            return _GIVE_UP  # the manager gave up: it is shutting down
        delay = jittered(self.current_delay, config.jitter, ctx.rng)
        hub = self.hub
        if hub.wanted(INFO) and not ctx.stopping:  # the shutdown restarts nothing: say nothing
            hub.emit(
                ServiceBackingOff(manager=hub.manager, time=now, service=self.name, delay=delay),
                INFO,
            )
        if tree.has_dependencies:
            dependents = tree.dependents(self)
            if dependents:
                ctx.nursery.start_soon(tree.restart_dependents, ctx, dependents)
        group = tree.start_group_restart(ctx, self, delay)
        if group is not None:  # one-for-all / rest-for-one: the tree restarts everyone in order
            self.group = group
            return _JOIN_GROUP
        return delay

    async def _after(self, ctx: ServeContext, restart_now: bool, uptime: float) -> int:
        """Take the restart path: give up, park in the group restart, or wait in ``BACKOFF``.

        A manual start cuts the wait short (no restart counted then).
        """
        delay = self._restart_path(ctx, restart_now=restart_now, uptime=uptime)
        if delay < 0:
            if delay == _GIVE_UP:
                return _END
            await self._park_in_group()
            return _GROUPED
        count = not restart_now
        generation = self.generation
        deadline = trio.current_time() + delay
        self._wait_cut = False
        self.backoff_deadline = deadline
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
            self.count_restart(grow=generation == self.generation)
        return _NEXT


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
