"""What the manager and the tree may ask of a service: start, stop, restart, delete, reset.

A request records itself on the service's state (``held``, ``deleting``, the next
life) and cancels or wakes the task; it never decides what the instance does
next. The task decides that, in `Runner._go_on`, from what the fields say when
the instance's life ends: so the latest request wins, and a delete wins over all.
"""

from __future__ import annotations

import trio
from trio_util import AsyncValue

from ._context import ServeContext
from ._lifecycle import (
    BACKOFF,
    FAILED,
    GROUP_WAIT,
    IDLE,
    LIVE,
    RUNNING,
    STARTING,
    STOPPING,
    WAITING_DEPS,
)
from ._state import (
    AGAIN,
    EXIT,
    FRESH,
    GROUP,
    ServiceState,
)
from ._status import RestartPolicy

__all__ = ["Requests"]

_UNDERWAY = frozenset({STARTING, RUNNING, WAITING_DEPS})


class Requests(ServiceState):
    """The requests a runner takes; see the module docstring."""

    __slots__ = ()

    def spawn(self, ctx: ServeContext) -> None:
        """Start the runner task in the manager's nursery (no task may live)."""
        assert self.phase not in LIVE, self.name  # never two tasks
        self.ctx = ctx
        self.stop_asked = False
        self._again = EXIT
        self._move(STARTING)  # a task lives from now on
        ctx.nursery.start_soon(self._run, ctx, name=f"trisup:{self.name}")

    async def _run(self, ctx: ServeContext) -> None:
        """The runner task (`Runner._run`)."""
        raise NotImplementedError

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
        was_grouped = self.group is not None
        self.group = None  # a manual start takes it out of a pending group restart
        if ctx is None:  # only recorded: the next serve starts it
            self._again = EXIT
            if not alive:
                self._move(IDLE)
            else:
                self._publish()
            return False
        if not alive:
            self.spawn(ctx)
        elif self.stop_asked:
            self._again = AGAIN  # the instance is exiting: a new one follows in this task
        elif phase is BACKOFF:
            self._wait_cut = True
            if self.ctx is not None and self.task is not None:
                self.ctx.timer.wake(self.task)  # unless still in the checkpoint that begins it
        elif phase is GROUP_WAIT and was_grouped:
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
            self.group = None  # out of a pending group restart: it stays down
        if delete:
            self.deleting = True
        if hold:
            self.held = True
        if hold or delete:
            self._again = EXIT  # the shutdown keeps a restart's pending start (recorded)
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

    def request_restart(self, *, again: int = AGAIN, fresh: bool = True) -> None:
        """Stop the instance and start the next one in the same task.

        *fresh*: a manual restart (counters cleared once the old instance has
        exited: a restart whose stop times out starts and clears nothing);
        otherwise a dependency or group restart that keeps them.
        """
        self.seq += 1
        if fresh:
            self.held = False
            again = FRESH
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
            self.request_restart(again=GROUP, fresh=False)

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

    def healthy(self, attempt: int) -> None:
        """The run of *attempt* reached ``restart_window`` of uptime."""
        if self.run_started is not None and attempt == self.attempt:
            self._healthy_reset()
            self._publish()
