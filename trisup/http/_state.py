"""What the console remembers: the manager's state and each service's recent phases.

One tracker task per console subscribes to the manager's events and folds them
(through `trisup._phases.Phases`) into the manager's state (``serving``,
``stopping``, ``stopped``), each service's exact phase, and a bounded timeline of
phases per service, from which the page draws its strips.
"""

from __future__ import annotations

import time
from collections import deque
from typing import final

import trio

from .. import events as ev
from .._manager import Manager
from .._phases import Phases

__all__ = ["HISTORY", "MAX_POINTS", "ConsoleState"]

HISTORY = 900.0
"""How far back a timeline reaches, in seconds."""
MAX_POINTS = 512
"""The most phase changes kept per service."""


@final
class ConsoleState:
    """The manager's state, the services' phases and timelines, kept by `track`.

    Attributes:
        manager_state: ``"serving"``, ``"stopping"`` or ``"stopped"``. The console
            runs inside the tree it watches, so it starts out ``"serving"``.
        phases: each service's phase, exact when read.
        streams: how many event streams are open.
        closing: set when the console begins to stop.
    """

    __slots__ = (
        "_offset",
        "_timelines",
        "closing",
        "manager",
        "manager_state",
        "phases",
        "streams",
    )

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.manager_state = "serving"
        self.streams = 0
        self.closing = trio.Event()
        self.phases = Phases(manager, on_event=self._on_event, on_reseed=self._on_reseed)
        self._offset: float | None = None
        self._timelines: dict[str, deque[tuple[float, str]]] = {}

    def begin(self) -> None:
        """Start afresh for a new run of the console (a new clock, a new closing event)."""
        self.manager_state = "serving"
        self.closing = trio.Event()
        self._offset = None

    def wall(self, t: float | None = None) -> float:
        """The wall-clock time (POSIX seconds) of Trio time *t* (default: now)."""
        now = trio.current_time()
        if self._offset is None:
            self._offset = time.time() - now
        return (now if t is None else t) + self._offset

    def timelines(self) -> dict[str, list[tuple[float, str]]]:
        """Each service's phase changes of the last `HISTORY` seconds, oldest first.

        The first point of a strip may be older: it gives the phase at the start.
        """
        self.phases.sync()
        horizon = self.wall() - HISTORY
        out: dict[str, list[tuple[float, str]]] = {}
        for name, points in self._timelines.items():
            older = [p for p in points if p[0] < horizon]
            out[name] = older[-1:] + [p for p in points if p[0] >= horizon]
        return out

    def _record(self, name: str, ts: float, now: str) -> None:
        points = self._timelines.get(name)
        if points is None:
            points = self._timelines[name] = deque(maxlen=MAX_POINTS)
        if not points or points[-1][1] != now:
            points.append((ts, now))

    def _on_reseed(self, phases: list[tuple[str, str]]) -> None:
        ts = self.wall()
        for name, now in phases:
            self._record(name, ts, now)
        names = {name for name, _ in phases}
        for gone in [n for n in self._timelines if n not in names]:
            del self._timelines[gone]

    def _on_event(self, event: ev.Event, now: str | None) -> None:
        if isinstance(event, ev.ManagerStarted):
            self.manager_state = "serving"
        elif isinstance(event, ev.ManagerStopping):
            self.manager_state = "stopping"
        elif isinstance(event, ev.ManagerStopped):
            self.manager_state = "stopped"
        elif isinstance(event, ev.ServiceEvent):
            if now == "removed":
                self._timelines.pop(event.service, None)
            elif now is not None:
                self._record(event.service, self.wall(event.time), now)

    def current_state(self) -> str:
        """The manager's state, as of now."""
        self.phases.sync()
        return self.manager_state

    async def track(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the manager's events until cancelled; ready once subscribed."""
        async with self.manager.subscribe(max_buffer=4096) as events:
            self.phases.attach(events)
            try:
                task_status.started()
                async for event in events:
                    self.phases.take(event)
            finally:
                self.phases.detach()
