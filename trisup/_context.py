"""What one ``serve`` shares with its runners, and the runner a task belongs to."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ._clock import trio_now
from ._config import ServiceConfig
from ._timer import DeadlineTimer
from ._tree import Tree

__all__ = [
    "Running",
    "ServeContext",
    "clear_current",
    "runner_of_current_task",
    "set_current",
    "trio_now",
    "wall_now",
]


def wall_now(ctx: ServeContext | None) -> float:
    """The wall-clock POSIX time now: from the Trio clock while *ctx* serves (so it follows
    a `MockClock`), else from the system clock."""
    now = trio_now()
    if ctx is None or now is None:
        return time.time()
    return ctx.wall(now)


@dataclass(slots=True, eq=False)
class ServeContext:
    """What runners share with their manager for one ``serve``."""

    nursery: trio.Nursery
    timer: DeadlineTimer
    wall_offset: float
    rng: random.Random
    tree: Tree
    terminated: trio.Event = field(default_factory=trio.Event)
    fatal: BaseException | None = None
    stopping: bool = False
    manager: object = None  # the Manager serving (for current_service().manager)
    startup: trio.CancelScope | None = None

    def wall(self, now: float) -> float:
        """The wall-clock POSIX time of trio time *now*."""
        return now + self.wall_offset

    def terminate(self, error: BaseException | None) -> None:
        """End this serve: keep the first error, wake serve, cut its startup short."""
        if self.fatal is None:
            self.fatal = error
        self.terminated.set()
        if self.startup is not None:  # do not wait for readiness or hooks any longer
            self.startup.cancel(reason="trisup: terminated")


# The runner of each live runner task. A lookup walks up the caller's task tree, so
# the tasks a service starts in its own nurseries belong to it too. (A context
# variable would do the same at the cost of two tracked objects per service task:
# enough, at 10,000 services, to set off one more full collection during startup.)
_by_task: dict[trio.lowlevel.Task, Running] = {}


class Running(Protocol):
    """What `current_service` needs of a runner (`Runner` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def ctx(self) -> ServeContext | None: ...

    @property
    def config(self) -> ServiceConfig: ...

    def stop_event(self) -> trio.Event: ...


def set_current(runner: Running) -> None:
    """Mark the calling task (and the tasks below it) as running *runner*."""
    _by_task[trio.lowlevel.current_task()] = runner


def clear_current() -> None:
    """Undo `set_current` for the calling task."""
    _by_task.pop(trio.lowlevel.current_task(), None)


def runner_of_current_task() -> Running | None:
    """The runner whose task the calling task is, or was started by (``None``: no service's)."""
    try:
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
    except RuntimeError:
        return None
    while task is not None:
        runner = _by_task.get(task)
        if runner is not None:
            return runner
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return None
