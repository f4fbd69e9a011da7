"""Typed events for every transition, the per-manager hub, and subscriptions.

Every transition a manager or a runner goes through is one frozen event. The hub
builds an event only when someone listens: a subscriber, or the ``trisup`` logger at
the event's level. trisup's own log lines are made from the same events, so what a
subscriber sees and what the log says never disagree.

A subscription holds a bounded buffer; when it is full the oldest event is dropped
and counted in `Subscription.lost`, so a slow subscriber never blocks the manager.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import ClassVar, Generic, TypeVar, final

import trio

from ._clock import trio_now
from ._errors import error_message, error_text, safe_repr, type_name
from ._status import Phase, ServiceStatus

__all__ = [
    "Event",
    "EventHub",
    "ManagerGaveUp",
    "ManagerStarted",
    "ManagerStopped",
    "ManagerStopping",
    "ServiceAdded",
    "ServiceBackingOff",
    "ServiceEvent",
    "ServiceExited",
    "ServiceFailed",
    "ServicePhaseChanged",
    "ServiceReady",
    "ServiceRemoved",
    "ServiceRestarting",
    "ServiceStarting",
    "ServiceStatusChanged",
    "ServiceStopDone",
    "ServiceStopTimedOut",
    "Subscription",
    "TreeSubscription",
]

logger = logging.getLogger("trisup")
status_logger = logging.getLogger("trisup.status")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened in a manager.

    Attributes:
        manager: the manager's name.
        time: ``trio.current_time()`` when it happened, or ``None`` outside a run.
    """

    kind: ClassVar[str] = "event"
    manager: str
    time: float | None

    def message(self) -> str:
        """A one-line description, as logged."""
        return self.kind

    def extra(self) -> dict[str, object]:
        """The event as logging ``extra`` (``event`` is the kind).

        An exception gives its message, and its type under the field's name with
        ``_type``: ``error="/etc/x" error_type="FileNotFoundError"``.
        """
        data: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, BaseException):
                data[f.name] = error_message(value)
                data[f"{f.name}_type"] = type_name(value)
            else:
                data[f.name] = value
        data.pop("time", None)
        data["event"] = self.kind
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEvent(Event):
    """An event of one service; ``service`` is its name."""

    service: str


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAdded(ServiceEvent):
    """The service was registered."""

    kind: ClassVar[str] = "added"

    def message(self) -> str:
        return f"service {self.service} added"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStarting(ServiceEvent):
    """An attempt entered ``serve``; ``start_count`` counts it."""

    kind: ClassVar[str] = "starting"
    start_count: int

    def message(self) -> str:
        return f"service {self.service} starting (start {self.start_count})"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceReady(ServiceEvent):
    """The service reported readiness (at once for a plain service)."""

    kind: ClassVar[str] = "ready"

    def message(self) -> str:
        return f"service {self.service} ready"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceExited(ServiceEvent):
    """An attempt ended.

    Attributes:
        outcome: ``"clean"`` (returned), ``"stopped"`` (stopped by the manager),
            ``"failure"``, ``"restart_now"`` (a `RestartNow`), ``"no_restart"``
            (a clean `DoNotRestart`), ``"no_restart_failure"``, or ``"fatal"``.
        error: the exception, or ``None``.
        uptime: how long the attempt ran.
    """

    kind: ClassVar[str] = "exited"
    outcome: str
    error: BaseException | None
    uptime: float

    def message(self) -> str:
        if self.error is None:
            return f"service {self.service} exited ({self.outcome})"
        if self.outcome == "no_restart":  # asked for, not a failure: its words alone
            return f"service {self.service} exited ({self.outcome}): {error_message(self.error)}"
        return f"service {self.service} exited ({self.outcome}): {error_text(self.error)}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceBackingOff(ServiceEvent):
    """The service will restart after ``delay`` seconds."""

    kind: ClassVar[str] = "backing_off"
    delay: float

    def message(self) -> str:
        return f"service {self.service} restarting in {self.delay:g}s"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRestarting(ServiceEvent):
    """The backoff wait ended; ``restart_count`` counts this restart."""

    kind: ClassVar[str] = "restarting"
    restart_count: int

    def message(self) -> str:
        return f"service {self.service} restarting (restart {self.restart_count})"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceFailed(ServiceEvent):
    """The service is ``FAILED`` and will not be restarted; ``reason`` says why."""

    kind: ClassVar[str] = "failed"
    reason: str

    def message(self) -> str:
        return f"service {self.service} failed permanently: {self.reason}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStopDone(ServiceEvent):
    """The service's instance exited after a stop.

    Named apart from the error ``trisup.ServiceStopped`` (kept for parity with
    the Go package); the event's ``kind`` stays ``"stopped"``.
    """

    kind: ClassVar[str] = "stopped"

    def message(self) -> str:
        return f"service {self.service} stopped"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStopTimedOut(ServiceEvent):
    """A stop did not see the service exit within ``timeout`` seconds."""

    kind: ClassVar[str] = "stop_timed_out"
    timeout: float

    def message(self) -> str:
        return f"service {self.service} did not stop within {self.timeout:g}s"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRemoved(ServiceEvent):
    """The service was unregistered."""

    kind: ClassVar[str] = "removed"

    def message(self) -> str:
        return f"service {self.service} removed"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStatusChanged(ServiceEvent):
    """The service's status changed from ``old`` to ``new``."""

    kind: ClassVar[str] = "status"
    old: ServiceStatus
    new: ServiceStatus

    def message(self) -> str:
        return f"{self.service}: {self.old} -> {self.new}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePhaseChanged(ServiceEvent):
    """The service's lifecycle phase changed from ``old`` to ``new`` (`Phase`).

    .. versionadded:: 0.1.0
    """

    kind: ClassVar[str] = "phase"
    old: Phase
    new: Phase

    def message(self) -> str:
        return f"{self.service}: phase {self.old} -> {self.new}"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerStarted(Event):
    """``serve`` began."""

    kind: ClassVar[str] = "manager_started"

    def message(self) -> str:
        return f"manager {self.manager} serving"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerStopping(Event):
    """The shutdown sequence began."""

    kind: ClassVar[str] = "manager_stopping"

    def message(self) -> str:
        return f"manager {self.manager} stopping"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerStopped(Event):
    """The shutdown sequence ended."""

    kind: ClassVar[str] = "manager_stopped"

    def message(self) -> str:
        return f"manager {self.manager} stopped"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerGaveUp(Event):
    """The manager ended itself; ``reason`` says why."""

    kind: ClassVar[str] = "manager_gave_up"
    reason: str

    def message(self) -> str:
        return f"manager {self.manager} gave up: {self.reason}"


T = TypeVar("T")


class _Buffer(Generic[T]):
    """A bounded buffer that one task waits on: the oldest item dropped when full.

    Attributes:
        lost: how many items were dropped because the buffer was full.
    """

    __slots__ = ("_buffer", "_closed", "_waiter", "lost")

    def __init__(self, max_buffer: int) -> None:
        self._buffer: deque[T] = deque(maxlen=max_buffer)
        self._waiter: trio.Event | None = None
        self._closed = False
        self.lost = 0

    def _push(self, item: T) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.lost += 1
        self._buffer.append(item)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _close(self) -> None:
        self._closed = True
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def receive_nowait(self) -> T | None:
        """The oldest buffered item, or ``None`` when the buffer is empty."""
        return self._buffer.popleft() if self._buffer else None

    def receive_all(self) -> list[T]:
        """Every buffered item, oldest first, emptying the buffer."""
        out = list(self._buffer)
        self._buffer.clear()
        return out

    async def receive(self) -> T:
        """Wait for the next item.

        Raises:
            trio.EndOfChannel: the subscription was closed and is drained.
        """
        while not self._buffer:
            if self._closed:
                raise trio.EndOfChannel
            if self._waiter is None:
                self._waiter = trio.Event()
            await self._waiter.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._buffer.popleft()


@final
class Subscription(_Buffer[Event]):
    """A bounded stream of events; iterate with ``async for``.

    Attributes:
        lost: how many events were dropped because the buffer was full.
    """

    __slots__ = ()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


M = TypeVar("M")


@final
class _Tap:
    """One hub's entry into a `TreeSubscription`: its events, tagged with the hub's path."""

    __slots__ = ("_into", "path")

    def __init__(self, into: Callable[[str, Event], None], path: str) -> None:
        self._into = into
        self.path = path

    def _push(self, event: Event) -> None:
        self._into(self.path, event)

    def _close(self) -> None:
        pass  # the tree ends its own stream


@final
class TreeSubscription(_Buffer[tuple[str, Event]], Generic[M]):
    """The events of several hubs (a tree of managers) in one bounded buffer, in order.

    Each hub is attached under a *path* (``""`` for the root manager, ``"jobs"``
    for the manager registered as service ``jobs``, ``"jobs/sub"`` deeper), with
    its *source* (the manager). Events are received as ``(path, event)``. When
    the buffer is full the oldest is dropped and counted in `lost`, as for a
    `Subscription`. *changed* is called synchronously with each ``ServiceAdded``
    and ``ServiceRemoved`` pushed, before anything else is, so the tree can
    attach a nested manager the moment it is added (`Manager.subscribe_tree`).

    Attributes:
        lost: how many events were dropped because the buffer was full.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_changed", "_taps")

    def __init__(self, max_buffer: int, changed: Callable[[str, ServiceEvent], None]) -> None:
        super().__init__(max_buffer)
        self._changed = changed
        self._taps: dict[str, tuple[_Tap, EventHub, M]] = {}

    def attach(self, path: str, hub: EventHub, source: M) -> None:
        """Receive *hub*'s events as *path*'s (a path attached already is replaced)."""
        self.detach(path, nested=False)
        tap = _Tap(self._tagged, path)
        hub.add_tap(tap)
        self._taps[path] = (tap, hub, source)

    def detach(self, path: str, *, nested: bool = True) -> None:
        """Stop receiving *path*'s events (and, if *nested*, those of the paths under it)."""
        prefix = path + "/"
        for p in [p for p in self._taps if p == path or (nested and p.startswith(prefix))]:
            tap, hub, _ = self._taps.pop(p)
            hub.unsubscribe(tap)

    def source(self, path: str) -> M | None:
        """What *path* was attached with, or ``None``."""
        entry = self._taps.get(path)
        return None if entry is None else entry[2]

    def sources(self) -> dict[str, M]:
        """Every attached path and its source, in the order attached."""
        return {path: entry[2] for path, entry in self._taps.items()}

    def close(self) -> None:
        """Detach every hub and end the stream."""
        for tap, hub, _ in self._taps.values():
            hub.unsubscribe(tap)
        self._taps.clear()
        self._close()

    def _tagged(self, path: str, event: Event) -> None:
        if isinstance(event, (ServiceAdded, ServiceRemoved)):
            self._changed(path, event)
        self._push((path, event))


class EventHub:
    """Builds, logs and fans out the events of one manager."""

    __slots__ = ("_subscribers", "manager")

    def __init__(self, manager: str) -> None:
        self.manager = manager
        self._subscribers: list[Subscription | _Tap] = []

    def wanted(self, level: int) -> bool:
        """Whether an event logged at *level* has any listener (cheap)."""
        return bool(self._subscribers) or logger.isEnabledFor(level)

    def wanted_status(self) -> bool:
        """Whether a status change has any listener (logged at DEBUG on ``trisup.status``)."""
        return bool(self._subscribers) or status_logger.isEnabledFor(logging.DEBUG)

    def emit(self, event: Event, level: int, exc_info: BaseException | None = None) -> None:
        """Log *event* at *level* (if enabled) and hand it to every subscriber."""
        for sub in self._subscribers:
            sub._push(event)  # pyright: ignore[reportPrivateUsage]
        target = (
            status_logger
            if isinstance(event, (ServiceStatusChanged, ServicePhaseChanged))
            else logger
        )
        if target.isEnabledFor(level):
            target.log(level, "%s", event.message(), exc_info=exc_info, extra=event.extra())

    def manager_event(self, kind: type[ManagerStarted | ManagerStopping | ManagerStopped]) -> None:
        """Emit the manager's own event *kind* at INFO."""
        if self.wanted(logging.INFO):
            self.emit(kind(manager=self.manager, time=trio_now()), logging.INFO)

    @asynccontextmanager
    async def subscription(self, max_buffer: int) -> AsyncGenerator[Subscription]:
        """A subscriber for the duration of the block (`Manager.subscribe`).

        Raises:
            ValueError: *max_buffer* is not a positive int.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer must be a positive int, not {safe_repr(max_buffer)}")
        sub = self.subscribe(max_buffer)
        try:
            yield sub
        finally:
            self.unsubscribe(sub)

    def subscribe(self, max_buffer: int) -> Subscription:
        """Add a subscriber."""
        sub = Subscription(max_buffer)
        self._subscribers.append(sub)
        return sub

    def add_tap(self, tap: _Tap) -> None:
        """Add a `TreeSubscription`'s entry (`TreeSubscription.attach`)."""
        self._subscribers.append(tap)

    def unsubscribe(self, sub: Subscription | _Tap) -> None:
        """Remove a subscriber and end its stream."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        sub._close()  # pyright: ignore[reportPrivateUsage]

    def close_all(self) -> None:
        """End every subscriber's stream (not used while serving)."""
        for sub in list(self._subscribers):
            self.unsubscribe(sub)
