"""The baselines trisup is measured against, written here in plain Trio.

- plain tasks: ``nursery.start_soon`` of the same service function, cancelled
  all at once by their nursery; no supervision at all;
- `MiniSupervisor`: the smallest honest supervisor: one long-lived task per
  service, a `trio.CancelScope` per attempt, ``trio.sleep(0)`` between attempts
  (or a fixed delay), every ``Exception`` caught and the restarts counted;
- `ordered_shutdown`: a raw-Trio floor for an ordered shutdown: each task in its
  own cancel scope, cancelled in reverse start order, each exit awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

__all__ = ["Gate", "MiniService", "MiniSupervisor", "OrderedTasks", "crash"]


class Gate:
    """Counts the services that have entered; an event fires when all *n* have."""

    __slots__ = ("count", "event", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.event = trio.Event()

    async def idle(self) -> None:
        """An idle service: count the entry, then sleep until cancelled."""
        self.count += 1
        if self.count == self.n:
            self.event.set()
        await trio.sleep_forever()


async def crash() -> None:
    """A service that fails at once."""
    raise RuntimeError("boom")


class MiniService:
    """One service of `MiniSupervisor`."""

    __slots__ = ("fn", "name", "restarts", "scope", "stopped")

    def __init__(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.fn = fn
        self.restarts = 0
        self.scope: trio.CancelScope | None = None
        self.stopped = False


class MiniSupervisor:
    """A minimal hand-written supervisor, the restart-path baseline."""

    def __init__(self, delay: float = 0.0) -> None:
        self.services: dict[str, MiniService] = {}
        self.delay = delay

    def add(self, name: str, fn: Callable[[], Awaitable[object]]) -> None:
        """Register a service."""
        self.services[name] = MiniService(name, fn)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service in its own task until cancelled."""
        async with trio.open_nursery() as nursery:
            for service in self.services.values():
                nursery.start_soon(self._run, service)
            task_status.started()

    def stop(self, name: str) -> None:
        """Stop a service (its task ends at its next checkpoint)."""
        service = self.services[name]
        service.stopped = True
        if service.scope is not None:
            service.scope.cancel()

    async def _run(self, service: MiniService) -> None:
        while not service.stopped:
            with trio.CancelScope() as scope:
                service.scope = scope
                try:
                    await service.fn()
                except Exception:
                    service.restarts += 1
                else:
                    service.restarts += 1
            if scope.cancelled_caught:
                return
            await trio.sleep(self.delay)


class OrderedTasks:
    """Plain tasks, each in its own cancel scope, stopped one by one in reverse."""

    def __init__(self, fn: Callable[[], Awaitable[object]]) -> None:
        self._fn = fn
        self._entries: list[tuple[trio.CancelScope, trio.Event]] = []

    def spawn(self, nursery: trio.Nursery, n: int) -> None:
        """Start *n* tasks in *nursery*."""
        for _ in range(n):
            scope = trio.CancelScope()
            done = trio.Event()
            self._entries.append((scope, done))
            nursery.start_soon(self._one, scope, done)

    async def _one(self, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                await self._fn()
        finally:
            done.set()

    async def shutdown(self) -> None:
        """Cancel each task in reverse start order and wait for it to exit."""
        for scope, done in reversed(self._entries):
            scope.cancel()
            await done.wait()
