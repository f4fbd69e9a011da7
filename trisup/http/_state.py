"""What the console remembers: the manager's state and each service's recent phases.

One tracker task per console subscribes to the manager's events and folds them
into the manager's state (``serving``, ``stopping``, ``stopped``) and a bounded
timeline of shown phases per service, from which the page draws its strips. A
service's phase is never inferred: `ShownPhases` follows ``ServicePhaseChanged``
(the phase) and ``ServiceStatusChanged`` (held or not) events.
"""

from __future__ import annotations

import time
from collections import deque
from typing import final

import trio

from .. import events as ev
from .._health import shown, shown_phase
from .._manager import Manager
from .._status import Phase, ServiceInfo, ServiceStatus

__all__ = ["HISTORY", "MAX_POINTS", "ConsoleState", "ShownPhases"]

HISTORY = 900.0
"""How far back a timeline reaches, in seconds."""
MAX_POINTS = 512
"""The most phase changes kept per service."""


@final
class ShownPhases:
    """Each service's shown phase (`trisup._health.shown`), followed through its events.

    ``ServicePhaseChanged`` carries the phase, ``ServiceStatusChanged`` whether
    the service is held (its status is ``stopped`` exactly when it is held),
    ``ServiceAdded`` starts a service at ``idle`` and ``ServiceRemoved`` ends it.
    """

    __slots__ = ("_held", "_phase")

    def __init__(self) -> None:
        self._phase: dict[str, Phase] = {}
        self._held: dict[str, bool] = {}

    def follows(self, name: str) -> bool:
        """Whether *name* is followed."""
        return name in self._phase

    def seed(self, info: ServiceInfo) -> str:
        """Follow *info*'s service from its snapshot; return its shown phase."""
        self._phase[info.name] = info.phase
        self._held[info.name] = info.stopped
        return shown_phase(info)

    def apply(self, event: ev.Event, info: ServiceInfo | None) -> str | None:
        """Fold *event* in; return its service's shown phase after it (``None`` if none).

        *info* is the service's current snapshot (``None`` once unregistered),
        used to seed a service not followed yet; a removed service's phase is
        ``"removed"``.
        """
        if not isinstance(event, ev.ServiceEvent):
            return None
        name = event.service
        if isinstance(event, ev.ServiceRemoved):
            self._phase.pop(name, None)
            self._held.pop(name, None)
            return "removed"
        if isinstance(event, ev.ServiceAdded):
            # a service is added idle; whether it is held, only its info says
            self._phase[name] = Phase.IDLE
            self._held[name] = info is not None and info.stopped
        elif name not in self._phase:
            return None if info is None else self.seed(info)
        elif isinstance(event, ev.ServicePhaseChanged):
            self._phase[name] = event.new
        elif isinstance(event, ev.ServiceStatusChanged):
            self._held[name] = event.new is ServiceStatus.STOPPED
        return shown(self._phase[name], self._held[name])


@final
class ConsoleState:
    """The manager's state and the services' timelines, kept by `track`.

    Every read first folds the events the subscription has buffered (`sync`),
    so it is exact at that moment: the manager emits each event synchronously
    with the change it describes. A subscription that lost events is followed
    afresh from the services' info.

    Attributes:
        manager_state: ``"serving"``, ``"stopping"`` or ``"stopped"``. The console
            runs inside the tree it watches, so it starts out ``"serving"``.
        streams: how many event streams are open.
        closing: set when the console begins to stop.
        generation: how many events have been folded in (and fresh starts from
            the services' info); a body rendered at one generation is current
            while it stays the same (`trisup.http._render`).
    """

    __slots__ = (
        "_events",
        "_lost",
        "_offset",
        "_phases",
        "_timelines",
        "closing",
        "generation",
        "manager",
        "manager_state",
        "streams",
    )

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.manager_state = "serving"
        self.streams = 0
        self.closing = trio.Event()
        self.generation = 0
        self._events: ev.Subscription | None = None
        self._lost = 0
        self._phases = ShownPhases()
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
        """Each service's shown phases of the last `HISTORY` seconds, oldest first.

        The first point of a strip may be older: it gives the phase at the start.
        """
        self.sync()
        horizon = self.wall() - HISTORY
        out: dict[str, list[tuple[float, str]]] = {}
        for name, points in self._timelines.items():
            older = [p for p in points if p[0] < horizon]
            out[name] = older[-1:] + [p for p in points if p[0] >= horizon]
        return out

    @property
    def tracking(self) -> bool:
        """Whether `track` follows the manager's events now (so `generation` moves)."""
        return self._events is not None

    def current_state(self) -> str:
        """The manager's state, as of now."""
        self.sync()
        return self.manager_state

    def _record(self, name: str, ts: float, now: str) -> None:
        points = self._timelines.get(name)
        if points is None:
            points = self._timelines[name] = deque(maxlen=MAX_POINTS)
        if not points or points[-1][1] != now:
            points.append((ts, now))

    def _reseed(self) -> None:
        self.generation += 1
        self._phases = ShownPhases()
        ts = self.wall()
        infos = self.manager.get_services_info()
        for info in infos:
            self._record(info.name, ts, self._phases.seed(info))
        names = {info.name for info in infos}
        for gone in [n for n in self._timelines if n not in names]:
            del self._timelines[gone]

    def _take(self, event: ev.Event) -> None:
        """Fold in one event taken from the subscription."""
        self.generation += 1
        events = self._events
        if events is not None and events.lost != self._lost:
            self._lost = events.lost
            self._reseed()
        if isinstance(event, ev.ManagerStarted):
            self.manager_state = "serving"
        elif isinstance(event, ev.ManagerStopping):
            self.manager_state = "stopping"
        elif isinstance(event, ev.ManagerStopped):
            self.manager_state = "stopped"
        elif isinstance(event, ev.ServiceEvent):
            name = event.service
            info = None
            if isinstance(event, ev.ServiceAdded) or not self._phases.follows(name):
                manager = self.manager
                info = manager.get_service_info(name) if manager.has(name) else None
            now = self._phases.apply(event, info)
            if now == "removed":
                self._timelines.pop(name, None)
            elif now is not None:
                self._record(name, self.wall(event.time), now)

    def sync(self) -> None:
        """Fold in every event the subscription has buffered."""
        events = self._events
        if events is not None:
            while (event := events.receive_nowait()) is not None:
                self._take(event)

    async def track(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the manager's events until cancelled; ready once subscribed."""
        async with self.manager.subscribe(max_buffer=4096) as events:
            self._events = events
            self._lost = events.lost
            self._reseed()
            try:
                task_status.started()
                async for event in events:
                    self._take(event)
            finally:
                self._events = None
