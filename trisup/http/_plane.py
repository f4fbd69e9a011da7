"""`ControlPlane`: ``trisup run``'s control socket and ``[http]`` console, outside the tree.

Both serve the console's application (`build_app`): the Unix socket without a
prefix, a token or a ``Host`` check (its mode, 0600 in a 0700 directory, is the
authentication), the console as configured. They run in ``supervise``'s nursery,
not in the manager: they listen before any service starts, a service that hangs
at startup does not delay them, and they answer (``stopping``) through the
shutdown. Everything that can fail to bind is bound by `prepare`, before the
event loop starts, so ``trisup run`` can report it and exit 1.

SIGHUP reloads the file, as ``trisup reload`` does.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import cast, final

import hypercorn.trio
import trio
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from prometheus_client.registry import CollectorRegistry

from .._manager import Manager
from .._reload import Reloader, ReloadError
from .._socketpath import SocketError, bind_socket
from ._app import build_app
from ._console import GRACE, ConsoleService, _probe  # pyright: ignore[reportPrivateUsage]
from ._metrics import SupervisorCollector
from ._state import ConsoleState

__all__ = ["ControlPlane"]

logger = logging.getLogger("trisup.control")
_server_log = logging.getLogger("trisup.control.server")
_server_log.setLevel(logging.WARNING)  # Hypercorn's "Running on ... (CTRL + C to quit)"


@final
class ControlPlane:
    """The control socket at *path*, and the console of *console_options* if given.

    Args:
        manager: the manager to show and control.
        path: the Unix socket's path.
        reloader: what ``POST /api/reload`` and SIGHUP call, or ``None``.
        console_options: ``ConsoleService`` keyword arguments (the ``[http]`` table).

    Raises:
        TypeError, ValueError: the console rejected its options.
    """

    def __init__(
        self,
        manager: Manager,
        path: Path,
        *,
        reloader: Reloader | None = None,
        console_options: Mapping[str, str] | None = None,
    ) -> None:
        self.manager = manager
        self.path = path
        self.reloader = reloader
        self.state = ConsoleState(manager)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(SupervisorCollector(manager))
        reload = reloader.reload if reloader is not None else None
        self.app = build_app(
            self.state, prefix="", token=None, check_host=False, registry=registry, reload=reload
        )
        self.console: ConsoleService | None = None
        if console_options is not None:
            self.console = ConsoleService(manager, **console_options, reload=reload)  # type: ignore[arg-type]  # [http] keys: bind, prefix, token (str)
        self._sock: socket.socket | None = None

    def stopping(self) -> bool:
        """Whether the manager is stopping or stopped (as the console sees it)."""
        return self.state.current_state() != "serving"

    def prepare(self) -> None:
        """Bind the socket and check the console's port, before the event loop starts.

        Raises:
            SocketError: the socket cannot be served (the message names the path),
                or the console's address cannot be bound (it names the address).
        """
        if self.console is not None:
            bind = self.console.address
            try:
                _probe(bind)
            except OSError as exc:
                raise SocketError(
                    f"[http] bind {bind}: cannot listen: {exc.strerror or exc}"
                ) from None
        self._sock = bind_socket(self.path)

    def close(self) -> None:
        """Close and remove the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.path.unlink(missing_ok=True)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the socket and the console until cancelled; ready once both listen.

        Calls `prepare` if it was not called. Cancellation stops both gracefully
        (requests in flight get `GRACE` seconds) and removes the socket.
        """
        if self._sock is None:
            self.prepare()
        sock = self._sock
        assert sock is not None
        state = self.state
        state.begin()
        server_scope = trio.CancelScope()
        try:
            with trio.open_signal_receiver(signal.SIGHUP) as hangups:
                async with trio.open_nursery() as nursery:
                    await nursery.start(state.track)
                    self._sock = None  # Hypercorn owns the descriptor from here
                    await nursery.start(self._run_server, server_scope, sock.detach())
                    server_scope.shield = True
                    if self.console is not None:
                        await nursery.start(self.console.serve)
                    nursery.start_soon(self._reload_on_hangup, hangups)
                    logger.info(
                        "control socket listening on %s",
                        self.path,
                        extra={"event": "listening", "socket": str(self.path)},
                    )
                    task_status.started()
                    try:
                        await trio.sleep_forever()
                    finally:
                        state.closing.set()
                        server_scope.deadline = trio.current_time() + GRACE + 1
                        nursery.cancel_scope.cancel(reason="trisup: control plane stopping")
        finally:
            self.close()

    async def _run_server(
        self,
        scope: trio.CancelScope,
        fd: int,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = Config()
        config.bind = [f"fd://{fd}"]
        config.accesslog = None
        config.errorlog = _server_log
        config.graceful_timeout = GRACE
        config.include_server_header = False
        with scope:
            await hypercorn.trio.serve(  # pyright: ignore[reportUnknownMemberType]
                cast(ASGIFramework, self.app),
                config,
                shutdown_trigger=self.state.closing.wait,
                task_status=task_status,
            )

    async def _reload_on_hangup(self, hangups: AsyncIterator[int]) -> None:
        async for _ in hangups:
            if self.reloader is None:
                continue
            logger.info("received SIGHUP, reloading", extra={"event": "signal", "signal": "SIGHUP"})
            try:
                await self.reloader.reload()
            except ReloadError as exc:
                logger.error(
                    "reload failed: %s", exc, extra={"event": "reload_failed", "error": str(exc)}
                )
