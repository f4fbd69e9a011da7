"""`ConsoleService`: the control plane as an ordinary trisup service."""

from __future__ import annotations

import logging
import re
import socket
from typing import cast, final

import hypercorn.trio
import trio
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from prometheus_client.registry import CollectorRegistry

from .._manager import Manager
from .._status import ServiceInfo
from ._app import Reload, build_app
from ._metrics import SupervisorCollector
from ._render import pinned
from ._security import TOKEN_ENV, Bind, parse_bind, resolve_token
from ._state import ConsoleState

__all__ = ["ConsoleService"]

logger = logging.getLogger("trisup.http")

GRACE = 2.0
"""Seconds a stopping console gives requests in flight before it cuts them."""

_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_ROOT_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    prefix = prefix.rstrip("/")
    dots = any(part in (".", "..") for part in prefix.split("/"))
    if not _PREFIX.fullmatch(prefix) or dots or prefix in _ROOT_PATHS:
        raise ValueError(
            f"prefix must be '' or '/segment[/segment...]' of letters, digits and ._~- "
            f"(not . or ..), "
            f"other than /metrics, /healthz and /readyz; not {prefix!r}"
        )
    return prefix


def _probe(bind: Bind) -> None:
    """Bind *bind*'s address once, and let go: raise the OSError of a port in use now.

    Hypercorn leaves the socket of a failed bind unclosed (it is closed only when
    collected); a failure here closes everything at once.
    """
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((bind.host, bind.port))


@final
class _ProblemsOnly(logging.Filter):
    """Hypercorn's own INFO lines ("Running on ... (CTRL + C to quit)") are not for
    trisup's operator: the console logs its address itself (``event=listening``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _server_log() -> logging.Logger:
    """The logger Hypercorn writes to, its INFO chatter filtered out (once)."""
    log = logging.getLogger("trisup.http.server")
    if not any(isinstance(f, _ProblemsOnly) for f in log.filters):
        log.addFilter(_ProblemsOnly())
    return log


class _ConsoleCollector(SupervisorCollector):
    """The collector of a console: the manager's state from its events, and the
    snapshot ``/metrics`` took on the loop when it collects in a worker thread."""

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state.manager)
        self._console_state = state

    def _manager_state(self) -> str | None:
        return self._console_state.current_state()

    def _snapshot(self) -> tuple[list[ServiceInfo], str | None]:
        return pinned(self._console_state) or super()._snapshot()


@final
class ConsoleService:
    """The control plane of a manager, served over HTTP: add it to any manager.

    It serves the Go package's JSON API and a live web page under *prefix*,
    Prometheus metrics at ``/metrics`` and probes at ``/healthz`` and
    ``/readyz``, with Hypercorn's Trio worker inside the supervision tree. It
    reports ready once it listens. Stopped (or at the manager's shutdown), it
    stops accepting connections, ends the event streams, and gives requests in
    flight up to two seconds to finish.

    Needs the ``http`` extra: ``pip install '.[http]'`` in a checkout.

    ::

        manager.add(trisup.http.ConsoleService(manager))

    Args:
        manager: the manager to show and control (usually the one it is added to).
        bind: ``HOST:PORT`` to listen on (``[::1]:PORT`` for IPv6, port 0 for any
            free port). A host that is not a loopback address requires a token.
        prefix: the path of the page and the API (``""`` for the root).
        token: the token every request must carry; ``None`` reads
            ``$TRISUP_TOKEN`` (unset or empty: no token).
        name: the service's name.
        registry: the Prometheus registry ``/metrics`` serves; the console's
            `SupervisorCollector` is registered in it. By default a registry of
            the console's own.
        reload: what ``POST P/api/reload`` calls (``trisup run`` passes its
            reloader); without it, that route is absent.

    Attributes:
        app: the ASGI application, for in-process clients (tests).
        urls: the addresses it listens on (``["http://127.0.0.1:8080"]``) while
            it serves, else empty.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a malformed *bind* or *prefix*, a bad token, or a
            non-loopback *bind* without a token.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        manager: Manager,
        bind: str = "127.0.0.1:8080",
        prefix: str = "/debug/supervisor",
        token: str | None = None,
        *,
        name: str = "console",
        registry: CollectorRegistry | None = None,
        reload: Reload | None = None,
    ) -> None:
        if not isinstance(manager, Manager):
            raise TypeError(f"manager must be a trisup.Manager, not {type(manager).__name__}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, not {name!r}")
        self.name = name
        self._bind: Bind = parse_bind(bind)
        self.prefix = _check_prefix(prefix)
        self._token = resolve_token(token)
        if self._token is None and not self._bind.loopback:
            raise ValueError(
                f"binding to {bind!r}, not a loopback address, requires a token "
                f"(pass token= or set {TOKEN_ENV})"
            )
        self._state = ConsoleState(manager)
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
        registry.register(_ConsoleCollector(self._state))
        self.app = build_app(
            self._state,
            prefix=self.prefix,
            token=self._token,
            check_host=self._token is None,
            registry=registry,
            console=self,
            reload=reload,
        )
        self.urls: list[str] = []

    def __repr__(self) -> str:
        return f"<trisup.http.ConsoleService {self.name!r} bind={str(self._bind)!r}>"

    @property
    def address(self) -> Bind:
        """The address it binds (as configured: port 0 stays 0)."""
        return self._bind

    @property
    def token_required(self) -> bool:
        """Whether requests must carry a token."""
        return self._token is not None

    @property
    def url(self) -> str | None:
        """The page's address while it serves (``http://127.0.0.1:8080/debug/supervisor/``)."""
        return f"{self.urls[0]}{self.prefix}/" if self.urls else None

    def _config(self) -> Config:
        config = Config()
        config.bind = [str(self._bind)]
        config.accesslog = None
        config.errorlog = _server_log()
        config.graceful_timeout = GRACE
        config.include_server_header = False
        return config

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ready once listening.

        Cancellation starts a graceful stop: no new connections, event streams
        end, requests in flight get `GRACE` seconds. Errors (a port in use)
        escape, so the manager's restart policy applies.
        """
        _probe(self._bind)
        state = self._state
        state.begin()
        server_scope = trio.CancelScope()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(state.track)
                urls = await nursery.start(self._run_server, server_scope)
                # From here the server ends only through its graceful shutdown.
                server_scope.shield = True
                self.urls = list(urls)
                logger.info(
                    "console %s listening on %s",
                    self.name,
                    ", ".join(self.urls),
                    extra={"service": self.name, "event": "listening", "urls": self.urls},
                )
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    state.closing.set()
                    server_scope.deadline = trio.current_time() + GRACE + 1
                    nursery.cancel_scope.cancel(reason="trisup: console stopping")
        finally:
            self.urls = []

    async def _run_server(
        self,
        scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            # the WSGI half of hypercorn's app type is partly unknown to pyright
            await hypercorn.trio.serve(  # pyright: ignore[reportUnknownMemberType]
                cast(ASGIFramework, self.app),
                self._config(),
                shutdown_trigger=self._state.closing.wait,
                task_status=task_status,
            )
