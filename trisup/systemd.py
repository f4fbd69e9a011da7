"""`NotifyService`: tell systemd how a trisup program is doing (``sd_notify``).

Add it to the root manager of a program started by a ``Type=notify`` unit::

    manager.add(trisup.systemd.NotifyService(manager))

It speaks the notify protocol over the datagram socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract-namespace name starting with ``@``),
with ``trio.socket``:

- ``READY=1`` once every service meant to run is ready (the whole tree: a child
  manager is ready once its own services are);
- ``STATUS=...`` with a one-line summary whenever it changes (at most once per
  ``status_interval``);
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` while the manager serves (when
  ``$WATCHDOG_PID``, if set, is this process);
- ``STOPPING=1`` when the manager's shutdown begins.

Without ``$NOTIFY_SOCKET`` it does nothing (and is ready at once). Needs no extra.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import final

import trio

from . import events as ev
from ._health import not_ready, summary
from ._manager import Manager

__all__ = ["NotifyService", "watchdog_interval"]

logger = logging.getLogger("trisup.systemd")

_STOPPING = "STOPPING=1\nSTATUS=stopping"


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, or ``None``.

    ``None`` when the variable is unset or not a positive integer, or when
    ``$WATCHDOG_PID`` is set to another process.

    .. versionadded:: 0.1.0
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2e6


def _address(value: str) -> str:
    """A ``$NOTIFY_SOCKET`` value as a socket address (``@name`` is abstract)."""
    return "\0" + value[1:] if value.startswith("@") else value


@final
class NotifyService:
    """Reports readiness, status, watchdog pings and shutdown to systemd.

    An ordinary service: add it to the manager it reports on. It is ready at
    once (it never delays the services after it); ``READY=1`` goes out later,
    once the whole tree is ready.

    Args:
        manager: the manager to report on (the program's root manager).
        name: the service's name.
        status_interval: the least time between two ``STATUS=`` messages.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, manager: Manager, *, name: str = "systemd-notify", status_interval: float = 1.0
    ) -> None:
        if not isinstance(manager, Manager):
            raise TypeError(f"manager must be a trisup.Manager, not {type(manager).__name__}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, not {name!r}")
        if isinstance(status_interval, bool) or not isinstance(status_interval, int | float):
            raise TypeError("status_interval must be a number of seconds")
        if not status_interval >= 0 or status_interval == float("inf"):
            raise ValueError(f"status_interval must be finite and >= 0, not {status_interval!r}")
        self.name = name
        self._manager = manager
        self._status_interval = float(status_interval)

    def __repr__(self) -> str:
        return f"<trisup.systemd.NotifyService {self.name!r}>"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Notify systemd until cancelled; a no-op without ``$NOTIFY_SOCKET``.

        Raises:
            OSError: the socket cannot be reached (the manager's restart policy
                applies).
        """
        target = os.environ.get("NOTIFY_SOCKET", "")
        if not target:
            task_status.started()
            await trio.sleep_forever()
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            await sock.connect(_address(target))
            logger.debug(
                "notifying systemd at %s",
                target,
                extra={"service": self.name, "event": "notify_socket"},
            )
            async with self._manager.subscribe(max_buffer=256) as events:
                follower = _Follower(events)
                task_status.started()
                said_stopping = False
                try:
                    async with trio.open_nursery() as nursery:
                        interval = watchdog_interval()
                        if interval is not None:
                            nursery.start_soon(_watchdog, sock, interval)
                        nursery.start_soon(follower.follow)
                        nursery.start_soon(self._report, sock, follower)
                        await follower.stopping.wait()
                        nursery.cancel_scope.cancel(reason="trisup: manager stopping")
                    with trio.move_on_after(1, shield=True):
                        said_stopping = True
                        await _send(sock, _STOPPING)
                    await trio.sleep_forever()
                finally:
                    follower.sync()  # the shutdown may have begun before this task saw it
                    if follower.stopping.is_set() and not said_stopping:
                        with trio.move_on_after(1, shield=True):
                            await _send(sock, _STOPPING)

    async def _report(self, sock: trio.socket.SocketType, follower: _Follower) -> None:
        """Send READY=1 once the tree is ready, and STATUS= whenever it changes."""
        manager = self._manager
        ready = False
        sent = ""
        quiet_until = -math.inf
        while True:
            follower.sync()  # a shutdown already begun sends nothing more
            infos = manager.get_services_info()
            lines: list[str] = []
            if not ready and not not_ready(infos):
                ready = True
                lines.append("READY=1")
            text = summary(manager.name, infos)
            now = trio.current_time()
            if text != sent and (lines or now >= quiet_until):
                sent = text
                quiet_until = now + self._status_interval
                lines.append(f"STATUS={text}")
            if follower.stopping.is_set():
                return  # nothing after STOPPING=1
            seen = follower.generation  # before any checkpoint: no change is missed
            if lines:
                await _send(sock, "\n".join(lines))
            # the next change; or, with a summary held back, the end of the quiet time
            with trio.move_on_at(quiet_until if text != sent else math.inf):
                await follower.wait_changed(seen)


@final
class _Follower:
    """Takes the manager's events: notes its shutdown and counts the changes.

    The follower task (`follow`) and `sync` take from the same subscription, so
    each event is taken once; `sync` makes a read exact at that moment, since the
    manager emits every event synchronously with the change it describes.
    """

    __slots__ = ("_changed", "events", "generation", "stopping")

    def __init__(self, events: ev.Subscription) -> None:
        self.events = events
        self.stopping = trio.Event()
        self.generation = 0
        self._changed: trio.Event | None = None

    def _take(self, event: ev.Event) -> None:
        if isinstance(event, ev.ManagerStopping):
            self.stopping.set()
        self.generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def sync(self) -> None:
        """Take every event the subscription has buffered."""
        while (event := self.events.receive_nowait()) is not None:
            self._take(event)

    async def follow(self) -> None:
        """Take the events as they come, until cancelled."""
        async for event in self.events:
            self._take(event)

    async def wait_changed(self, since: int) -> None:
        """Wait until `generation` differs from *since* (at once if it does)."""
        while self.generation == since:
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()


async def _send(sock: trio.socket.SocketType, text: str) -> None:
    await sock.send(text.encode())


async def _watchdog(sock: trio.socket.SocketType, interval: float) -> None:
    """``WATCHDOG=1`` now and every *interval* seconds (until cancelled)."""
    while True:
        await _send(sock, "WATCHDOG=1")
        await trio.sleep(interval)
