"""``GET /api/events``: the manager's events as a server-sent-events stream.

Each stream subscribes to the whole tree itself (``manager.subscribe_tree()``: the
manager and every manager nested in it, a *group*, followed as they come and go),
so a slow client loses only its own oldest events, never slows the manager. A
service is keyed by ``(group, name)``: its group is ``""`` for the manager's own
services, ``"jobs"`` for those of the manager registered as service ``jobs``,
``"jobs/sub"`` deeper. It sends:

- ``snapshot``: first, and again whenever the client fell behind: the manager's
  name and state, the server's clock, whether POSTs need a token, ``self`` (the
  console serving the stream, ``{"group", "name"}``, or ``null``), and every
  service of every group: its info (the API's JSON) plus ``group``, ``shown``
  (its shown phase) and ``timeline`` (``[[ts, shown], ...]``);
- then, paced: it waits for an event, then writes at most once a `TICK` (the
  page's own update rate) everything buffered since, coalesced: one unnamed
  message per service that had events, ``kind`` ``"service"``: its ``group``,
  ``service`` (the name), ``shown`` (its shown phase after them), ``info`` (its
  info as of the write), ``points`` (the shown phases those events went through,
  ``[[ts, shown], ...]``, a repeat of the one before dropped), ``events`` (how
  many), and ``ts`` and ``message`` of the last of them; ``kind`` ``"removed"``
  (``shown`` ``"removed"``, ``info`` ``null``) for a service removed; and each
  manager event as it was (its fields, ``kind``, ``ts``, ``message``, ``group``);
- a ``ping`` comment every `HEARTBEAT` seconds of silence.

The infos are read on the loop; folding the events in, `api_dict` and the JSON
encoding run in a worker thread (from `THREAD_EVENTS` events or `THREAD_SERVICES`
services on). A snapshot is taken and rendered as
``GET P/api/services`` is (`trisup.http._render.Shared`): one per tick at most,
shared by every stream that needs one, rendered in a worker thread.

At most `MAX_STREAMS` streams are open at once; more get 503. Streams end when
the client goes away or the console shuts down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import final

import trio
from starlette.types import Receive, Scope, Send

from .. import events as ev
from .._events import TreeSubscription
from .._health import api_dict
from .._manager import Manager
from .._service import Service
from .._status import ServiceInfo
from ._json import error_response, json_bytes
from ._render import OFF_LOOP, TICK, Shared, off_loop
from ._state import HISTORY, ConsoleState, Key, ShownPhases

__all__ = [
    "HEARTBEAT",
    "MAX_BUFFER",
    "MAX_STREAMS",
    "THREAD_EVENTS",
    "THREAD_SERVICES",
    "EventStream",
    "SharedSnapshot",
    "Snapshot",
    "coalesce",
]

HEARTBEAT = 15.0
"""Seconds of silence after which a stream sends a comment line."""
MAX_STREAMS = 32
"""The most event streams open at once."""
MAX_BUFFER = 8192
"""The most events a stream holds between two writes: a tick's worth with 100 of
1,000 services in a crash loop is about a thousand (references to shared events)."""

THREAD_EVENTS = 32
THREAD_SERVICES = 8
"""From how many events, or services updated, a write is made in a worker thread
(smaller ones cost less than the thread's round trip)."""


@final
@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ``snapshot`` message: the infos it shows, by group, and its text."""

    groups: list[tuple[str, list[ServiceInfo]]]
    body: bytes

    def seed(self, fold: ShownPhases) -> None:
        """Follow every service of the snapshot in *fold*, from its info."""
        for path, infos in self.groups:
            for info in infos:
                fold.seed(info, path)


@final
@dataclass(frozen=True, slots=True)
class _Taken:
    groups: list[tuple[str, list[ServiceInfo]]]
    timelines: dict[Key, list[tuple[float, str]]]
    manager: dict[str, str]
    now: float
    me: dict[str, str] | None


@final
class SharedSnapshot(Shared[_Taken, Snapshot]):
    """The streams' ``snapshot`` message, of one snapshot shared by the streams that need one."""

    __slots__ = ("_console", "_token_required")

    def __init__(
        self, state: ConsoleState, *, token_required: bool, console: Service | None = None
    ) -> None:
        super().__init__(state)
        self._token_required = token_required
        self._console = console

    def take(self) -> _Taken:
        state = self._state
        console = self._console
        groups: list[tuple[str, list[ServiceInfo]]] = []
        me: dict[str, str] | None = None
        tree: Mapping[str, Manager] = state.groups()
        for path, manager in tree.items():
            groups.append((path, manager.get_services_info()))
            mine = console is not None and me is None and manager.has(console.name)
            if console is not None and mine and manager.get_service(console.name) is console:
                me = {"group": path, "name": console.name}
        return _Taken(
            groups=groups,
            timelines=state.timelines(),
            manager={"name": state.manager.name, "state": state.current_state()},
            now=state.wall(),
            me=me,
        )

    def large(self, taken: _Taken) -> bool:
        return sum(len(infos) for _, infos in taken.groups) >= OFF_LOOP

    def render(self, taken: _Taken) -> Snapshot:
        services: list[dict[str, object]] = []
        fold = ShownPhases()  # (the shown phases only: each stream seeds its own)
        for path, infos in taken.groups:
            for info in infos:
                data = api_dict(info)
                data["group"] = path
                data["shown"] = fold.seed(info, path)
                points = taken.timelines.get((path, info.name), ())
                data["timeline"] = [[ts, p] for ts, p in points]
                services.append(data)
        data = {
            "manager": taken.manager,
            "now": taken.now,
            "history": HISTORY,
            "token_required": self._token_required,
            "self": taken.me,
            "services": services,
        }
        return Snapshot(taken.groups, message("snapshot", data))


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


@final
class _Update:
    """What one service's events of a tick add up to."""

    __slots__ = ("before", "events", "key", "last", "points", "removed", "shown")

    def __init__(self, key: Key, before: str | None) -> None:
        self.key = key
        self.before = before  # its shown phase before them
        self.shown: str | None = None
        self.points: list[list[float | str]] = []
        self.events = 0
        self.last: ev.ServiceEvent | None = None
        self.removed = False


def coalesce(
    batch: list[tuple[str, ev.Event]],
    infos: Mapping[Key, ServiceInfo | None],
    fold: ShownPhases,
    offset: float,
    now: float,
) -> bytes:
    """The messages of one write: *batch* folded into *fold*, coalesced per service.

    *infos* holds each service of the batch's info as of now (``None`` once
    gone), read on the loop; *offset* turns Trio time into wall-clock seconds, and
    *now* is the Trio time of an event without one.
    Reads only frozen events and infos, and *fold* is the caller's own, so it
    may run in a worker thread.
    """

    def wall(t: float | None) -> float:
        return (now if t is None else t) + offset

    order: list[_Update | tuple[str, ev.Event]] = []
    updates: dict[Key, _Update] = {}
    for path, event in batch:
        if not isinstance(event, ev.ServiceEvent):
            order.append((path, event))
            continue
        key = (path, event.service)
        update = updates.get(key)
        if update is None or update.removed:  # (removed, then added again: both are told)
            update = updates[key] = _Update(key, fold.current(event.service, path))
            order.append(update)
        info = infos.get(key)
        phase = fold.apply(event, info, path)
        update.events += 1
        update.last = event
        if phase is None:
            continue
        if phase == "removed":
            update.removed = True
            update.points.clear()
        else:
            ts = wall(event.time)
            last = update.points[-1][1] if update.points else update.before
            if phase != last:
                update.points.append([ts, phase])
        update.shown = phase
    out: list[bytes] = []
    for item in order:
        if isinstance(item, tuple):
            path, event = item
            data: dict[str, object] = {k: _plain(v) for k, v in event.extra().items()}
            data["kind"] = data.pop("event")
            data["ts"] = wall(event.time)
            data["message"] = event.message()
            data["group"] = path
            out.append(message(None, data))
            continue
        final = item.last
        info = infos.get(item.key)
        if final is None or item.shown is None or (info is None and not item.removed):
            continue  # not followed, or gone without its removal yet (next write)
        out.append(
            message(
                None,
                {
                    "kind": "removed" if item.removed else "service",
                    "group": item.key[0],
                    "service": item.key[1],
                    "shown": item.shown,
                    "info": None if item.removed or info is None else api_dict(info),
                    "points": item.points,
                    "events": item.events,
                    "ts": wall(final.time),
                    "message": final.message(),
                },
            )
        )
    return b"".join(out)


def message(name: str | None, data: object) -> bytes:
    """One server-sent event; unnamed (a ``message``) when *name* is ``None``."""
    head = b"" if name is None else b"event: " + name.encode() + b"\n"
    return head + b"data: " + json_bytes(data) + b"\n\n"


@final
class EventStream:
    """The ASGI app of ``GET /api/events``."""

    __slots__ = ("_snapshots", "_state", "tick")

    def __init__(
        self, state: ConsoleState, *, token_required: bool, console: Service | None = None
    ) -> None:
        self._state = state
        self._snapshots = SharedSnapshot(state, token_required=token_required, console=console)
        self.tick = TICK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state
        if state.streams >= MAX_STREAMS:
            await error_response(503, "too many event streams")(scope, receive, send)
            return
        state.streams += 1
        try:
            await self._stream(scope, receive, send)
        finally:
            state.streams -= 1

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self._state
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        tree = state.manager.subscribe_tree(max_buffer=MAX_BUFFER)
        async with tree as events, trio.open_nursery() as n:
            n.start_soon(self._until_disconnect, receive, n.cancel_scope)
            n.start_soon(self._until_closing, n.cancel_scope)
            await self._pump(events, send)
        with trio.move_on_after(1, shield=True):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, events: TreeSubscription[Manager], send: Send) -> None:
        state = self._state
        fold = ShownPhases()
        lost = events.lost
        snapshot = await self._snapshots.get()
        snapshot.seed(fold)
        head = b"retry: 2000\n\n" + snapshot.body
        await send({"type": "http.response.body", "body": head, "more_body": True})
        written = trio.current_time()
        while True:
            first: tuple[str, ev.Event] | None = None
            with trio.move_on_after(HEARTBEAT):
                first = await events.receive()
            if first is None:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                continue
            await trio.sleep_until(written + self.tick)  # at most one write a tick
            batch = [first, *events.receive_all()]
            if events.lost != lost:  # fell behind: start again from a snapshot
                lost = events.lost
                fold = ShownPhases()
                snapshot = await self._snapshots.get()
                snapshot.seed(fold)
                body = snapshot.body
            else:
                infos: dict[Key, ServiceInfo | None] = {}
                for path, event in batch:
                    if isinstance(event, ev.ServiceEvent) and (path, event.service) not in infos:
                        manager = events.source(path)
                        has = manager is not None and manager.has(event.service)
                        info = manager.get_service_info(event.service) if manager and has else None
                        infos[path, event.service] = info
                offset = state.wall(0.0)
                work = partial(coalesce, batch, infos, fold, offset, trio.current_time())
                large = len(batch) >= THREAD_EVENTS or len(infos) >= THREAD_SERVICES
                body = await off_loop(work, large=large)
            written = trio.current_time()
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})

    @staticmethod
    async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async def _until_closing(self, scope: trio.CancelScope) -> None:
        await self._state.closing.wait()
        scope.cancel()
