"""The console's ASGI application: the Go package's JSON API, the page, metrics, probes.

Routes (``P`` is the prefix, ``/debug/supervisor`` by default):

=======  ===================================  =========================================
method   path                                 answer
=======  ===================================  =========================================
GET      ``P/``                               the live page (``P`` redirects here)
GET      ``P/static/{file}``                  the page's script and style sheet
GET      ``P/api/services``                   every service's info, registration order
GET      ``P/api/service/{name}``             one service's info (``to_dict()`` + ``phase``)
POST     ``P/api/service/{name}/{verb}``      ``restart``, ``stop``, ``start``, ``reset``
GET      ``P/api/service/{name}/output``      a process's recent output (``?after=N&wait=S``)
GET      ``P/api/service/{name}/details``     what the details panel shows, in JSON
POST     ``P/api/services/restart``           restart every service
POST     ``P/api/reload``                     re-read the TOML file (``trisup run`` only)
GET      ``P/api/events``                     server-sent events (see `._sse`)
GET      ``P/api/openapi.json``               the OpenAPI document
GET      ``/metrics``                         Prometheus metrics
GET      ``/healthz``, ``/readyz``            liveness and readiness probes
=======  ===================================  =========================================

The routes under ``P/api/service/{name}`` take ``?group=PATH``: the service of the
manager nested as ``PATH`` (``jobs``, ``jobs/sub``; absent or empty: the console's
manager). Success bodies are ``{"status": "ok", "message": ...}``, errors
``{"error": ...}``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TypeVar, final
from urllib.parse import unquote

import trio
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .._config import ServiceConfig
from .._errors import (
    ServiceNotFound,
    ServiceRunning,
    ServiceStopped,
    ServiceStopTimeout,
    SupervisorError,
)
from .._health import api_dict, counts, error_type, is_ready, not_ready, outlook, shown_phase
from .._manager import Manager
from .._reload import ReloadDiff, ReloadError
from .._service import Service
from .._status import Phase, RestartPolicy, ServiceInfo, rfc3339
from ..process import ProcessService, describe_exit
from ._json import JSONResponse, error_response, json_bytes, ok_response
from ._openapi import VERBS, openapi_document
from ._render import SharedBody, metrics_body
from ._security import Guard
from ._sse import EventStream
from ._state import ConsoleState

__all__ = ["ASSETS", "build_app"]

logger = logging.getLogger("trisup.http")

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "details.js": "text/javascript; charset=utf-8",
    "details.css": "text/css; charset=utf-8",
}
"""The page's files, in ``trisup/http/static``, with their media types."""

_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DONE = {"restart": "restarted", "stop": "stopped", "start": "started", "reset": "reset"}
_RUNNING = frozenset({Phase.STARTING, Phase.RUNNING})  # a start of these is a 409
MAX_WAIT = 60.0
"""The longest ``wait`` of ``GET P/api/service/{name}/output``, in seconds."""

Reload = Callable[[], Awaitable[ReloadDiff]]
"""What ``POST P/api/reload`` calls (`trisup._reload.Reloader.reload`)."""


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("trisup.http").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in ASSETS}


@final
class _Handlers:
    """The endpoints, sharing the manager, the console's state and settings."""

    def __init__(
        self,
        state: ConsoleState,
        *,
        prefix: str,
        token_required: bool,
        registry: CollectorRegistry,
        console: Service | None,
        reloader: Reload | None,
    ) -> None:
        self.state = state
        self.reloader = reloader
        self.manager: Manager = state.manager
        self.prefix = prefix
        self.registry = registry
        self.console = console
        self.assets = _load_assets()
        self.services_body = SharedBody(state)
        self.openapi = json_bytes(
            openapi_document(prefix, token_required=token_required, reload=reloader is not None)
        )

    # --------------------------------------------------------------- the page

    async def page(self, request: Request) -> Response:
        return Response(
            self.assets["index.html"],
            media_type=ASSETS["index.html"],
            headers={"Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-cache"},
        )

    async def to_page(self, request: Request) -> Response:
        return RedirectResponse(self.prefix + "/", status_code=308)

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in ASSETS or name == "index.html":
            return error_response(404, "not found")
        return Response(
            self.assets[name], media_type=ASSETS[name], headers={"Cache-Control": "no-cache"}
        )

    # ---------------------------------------------------------------- the API

    async def services(self, request: Request) -> Response:
        body = await self.services_body.get()
        return body.response(request.headers.get("accept-encoding", ""))

    async def service(self, request: Request) -> Response:
        """``GET P/api/service/{name}[/output|/details]`` and ``POST P/api/service/{name}/{verb}``.

        Parsed from the raw path, so a name may hold an encoded ``/`` (``%2F``).
        ``?group=PATH`` names the group (a nested manager) the service is in.
        """
        raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
        base = f"{self.prefix}/api/service/".encode()
        path = raw.partition(b"?")[0]
        if not path.startswith(base):  # the prefix itself percent-encoded
            return error_response(404, "not found")
        parts = path[len(base) :].split(b"/")
        if len(parts) > 2 or not parts[0] or (len(parts) == 2 and parts[1] not in _SUB_BYTES):
            return error_response(404, "not found")
        name = unquote(parts[0].decode("latin-1"), errors="replace")
        sub = parts[1].decode() if len(parts) == 2 else None
        if sub in (None, "output", "details") and request.method not in ("GET", "HEAD"):
            return error_response(405, "method not allowed", {"Allow": "GET, HEAD"})
        if sub not in (None, "output", "details") and request.method != "POST":
            return error_response(405, "method not allowed", {"Allow": "POST"})
        group = request.query_params.get("group", "")
        manager = self.state.group(group)
        if manager is None:
            return error_response(404, f"group not found: {group}")
        if sub == "output":
            return await self._output(manager, name, request)
        try:
            if sub == "details":
                return JSONResponse(self._details(manager, group, name))
            if sub is None:
                return JSONResponse(api_dict(manager.get_service_info(name)))
        except ServiceNotFound as exc:
            return error_response(404, str(exc))
        assert sub is not None
        return await self._act(manager, name, sub)

    def _details(self, manager: Manager, group: str, name: str) -> dict[str, object]:
        """Everything the page's details panel shows of one service (see docs/console.md)."""
        info = manager.get_service_info(name)
        service = manager.get_service(name)
        config = manager.get_service_config(name)
        now = self.state.wall()  # the manager's clock, as its snapshots' times
        plan = outlook(info, config, now)
        error = info.error
        return {
            "name": name,
            "group": group,
            "phase": str(info.phase),
            "shown": shown_phase(info),
            "status": str(info.status),
            "critical": info.critical,
            "depends_on": list(info.depends_on),
            "dependents": [i.name for i in manager.get_services_info() if name in i.depends_on],
            "process": _process_json(service) if isinstance(service, ProcessService) else None,
            "output": _output_json(service) if isinstance(service, ProcessService) else None,
            "config": config_json(config),
            "schedule": {
                "next_attempt_at": _iso(plan.next_attempt_at),
                "next_attempt_in": (
                    None if plan.next_attempt_at is None else max(0.0, plan.next_attempt_at - now)
                ),
                "remaining_failures": plan.remaining_failures,
                "gives_up_at": _iso(plan.gives_up_at),
                "text": plan.text,
            },
            "error": None if error is None else _error_json(error, info),
            "events": [
                {"ts": self.state.wall(e.time), "kind": e.kind, "message": e.message()}
                for e in self.state.recent(group, name)
            ],
            "info": api_dict(info),
        }

    async def _output(self, manager: Manager, name: str, request: Request) -> Response:
        """A process's output lines after the first ``after`` (default: the whole ring).

        With ``wait=S``, waits up to ``S`` seconds (at most `MAX_WAIT`) for a line
        when there is none yet: a long poll, which ``trisup tail -f`` repeats.
        An ``after`` beyond the count (a new instance after a reload) reads as 0.
        """
        after = _number(request.query_params.get("after"), 0, int)
        wait = _number(request.query_params.get("wait"), 0.0, float)
        if after is None or after < 0 or wait is None or not 0 <= wait <= MAX_WAIT:
            text = f"after must be an integer >= 0 and wait a number of seconds 0..{MAX_WAIT:g}"
            return error_response(400, text)
        process = _process(manager, name)
        if isinstance(process, Response):
            return process
        if after > process.output_count:
            after = 0
        if wait > 0 and process.output_count <= after:
            with trio.move_on_after(wait):
                await self._output_or_closing(process, after)
        count, lines = process.output_since(after)
        return JSONResponse(
            {
                "name": name,
                "pid": process.pid,
                "count": count,
                "lines": [{"stream": stream, "line": line} for stream, line in lines],
            }
        )

    async def _output_or_closing(self, process: ProcessService, after: int) -> None:
        """Wait for a line after the first *after*, or for the server to begin closing.

        A long poll must not hold a stopping server for its grace period.
        """
        closing = self.state.closing
        async with trio.open_nursery() as nursery:

            async def output() -> None:
                await process.wait_output(after)
                nursery.cancel_scope.cancel(reason="output arrived")

            async def close() -> None:
                await closing.wait()
                nursery.cancel_scope.cancel(reason="server closing")

            nursery.start_soon(output)
            nursery.start_soon(close)

    async def reload(self, request: Request) -> Response:
        refusal = self._stopping()
        if refusal is not None or self.reloader is None:
            return refusal or error_response(404, "not found")
        try:
            diff = await self.reloader()
        except ReloadError as exc:
            return error_response(exc.status, str(exc))
        return JSONResponse({"status": "ok", "message": diff.summary(), **diff.to_dict()})

    async def _act(self, manager: Manager, name: str, verb: str) -> Response:
        refusal = self._stopping()
        if refusal is not None:
            return refusal
        try:
            info = manager.get_service_info(name)
            if verb == "stop":
                if info.stopped:
                    raise ServiceStopped(name)
                await manager.stop_service(name)
            elif verb == "start":
                if info.phase in _RUNNING and not info.stopped:
                    raise ServiceRunning(name)
                await manager.start_service(name)
            elif verb == "restart":
                await manager.restart_service(name)
            else:
                manager.reset_service(name)
        except ServiceNotFound as exc:
            return error_response(404, str(exc))
        except ServiceStopTimeout as exc:
            return error_response(504, str(exc))
        except SupervisorError as exc:
            return error_response(409, str(exc))
        return ok_response(f"service {_DONE[verb]}, name={name}")

    async def restart_all(self, request: Request) -> Response:
        refusal = self._stopping()
        if refusal is not None:
            return refusal
        manager = self.manager
        me = self.console
        if me is None or not any(s is me for s in manager.services()):
            await manager.restart_services()
            return ok_response("all services restarted")
        # Restart the others first, the console itself last: its own restart
        # begins its graceful shutdown, which must not cut the others short.
        async with trio.open_nursery() as nursery:
            for service in manager.services():
                if service is not me:
                    nursery.start_soon(self._restart_logged, service.name)
        await self._restart_logged(me.name)
        return ok_response("all services restarted")

    async def _restart_logged(self, name: str) -> None:
        try:
            await self.manager.restart_service(name)
        except SupervisorError as exc:
            logger.error(
                "restart of service %s failed: %s",
                name,
                exc,
                extra={"service": name, "event": "restart_failed"},
            )

    def _stopping(self) -> Response | None:
        state = self.state.current_state()
        if state != "serving":
            return error_response(409, f"manager {self.manager.name} is {state}")
        return None

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    # ----------------------------------------------------- metrics and probes

    async def metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await metrics_body(self.state, self.registry, encoder)
        return Response(body, headers={"Content-Type": content_type})

    async def healthz(self, request: Request) -> Response:
        state = self.state.current_state()
        name = self.manager.name
        if state != "serving":
            return error_response(503, f"manager {name} is {state}")
        return ok_response(f"manager {name} is serving")

    async def readyz(self, request: Request) -> Response:
        state = self.state.current_state()
        name = self.manager.name
        if state != "serving":
            return JSONResponse({"error": f"manager {name} is {state}", "not_ready": []}, 503)
        infos = self.manager.get_services_info()
        exclude = request.query_params.getlist("exclude")
        waiting = not_ready(infos, exclude=exclude)
        body: dict[str, object]
        if waiting:
            body = {"error": "not ready: " + ", ".join(waiting), "not_ready": waiting}
        else:
            body = {"status": "ok", "message": "ready"}
        if "verbose" in request.query_params:
            body["checks"] = [_check(info, exclude) for info in infos]
            known = {info.name for info in infos}
            body["warnings"] = [
                f"cannot exclude {n!r}: no such service"
                for n in dict.fromkeys(exclude)
                if n not in known
            ]
        return JSONResponse(body, 503 if waiting else 200)


def _check(info: ServiceInfo, exclude: list[str]) -> dict[str, object]:
    """One service's line of ``/readyz?verbose``."""
    return {
        "name": info.name,
        "ready": is_ready(info),
        "critical": info.critical,
        "excluded": info.name in exclude,
        "counted": counts(info) and info.name not in exclude,
        "phase": str(info.phase),
    }


_SUB_BYTES = frozenset(v.encode() for v in (*VERBS, "output", "details"))


def _process(manager: Manager, name: str) -> ProcessService | Response:
    try:
        service = manager.get_service(name)
    except ServiceNotFound:
        return error_response(404, f"service not found: {name}")
    if isinstance(service, ProcessService):
        return service
    return error_response(404, f"service {name} is not a process: it has no output")


def _iso(wall: float | None) -> str | None:
    """RFC 3339 (UTC) of wall-clock seconds, or ``None``."""
    return None if wall is None else rfc3339(datetime.fromtimestamp(wall, UTC))


def _process_json(process: ProcessService) -> dict[str, object]:
    last = process.last_returncode  # kept while the next run is up
    cwd = process.cwd
    return {
        "pid": process.pid,
        "argv": list(process.argv),
        "cwd": None if cwd is None else os.fspath(cwd),
        "returncode": process.returncode,
        "last_exit": None if last is None else describe_exit(last),
        "last_exit_time": _iso(process.exit_time),
        "relaunches": process.relaunches,
    }


def _output_json(process: ProcessService) -> dict[str, object]:
    count, lines = process.output_since(0)
    return {"count": count, "lines": [{"stream": st, "line": line} for st, line in lines]}


def _error_json(error: BaseException, info: ServiceInfo) -> dict[str, object]:
    """The last error: its type (as ``last_error_type``), message, time and traceback
    (formatted now, on request)."""
    moment = info.metric.last_error_time
    return {
        "type": error_type(info),
        "message": info.metric.last_error,
        "time": None if moment is None else rfc3339(moment),
        "traceback": "".join(traceback.format_exception(error)),
    }


def config_json(config: ServiceConfig) -> dict[str, object]:
    """*config* as JSON: the policy by name (``"on_failure"``), seconds as numbers."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value: object = getattr(config, f.name)
        out[f.name] = value.name.lower() if isinstance(value, RestartPolicy) else value
    return out


_N = TypeVar("_N", int, float)


def _number(text: str | None, default: _N, kind: type[_N]) -> _N | None:
    """A query parameter as *kind* (``None`` if malformed or not finite), *default* if absent."""
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request refused")
    return error_response(exc.status_code, text, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("console request failed", exc_info=exc, extra={"event": "http_error"})
    return error_response(500, "internal error")


def build_app(
    state: ConsoleState,
    *,
    prefix: str,
    token: str | None,
    check_host: bool,
    registry: CollectorRegistry,
    console: Service | None = None,
    reload: Reload | None = None,
) -> ASGIApp:
    """The console's ASGI application, behind its `Guard`.

    Args:
        state: the console's state (its manager, the manager's state, timelines).
        prefix: ``""`` or ``/segment[/segment...]``.
        token: the token every request must carry, or ``None``.
        check_host: refuse non-loopback ``Host`` headers.
        registry: what ``/metrics`` exposes.
        console: the console service itself, restarted last by a restart of all.
        reload: what ``POST P/api/reload`` calls; without it, that route is absent.
    """
    h = _Handlers(
        state,
        prefix=prefix,
        token_required=token is not None,
        registry=registry,
        console=console,
        reloader=reload,
    )
    get = ["GET"]
    routes = [
        Route(f"{prefix}/", h.page, methods=get),
        Route(f"{prefix}/static/{{file}}", h.static, methods=get),
        Route(f"{prefix}/api/services", h.services, methods=get),
        Route(f"{prefix}/api/services/restart", h.restart_all, methods=["POST"]),
        Route(f"{prefix}/api/service/{{rest:path}}", h.service, methods=["GET", "POST"]),
        Route(
            f"{prefix}/api/events",
            EventStream(state, token_required=token is not None, console=console),
            methods=get,
        ),
        Route(f"{prefix}/api/openapi.json", h.openapi_json, methods=get),
        Route("/metrics", h.metrics, methods=get),
        Route("/healthz", h.healthz, methods=get),
        Route("/readyz", h.readyz, methods=get),
    ]
    if reload is not None:
        routes.append(Route(f"{prefix}/api/reload", h.reload, methods=["POST"]))
    if prefix:
        routes.append(Route(prefix, h.to_page, methods=get))
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.router.redirect_slashes = False  # its redirects would echo the Host header
    return Guard(app, token=token, check_host=check_host)
