"""The state of one supervised service, and the one place its phase changes.

`ServiceState` holds what a runner knows of its service (counters, errors, the
phase and the requests made of it) and the lifecycle's writer: `_move` checks
each move against the table of `_lifecycle.py`, and `_publish` tells every
waiter (``wait_status``, a verb's wait, dependents) at once. `Requests` adds
what the manager and the tree may ask of a service, `Runner` the task that
decides and carries them out; the three are one object, in three modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Self

import trio
from trio_util import AsyncValue

from ._backoff import RestartWindow, next_delay
from ._config import ServiceConfig
from ._context import ServeContext, trio_now
from ._errors import error_message
from ._events import (
    EventHub,
    ServiceExited,
    ServiceFailed,
    ServicePhaseChanged,
    ServiceRemoved,
    ServiceRestarting,
    ServiceStatusChanged,
)
from ._lifecycle import (
    FAILED,
    IDLE,
    LIVE,
    MOVES,
    REMOVED,
    RUNNING,
    STARTING,
    WAITING_DEPS,
    Phase,
    status_of,
)
from ._outcome import (
    AttemptOutcome,
)
from ._service import Service, accepts_task_status
from ._status import ServiceStatus

__all__ = [
    "AGAIN",
    "BACKOFF_FIRST",
    "DEBUG",
    "ERROR",
    "EXIT",
    "FRESH",
    "GROUP",
    "INFO",
    "WARNING",
    "ServiceState",
]

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
# how the task's next life begins (EXIT: there is none); FRESH: AGAIN, counters cleared
EXIT, AGAIN, GROUP, BACKOFF_FIRST, FRESH = 0, 1, 2, 3, 4


class ServiceState:
    """What a runner knows of its service; the lifecycle's one writer."""

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
        "backoff_deadline",
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
        registry: MutableMapping[str, Self],
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
        self.start_count: int = 0
        self.error_count: int = 0
        self.success_count: int = 0
        self.total_uptime: float = 0.0
        # counters a manual start, restart or reset clears
        self.restart_count: int = 0
        self.consec_failures: int = 0
        self.current_delay = config.restart_delay
        self.window = RestartWindow()
        self.window_restarts: int = 0
        self.window_start: float | None = None
        self.generation: int = 0
        # the last error and times (wall-clock POSIX seconds)
        self.last_error: str = ""
        self.last_error_time: float | None = None
        self.error: BaseException | None = None
        self.last_start_time: float | None = None
        self.last_stop_time: float | None = None
        self._last_logged: str | None = None
        self._exit_error: BaseException | None = None
        # the lifecycle (written by _move) and the requests made of it
        self.phase: Phase = IDLE
        self.held: bool = not config.auto_start  # stopped by hand
        self.deleting: bool = False
        self.stop_asked = False  # a stop of the current life was requested
        self._again: int = EXIT
        self.seq: int = 0  # counts requests: a later one supersedes an earlier one's wait
        self.group: object | None = None  # the group restart that holds it in GROUP_WAIT
        # the task and its current life and attempt
        self.ctx: ServeContext | None = None
        self.task: trio.lowlevel.Task | None = None
        self.scope: trio.CancelScope | None = None
        self.life: int = 0
        self.attempt: int = 0
        self.ready: bool = False
        self.run_started: float | None = None  # set while an attempt is in serve
        self.backoff_deadline: float = 0.0  # when the BACKOFF wait ends (read only in BACKOFF)
        self._wait_cut: bool = False
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
                    DEBUG,
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
                    DEBUG,
                )

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until *done()* holds, asked again after every change (no checkpoint if it holds)."""
        while not done():
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def not_spawning(self) -> bool:
        """Whether the service is not spawned-but-not-yet-in-``serve`` (a plain one is
        ``running`` from the moment it enters)."""
        return self.phase is not STARTING or self.run_started is not None

    def entered_since(self, attempt: int) -> bool:
        """Whether a start made at *attempt* entered ``serve``, waits on a dependency or ended."""
        phase = self.phase
        return phase not in LIVE or self.attempt > attempt or phase is WAITING_DEPS

    def settled_since(self, attempt: int) -> bool:
        """Whether a start made at *attempt* is ready, has ended its attempt, waits or ended."""
        phase = self.phase
        if phase not in LIVE or phase is WAITING_DEPS:
            return True
        # a second attempt began: the first one has been classified (a RestartNow, say)
        return self.attempt > attempt + 1 or (self.attempt > attempt and phase is not STARTING)

    def ended_since(self, life: int) -> bool:
        """Whether the instance of *life* has exited (the task ended or began another life)."""
        return self.life != life or self.phase not in LIVE

    @property
    def alive(self) -> bool:
        """Whether the service's runner task lives."""
        return self.phase in LIVE

    def exited(self) -> bool:
        """Whether no task of the service lives."""
        return self.phase not in LIVE

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
        if self.hub.wanted(INFO):
            self.hub.emit(
                ServiceRemoved(manager=self.hub.manager, time=trio_now(), service=self.name),
                INFO,
            )

    def _record_error(self, ctx: ServeContext, error: BaseException, now: float) -> None:
        self.error_count += 1
        self.error = error
        self.last_error = error_message(error)
        self.last_error_time = now + ctx.wall_offset

    def _exited(
        self,
        kind: AttemptOutcome,
        error: BaseException | None,
        uptime: float,
        level: int,
        *,
        trace: bool = True,
    ) -> None:
        if error is not None and level > DEBUG:
            text = self.last_error
            if text == self._last_logged:
                level = DEBUG  # the seed's de-duplication of identical failures
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
                exc_info=error if level > DEBUG and trace else None,
            )

    def _failed(self, reason: str) -> None:
        hub = self.hub
        if hub.wanted(ERROR):
            hub.emit(
                ServiceFailed(
                    manager=hub.manager, time=trio_now(), service=self.name, reason=reason
                ),
                ERROR,
            )

    def count_restart(self, *, grow: bool = True) -> None:
        """Count an automatic restart: grow the delay, record it in the window.

        A reset during the wait (*grow* false) keeps the fresh delay.
        """
        ctx = self.ctx
        assert ctx is not None  # only a serving runner restarts
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
        if hub.wanted(DEBUG):
            hub.emit(
                ServiceRestarting(
                    manager=hub.manager,
                    time=now,
                    service=self.name,
                    restart_count=self.restart_count,
                ),
                DEBUG,
            )

    @staticmethod
    def _wall(ctx: ServeContext, t: float | None) -> float | None:
        return None if t is None else t + ctx.wall_offset
