"""``GET /api/events``: the manager's events as a server-sent-events stream.

Each stream subscribes to the manager itself (``manager.subscribe()``), so a slow
client loses only its own oldest events, never slows the manager. It sends:

- ``snapshot``: first, and again whenever the client fell behind: the manager's
  name and state, every service's info (the API's JSON, with its ``phase``), shown
  phase and recent timeline, the server's clock and whether POSTs need a token;
- one unnamed message per event, whose data is the event's fields plus ``kind``
  (``phase``, ``status``, ``exited``, ``backing_off``, ...), ``ts`` (wall-clock
  seconds), ``message``, and for a service event its shown ``phase`` just after
  the event (``"stopped"`` while held, else its `Phase`; ``"removed"`` once
  removed) and its current ``info`` (``null`` once removed);
- a ``ping`` comment every `HEARTBEAT` seconds of silence.

At most `MAX_STREAMS` streams are open at once; more get 503. Streams end when
the client goes away or the console shuts down.
"""

from __future__ import annotations

from typing import final

import trio
from starlette.types import Receive, Scope, Send

from .. import events as ev
from .._health import api_dict
from .._status import ServiceInfo
from ._json import error_response, json_bytes
from ._state import HISTORY, ConsoleState, ShownPhases

__all__ = ["HEARTBEAT", "MAX_STREAMS", "EventStream", "snapshot"]

HEARTBEAT = 15.0
"""Seconds of silence after which a stream sends a comment line."""
MAX_STREAMS = 32
"""The most event streams open at once."""
MAX_BATCH = 256
"""The most events written in one chunk."""


def snapshot(
    state: ConsoleState, infos: list[ServiceInfo], fold: ShownPhases, token_required: bool
) -> object:
    """The data of a ``snapshot`` message; seeds *fold* with the services' phases."""
    timelines = state.timelines()
    phases = {info.name: fold.seed(info) for info in infos}
    return {
        "manager": {"name": state.manager.name, "state": state.current_state()},
        "now": state.wall(),
        "history": HISTORY,
        "token_required": token_required,
        "services": [api_dict(info) for info in infos],
        "phases": phases,
        "timelines": {
            info.name: [[ts, p] for ts, p in timelines.get(info.name, [])] for info in infos
        },
    }


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def event_data(
    state: ConsoleState,
    fold: ShownPhases,
    event: ev.Event,
    infos: dict[str, ServiceInfo | None],
) -> dict[str, object]:
    """The data of one event's message; *infos* caches snapshots within a batch."""
    data = {key: _plain(value) for key, value in event.extra().items()}
    data["kind"] = data.pop("event")
    data["ts"] = state.wall(event.time)
    data["message"] = event.message()
    if isinstance(event, ev.ServiceEvent):
        name = event.service
        if name not in infos:
            manager = state.manager
            infos[name] = manager.get_service_info(name) if manager.has(name) else None
        info = infos[name]
        data["phase"] = fold.apply(event, info)
        data["info"] = api_dict(info) if info is not None else None
    return data


def message(name: str | None, data: object) -> bytes:
    """One server-sent event; unnamed (a ``message``) when *name* is ``None``."""
    head = b"" if name is None else b"event: " + name.encode() + b"\n"
    return head + b"data: " + json_bytes(data) + b"\n\n"


@final
class EventStream:
    """The ASGI app of ``GET /api/events``."""

    __slots__ = ("_state", "_token_required")

    def __init__(self, state: ConsoleState, *, token_required: bool) -> None:
        self._state = state
        self._token_required = token_required

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
        async with state.manager.subscribe(max_buffer=1024) as events, trio.open_nursery() as n:
            n.start_soon(self._until_disconnect, receive, n.cancel_scope)
            n.start_soon(self._until_closing, n.cancel_scope)
            await self._pump(events, send)
        with trio.move_on_after(1, shield=True):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, events: ev.Subscription, send: Send) -> None:
        state = self._state
        fold = ShownPhases()
        infos = state.manager.get_services_info()
        head = b"retry: 2000\n\n" + message(
            "snapshot", snapshot(state, infos, fold, self._token_required)
        )
        await send({"type": "http.response.body", "body": head, "more_body": True})
        lost = 0
        while True:
            first: ev.Event | None = None
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
                infos = state.manager.get_services_info()
                body = message("snapshot", snapshot(state, infos, fold, self._token_required))
            else:
                cache: dict[str, ServiceInfo | None] = {}
                body = b"".join(
                    message(None, event_data(state, fold, event, cache)) for event in batch
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
