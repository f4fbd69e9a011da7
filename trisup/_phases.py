"""Each service's phase, folded from a manager's events.

A snapshot (`ServiceInfo.status` and ``.running``) gives a service's phase at
one moment; a stream of phase changes follows the events instead, so nothing
polls. `PhaseFold` follows them from a snapshot; `Phases` owns a subscription
and folds what it has buffered whenever asked, so its answer is exact at that
moment: the manager emits every event synchronously with the change it
describes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import final

import trio

from . import events as ev
from ._health import phase, phase_of
from ._manager import Manager
from ._status import ServiceInfo, ServiceStatus

__all__ = ["ACTIVE", "PhaseFold", "Phases"]

S = ServiceStatus

ACTIVE = frozenset({"running", "starting", "crashing"})
"""The phases in which an attempt runs."""


@final
class PhaseFold:
    """Follows each service's phase through its events."""

    __slots__ = ("_status", "_waiting")

    def __init__(self, infos: Iterable[ServiceInfo] = ()) -> None:
        self._status: dict[str, ServiceStatus] = {}
        self._waiting: dict[str, bool] = {}
        for info in infos:
            self.seed(info)

    def seed(self, info: ServiceInfo, known: str | None = None) -> str:
        """Start following *info*'s service from its snapshot; return its phase.

        *known* is its phase when the caller knows it better than the snapshot.
        """
        self._status[info.name] = info.status
        now = phase(info) if known is None else known
        self._waiting[info.name] = now == "backoff"
        return now

    def get(self, name: str) -> str | None:
        """The phase of *name*, or ``None`` if it is not followed."""
        status = self._status.get(name)
        return None if status is None else phase_of(status, self._waiting[name])

    def apply(self, event: ev.Event, info: ServiceInfo | None) -> str | None:
        """Fold *event* in; return its service's phase after it (``None`` if none).

        *info* is the service's current snapshot, used for a service not yet
        followed; a removed service's phase is ``"removed"``.
        """
        if not isinstance(event, ev.ServiceEvent):
            return None
        name = event.service
        if isinstance(event, ev.ServiceRemoved):
            self._status.pop(name, None)
            self._waiting.pop(name, None)
            return "removed"
        if isinstance(event, ev.ServiceAdded) or name not in self._status:
            return None if info is None else self.seed(info)
        if isinstance(event, ev.ServiceStatusChanged):
            self._status[name] = event.new
            if event.new is not S.RUNNING and event.new is not S.CRASHING:
                self._waiting[name] = False
        elif isinstance(event, ev.ServiceBackingOff):
            self._waiting[name] = True
        elif isinstance(event, ev.ServiceStarting | ev.ServiceRestarting | ev.ServiceReady):
            self._waiting[name] = False
        return phase_of(self._status[name], self._waiting[name])


OnEvent = Callable[[ev.Event, str | None], None]
OnReseed = Callable[[list[tuple[str, str]]], None]


def _ignore(*args: object) -> None:
    pass


@final
class Phases:
    """The phases of one manager's services, exact whenever read.

    `attach` a subscription of the manager, and pass every event taken from it
    to `take`. Every read first folds what the subscription has buffered
    (`sync`), so the owner's listeners see every event once, in order, whoever
    took it. A subscription that lost events is followed afresh from the
    services' info.

    Args:
        manager: the manager whose services to follow.
        on_event: called with each event and its service's new phase (``None``
            for a manager event).
        on_reseed: called with every service's phase when following starts
            afresh.
    """

    __slots__ = (
        "_changed",
        "_events",
        "_fold",
        "_generation",
        "_lost",
        "_on_event",
        "_on_reseed",
        "manager",
    )

    def __init__(
        self, manager: Manager, *, on_event: OnEvent = _ignore, on_reseed: OnReseed = _ignore
    ) -> None:
        self.manager = manager
        self._fold = PhaseFold()
        self._events: ev.Subscription | None = None
        self._lost = 0
        self._on_event = on_event
        self._on_reseed = on_reseed
        self._generation = 0
        self._changed: trio.Event | None = None

    @property
    def generation(self) -> int:
        """How many times the phases were folded or reseeded; for `wait_changed`."""
        return self._generation

    def _bump(self) -> None:
        self._generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_changed(self, since: int) -> None:
        """Wait until `generation` differs from *since* (at once if it does)."""
        while self._generation == since:
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    def attach(self, events: ev.Subscription) -> None:
        """Follow *events* from now on."""
        self._events = events
        self._lost = events.lost
        self._reseed()

    def detach(self) -> None:
        """Stop following (phases then come from the services' info alone)."""
        self._events = None

    def _reseed(self) -> None:
        self._fold = PhaseFold()
        infos = self.manager.get_services_info()
        self._on_reseed([(info.name, self._fold.seed(info)) for info in infos])
        self._bump()

    def take(self, event: ev.Event) -> None:
        """Fold in an event the owner took from the subscription."""
        if self._events is not None and self._events.lost != self._lost:
            self._lost = self._events.lost
            self._reseed()
        info = None
        if isinstance(event, ev.ServiceAdded) and self.manager.has(event.service):
            info = self.manager.get_service_info(event.service)
        self._on_event(event, self._fold.apply(event, info))
        self._bump()

    def sync(self) -> None:
        """Fold in every event the subscription has buffered."""
        events = self._events
        if events is not None:
            while (event := events.receive_nowait()) is not None:
                self.take(event)

    def phase(self, info: ServiceInfo) -> str:
        """The phase of the service *info* describes, as of now."""
        status = info.status
        if status is not S.RUNNING and status is not S.CRASHING:
            return str(status)
        self.sync()
        known = self._fold.get(info.name) if self._events is not None else None
        return known if known is not None else phase(info)

    def running(self, info: ServiceInfo) -> bool:
        """Whether an attempt of the service runs now."""
        return self.phase(info) in ACTIVE

    def ready(self, info: ServiceInfo) -> bool:
        """Whether the service is ready: running and ready, or completed."""
        now = self.phase(info)
        return now == "completed" or now == "running" or now == "crashing"

    def not_ready(self, infos: Iterable[ServiceInfo]) -> list[str]:
        """The names of the services meant to run that are not ready, in order."""
        return [i.name for i in infos if not i.stopped and not self.ready(i)]
