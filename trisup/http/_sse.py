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
- one unnamed message per event, whose data is the event's fields plus ``kind``
  (``phase``, ``status``, ``exited``, ``backing_off``, ...), ``ts`` (wall-clock
  seconds), ``message``, ``group`` (whose manager emitted it: a manager event of
  group ``""`` is the console's manager's own), and for a service event its
  shown ``phase`` just after
  the event (``"stopped"`` while held, else its `Phase`; ``"removed"`` once
  removed) and its current ``info`` (``null`` once removed);
- a ``ping`` comment every `HEARTBEAT` seconds of silence.

At most `MAX_STREAMS` streams are open at once; more get 503. Streams end when
the client goes away or the console shuts down.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from ._state import HISTORY, ConsoleState, Key, ShownPhases

__all__ = ["HEARTBEAT", "MAX_STREAMS", "EventStream", "snapshot"]

HEARTBEAT = 15.0
"""Seconds of silence after which a stream sends a comment line."""
MAX_STREAMS = 32
"""The most event streams open at once."""
MAX_BATCH = 256
"""The most events written in one chunk."""


def snapshot(
    state: ConsoleState,
    groups: Mapping[str, Manager],
    fold: ShownPhases,
    token_required: bool,
    console: Service | None = None,
) -> object:
    """The data of a ``snapshot`` message; seeds *fold* with the services' phases.

    *groups* is the tree's managers by group path (`Manager.groups`); *console*
    the console serving the stream, named in ``self`` when it is in the tree.
    """
    timelines = state.timelines()
    services: list[dict[str, object]] = []
    me: dict[str, str] | None = None
    for path, manager in groups.items():
        for info in manager.get_services_info():
            data = api_dict(info)
            data["group"] = path
            data["shown"] = fold.seed(info, path)
            data["timeline"] = [[ts, p] for ts, p in timelines.get((path, info.name), ())]
            services.append(data)
        mine = console is not None and me is None and manager.has(console.name)
        if console is not None and mine and manager.get_service(console.name) is console:
            me = {"group": path, "name": console.name}
    return {
        "manager": {"name": state.manager.name, "state": state.current_state()},
        "now": state.wall(),
        "history": HISTORY,
        "token_required": token_required,
        "self": me,
        "services": services,
    }


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def event_data(
    state: ConsoleState,
    fold: ShownPhases,
    path: str,
    event: ev.Event,
    tree: TreeSubscription[Manager],
    infos: dict[Key, ServiceInfo | None],
) -> dict[str, object]:
    """The data of one event of group *path*; *infos* caches snapshots within a batch."""
    data = {key: _plain(value) for key, value in event.extra().items()}
    data["kind"] = data.pop("event")
    data["ts"] = state.wall(event.time)
    data["message"] = event.message()
    data["group"] = path
    if isinstance(event, ev.ServiceEvent):
        name = event.service
        key = (path, name)
        if key not in infos:
            manager = tree.source(path)
            has = manager is not None and manager.has(name)
            infos[key] = manager.get_service_info(name) if manager is not None and has else None
        info = infos[key]
        data["phase"] = fold.apply(event, info, path)
        data["info"] = api_dict(info) if info is not None else None
    return data


def message(name: str | None, data: object) -> bytes:
    """One server-sent event; unnamed (a ``message``) when *name* is ``None``."""
    head = b"" if name is None else b"event: " + name.encode() + b"\n"
    return head + b"data: " + json_bytes(data) + b"\n\n"


@final
class EventStream:
    """The ASGI app of ``GET /api/events``."""

    __slots__ = ("_console", "_state", "_token_required")

    def __init__(
        self, state: ConsoleState, *, token_required: bool, console: Service | None = None
    ) -> None:
        self._state = state
        self._token_required = token_required
        self._console = console

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
        tree = state.manager.subscribe_tree(max_buffer=1024)
        async with tree as events, trio.open_nursery() as n:
            n.start_soon(self._until_disconnect, receive, n.cancel_scope)
            n.start_soon(self._until_closing, n.cancel_scope)
            await self._pump(events, send)
        with trio.move_on_after(1, shield=True):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _snapshot(self, events: TreeSubscription[Manager], fold: ShownPhases) -> bytes:
        data = snapshot(self._state, events.sources(), fold, self._token_required, self._console)
        return message("snapshot", data)

    async def _pump(self, events: TreeSubscription[Manager], send: Send) -> None:
        state = self._state
        fold = ShownPhases()
        head = b"retry: 2000\n\n" + self._snapshot(events, fold)
        await send({"type": "http.response.body", "body": head, "more_body": True})
        lost = 0
        while True:
            first: tuple[str, ev.Event] | None = None
            with trio.move_on_after(HEARTBEAT):
                first = await events.receive()
            if first is None:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                continue
            batch = [first]
            while len(batch) < MAX_BATCH and (more := events.receive_nowait()) is not None:
                batch.append(more)
            if events.lost != lost:  # fell behind: start again from a snapshot
                lost = events.lost
                fold = ShownPhases()
                body = self._snapshot(events, fold)
            else:
                cache: dict[Key, ServiceInfo | None] = {}
                body = b"".join(
                    message(None, event_data(state, fold, path, event, events, cache))
                    for path, event in batch
                )
            await send({"type": "http.response.body", "body": body, "more_body": True})

    @staticmethod
    async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async def _until_closing(self, scope: trio.CancelScope) -> None:
        await self._state.closing.wait()
        scope.cancel()
