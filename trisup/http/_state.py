"""What the console remembers: the manager's state, each service's recent phases and events.

One tracker task per console subscribes to the events of the whole tree (the
manager and every manager nested in it, `Manager.subscribe_tree`) and folds them
into the manager's state (``serving``, ``stopping``, ``stopped``), a bounded
timeline of shown phases per service, and each service's last `RECENT` events,
kept as the event objects (formatted only when asked: a crash-looping service
emits thousands a second). A service is keyed by ``(group, name)``: its group
is ``""`` for the manager's own services, ``"jobs"`` for those of the manager
registered as service ``jobs``, ``"jobs/sub"`` deeper. A service's phase is never
inferred: `ShownPhases` follows ``ServicePhaseChanged`` (the phase) and
``ServiceStatusChanged`` (held or not) events.
"""

from __future__ import annotations

import time
from collections import deque
from typing import final

import trio

from .. import events as ev
from .._events import TreeSubscription
from .._health import shown, shown_phase
from .._manager import Manager
from .._status import Phase, ServiceInfo, ServiceStatus

__all__ = ["HISTORY", "MAX_POINTS", "RECENT", "ConsoleState", "Key", "ShownPhases"]

HISTORY = 900.0
"""How far back a timeline reaches, in seconds."""
MAX_POINTS = 512
"""The most phase changes kept per service."""
RECENT = 50
"""The most events kept per service."""

Key = tuple[str, str]
"""A service in the tree: ``(group, name)``."""


@final
class ShownPhases:
    """Each service's shown phase (`trisup._health.shown`), followed through its events.

    ``ServicePhaseChanged`` carries the phase, ``ServiceStatusChanged`` whether
    the service is held (its status is ``stopped`` exactly when it is held),
    ``ServiceAdded`` starts a service at ``idle`` and ``ServiceRemoved`` ends it.
    """

    __slots__ = ("_held", "_phase")

    def __init__(self) -> None:
        self._phase: dict[Key, Phase] = {}
        self._held: dict[Key, bool] = {}

    def follows(self, name: str, group: str = "") -> bool:
        """Whether *name* of *group* is followed."""
        return (group, name) in self._phase

    def current(self, name: str, group: str = "") -> str | None:
        """The shown phase of *name* of *group*, or ``None`` when it is not followed."""
        key = (group, name)
        phase = self._phase.get(key)
        return None if phase is None else shown(phase, self._held[key])

    def seed(self, info: ServiceInfo, group: str = "") -> str:
        """Follow *info*'s service (of *group*) from its snapshot; return its shown phase."""
        key = (group, info.name)
        self._phase[key] = info.phase
        self._held[key] = info.stopped
        return shown_phase(info)

    def apply(self, event: ev.Event, info: ServiceInfo | None, group: str = "") -> str | None:
        """Fold *event* in; return its service's shown phase after it (``None`` if none).

        *info* is the service's current snapshot (``None`` once unregistered),
        used to seed a service not followed yet; a removed service's phase is
        ``"removed"``.
        """
        if not isinstance(event, ev.ServiceEvent):
            return None
        key = (group, event.service)
        if isinstance(event, ev.ServiceRemoved):
            self._phase.pop(key, None)
            self._held.pop(key, None)
            return "removed"
        if isinstance(event, ev.ServiceAdded):
            # a service is added idle; whether it is held, only its info says
            self._phase[key] = Phase.IDLE
            self._held[key] = info is not None and info.stopped
        elif key not in self._phase:
            return None if info is None else self.seed(info, group)
        elif isinstance(event, ev.ServicePhaseChanged):
            self._phase[key] = event.new
        elif isinstance(event, ev.ServiceStatusChanged):
            self._held[key] = event.new is ServiceStatus.STOPPED
        return shown(self._phase[key], self._held[key])


@final
class ConsoleState:
    """The manager's state, the services' timelines and recent events, kept by `track`.

    Every read first folds the events the subscription has buffered (`sync`),
    so it is exact at that moment: each manager emits each event synchronously
    with the change it describes. A subscription that lost events is followed
    afresh from the services' info (the recent events kept stay).

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
        "_groups",
        "_lost",
        "_offset",
        "_phases",
        "_recent",
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
        self._events: TreeSubscription[Manager] | None = None
        self._lost = 0
        self._phases = ShownPhases()
        self._offset: float | None = None
        self._timelines: dict[Key, deque[tuple[float, str]]] = {}
        self._recent: dict[Key, deque[ev.ServiceEvent]] = {}
        self._groups: set[str] = set()  # the groups of the keys above

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

    def group(self, path: str) -> Manager | None:
        """The manager of group *path* (``""``: the console's manager), or ``None``."""
        events = self._events
        if events is not None:
            return events.source(path)
        return self.manager.groups().get(path)

    def groups(self) -> dict[str, Manager]:
        """Every group's manager by path, the console's manager first."""
        events = self._events
        return events.sources() if events is not None else self.manager.groups()

    def timelines(self) -> dict[Key, list[tuple[float, str]]]:
        """Each service's shown phases of the last `HISTORY` seconds, oldest first.

        The first point of a strip may be older: it gives the phase at the start.
        """
        self.sync()
        horizon = self.wall() - HISTORY
        out: dict[Key, list[tuple[float, str]]] = {}
        for key, points in self._timelines.items():
            older = [p for p in points if p[0] < horizon]
            out[key] = older[-1:] + [p for p in points if p[0] >= horizon]
        return out

    @property
    def tracking(self) -> bool:
        """Whether `track` follows the manager's events now (so `generation` moves)."""
        return self._events is not None

    def recent(self, group: str, name: str) -> list[ev.ServiceEvent]:
        """The service's last `RECENT` events, oldest first (none before the console ran)."""
        self.sync()
        return list(self._recent.get((group, name), ()))

    def current_state(self) -> str:
        """The manager's state, as of now."""
        self.sync()
        return self.manager_state

    def _record(self, key: Key, ts: float, now: str) -> None:
        points = self._timelines.get(key)
        if points is None:
            points = self._timelines[key] = deque(maxlen=MAX_POINTS)
            self._groups.add(key[0])
        if not points or points[-1][1] != now:
            points.append((ts, now))

    def _reseed(self) -> None:
        self.generation += 1
        self._phases = ShownPhases()
        ts = self.wall()
        keys: set[Key] = set()
        for path, manager in self.groups().items():
            for info in manager.get_services_info():
                key = (path, info.name)
                keys.add(key)
                self._record(key, ts, self._phases.seed(info, path))
        for table in (self._timelines, self._recent):
            for gone in [k for k in table if k not in keys]:
                del table[gone]
        self._groups = {k[0] for k in keys}

    def _forget_group(self, path: str) -> None:
        """Drop the services of group *path* and of the groups under it."""
        prefix = path + "/"
        for table in (self._timelines, self._recent):
            for gone in [k for k in table if k[0] == path or k[0].startswith(prefix)]:
                del table[gone]
        self._groups = {g for g in self._groups if g != path and not g.startswith(prefix)}

    def _take(self, path: str, event: ev.Event) -> None:
        """Fold in one event of group *path* taken from the subscription."""
        self.generation += 1
        events = self._events
        if events is not None and events.lost != self._lost:
            self._lost = events.lost
            self._reseed()
        if isinstance(event, ev.ServiceEvent):
            name = event.service
            key = (path, name)
            recent = self._recent.get(key)
            if recent is None:
                recent = self._recent[key] = deque(maxlen=RECENT)
                self._groups.add(path)
            recent.append(event)
            info = None
            if isinstance(event, ev.ServiceAdded) or not self._phases.follows(name, path):
                manager = self.group(path)
                info = manager.get_service_info(name) if manager and manager.has(name) else None
            now = self._phases.apply(event, info, path)
            if now == "removed":
                self._timelines.pop(key, None)
                self._recent.pop(key, None)
                child = f"{path}/{name}" if path else name
                if child in self._groups:  # a nested manager: its services go too
                    self._forget_group(child)
            elif now is not None:
                self._record(key, self.wall(event.time), now)
        elif path:
            pass  # a nested manager's own state is its row's phase in its parent group
        elif isinstance(event, ev.ManagerStarted):
            self.manager_state = "serving"
        elif isinstance(event, ev.ManagerStopping):
            self.manager_state = "stopping"
        elif isinstance(event, ev.ManagerStopped):
            self.manager_state = "stopped"

    def sync(self) -> None:
        """Fold in every event the subscription has buffered."""
        events = self._events
        if events is not None:
            while (item := events.receive_nowait()) is not None:
                self._take(*item)

    async def track(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the tree's events until cancelled; ready once subscribed."""
        async with self.manager.subscribe_tree(max_buffer=4096) as events:
            self._events = events
            self._lost = events.lost
            self._reseed()
            try:
                task_status.started()
                while True:
                    self._take(*await events.receive())
            finally:
                self._events = None
