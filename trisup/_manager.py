"""`Manager`: the registry, the control verbs, serve / run / serve_background, hooks.

The manager owns the registry and the serve sequence; each `Runner` owns its
service's state and task. A control verb asks the runner (`_verbs.py`), which
records the request and decides in its task; the manager never assigns a
runner's fields.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar, Unpack, final

import trio

from ._background import BackgroundServe, call_hook, run_with_signals, serve_in_background
from ._config import Option, ServiceConfig, ServiceFields, build_config, repair, seconds
from ._context import ServeContext, trio_now, wall_now
from ._errors import (
    ServiceAlreadyExists,
    ServiceNotFound,
    safe_repr,
)
from ._events import (
    EventHub,
    ManagerStarted,
    ManagerStopped,
    ManagerStopping,
    ServiceAdded,
    ServiceEvent,
    Subscription,
    TreeSubscription,
)
from ._runner import Runner
from ._service import Service, check_service
from ._shutdown import Shutdown, check_stop_order
from ._snapshot import snapshot
from ._startup import assign_positions, start_all
from ._status import ExitStatus, ServiceInfo, ServiceStatus
from ._timer import DeadlineTimer
from ._tree import Intensity, Strategy, Tree, check_dependencies, check_supervision
from ._verbs import each, restart, start, stop, wait_status

__all__ = ["Manager"]

logger = logging.getLogger("trisup")

F = TypeVar("F", bound=Callable[[], object])


@final
class Manager:
    """Runs named services with restart policies, backoff and runtime control.

    A `Manager` is itself a `Service`, so managers nest into supervision trees.

    Args:
        name: the manager's name (its service name inside a parent manager).
        stop_timeout: the bound of the shutdown's service phase and of each hook.
        rng: the random generator for jitter (seed one for reproducible tests).
        stop_order: ``"position"`` (the default, OTP's): the shutdown stops one
            service at a time, in reverse position order; ``"dependencies"``
            (systemd's): each service stops once those that depend on it have
            stopped, independent ones concurrently.
    """

    def __init__(
        self,
        name: str = "trisup",
        *,
        stop_timeout: float = 30.0,
        rng: random.Random | None = None,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        intensity: int | None = None,
        period: float = 5.0,
        stop_order: str = "position",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, not {safe_repr(name)}")
        self.stop_timeout = seconds("stop_timeout", stop_timeout)
        self.strategy, self.period = check_supervision(strategy, intensity, period)
        self.stop_order = check_stop_order(stop_order)
        self.name = name
        self.intensity = intensity
        self._rng = rng if rng is not None else random.Random()
        self._runners: dict[str, Runner] = {}
        self._next_position = 0
        self._hub = EventHub(name)
        self._before_start: list[Callable[[], object]] = []
        self._after_start: list[Callable[[], object]] = []
        self._before_stop: list[Callable[[], object]] = []
        self._after_stop: list[Callable[[], object]] = []
        self._on_close: list[Callable[[], object]] = []
        self._ctx: ServeContext | None = None
        self._serving = False
        self._accepting = False
        self._stopper = Shutdown()

    def __repr__(self) -> str:
        return (
            f"<trisup.Manager {self.name!r} services={len(self._runners)} serving={self._serving}>"
        )

    # ------------------------------------------------------------- registry

    def add(
        self,
        service: Service,
        *options: Option,
        depends_on: Iterable[str] = (),
        **config: Unpack[ServiceFields],
    ) -> None:
        """Register *service*; options apply first, in order, then keywords.

        Keywords are `ServiceConfig` field names. If the manager is serving and
        the service auto-starts, it is started at once. *depends_on* names
        services that must be ready before this one starts.

        Raises:
            TypeError: a wrong type, an unknown keyword or a non-`Option`.
            ValueError: a NaN or infinite duration, or a dependency that is
                unknown (while serving) or makes a cycle.
            ServiceAlreadyExists: the name is taken (the existing one is untouched).
        """
        self.add_with_config(service, build_config(options, config), depends_on=depends_on)

    def add_with_config(
        self, service: Service, config: ServiceConfig, *, depends_on: Iterable[str] = ()
    ) -> None:
        """Register *service* with *config* (repaired by the seed's rules).

        Raises:
            TypeError: *service* is not a service or *config* not a `ServiceConfig`.
            ServiceAlreadyExists: the name is taken (the existing one is untouched).
        """
        service = check_service(service)
        if service is self:
            raise ValueError(f"manager {self.name!r} cannot supervise itself")
        name = service.name
        if name in self._runners:
            raise ServiceAlreadyExists(name)
        deps = check_dependencies(name, depends_on, self._runners, serving=self._ctx is not None)
        config = repair(config, name)
        runner = Runner(service, config, wall_now(self._ctx), self._hub, self._runners)
        runner.depends_on = deps
        runner.position = self._next_position  # serve renumbers by dependencies
        self._next_position += 1
        self._runners[name] = runner
        if self._hub.wanted(logging.INFO):
            self._hub.emit(
                ServiceAdded(manager=self.name, time=trio_now(), service=name), logging.INFO
            )
        ctx = self._ctx
        if ctx is not None:
            if deps:
                ctx.tree.has_dependencies = True
            if self._accepting and not runner.held:
                runner.spawn(ctx)

    def has(self, name: str) -> bool:
        """Whether a service named *name* is registered."""
        return name in self._runners

    def services(self) -> list[Service]:
        """The registered services, in registration order."""
        return [r.service for r in self._runners.values()]

    def get_service_info(self, name: str) -> ServiceInfo:
        """A snapshot of one service. Raises `ServiceNotFound`."""
        return snapshot(self._get(name), trio_now())

    def get_service(self, name: str) -> Service:
        """The service registered as *name*. Raises `ServiceNotFound`.

        .. versionadded:: 0.1.0
        """
        return self._get(name).service

    def get_service_config(self, name: str) -> ServiceConfig:
        """The effective `ServiceConfig` of a service (as repaired when added), read only.

        Raises `ServiceNotFound`.

        .. versionadded:: 0.1.0
        """
        return self._get(name).config

    def get_services_info(self) -> list[ServiceInfo]:
        """Snapshots of every service, in registration order."""
        now = trio_now()
        return [snapshot(r, now) for r in self._runners.values()]

    def _accepting_ctx(self) -> ServeContext | None:
        """The serve's context while it accepts starts (``None`` before and during shutdown)."""
        return self._ctx if self._accepting else None

    def _get(self, name: str) -> Runner:
        try:
            return self._runners[name]
        except (KeyError, TypeError):
            raise ServiceNotFound(str(name)) from None

    def subscribe(self, *, max_buffer: int = 1024) -> AbstractAsyncContextManager[Subscription]:
        """Receive this manager's events while the block runs.

        The stream is bounded by *max_buffer*: when a subscriber falls behind, the
        oldest events are dropped and counted in `Subscription.lost`; the manager
        never waits for a subscriber.

        Raises:
            ValueError: *max_buffer* is not a positive int.
        """
        return self._hub.subscription(max_buffer)

    @asynccontextmanager
    async def subscribe_tree(
        self, *, max_buffer: int = 1024
    ) -> AsyncGenerator[TreeSubscription[Manager]]:
        """Receive the events of this manager and of every manager nested in it.

        A service that is itself a `Manager` is a *group*: its events come
        tagged with its path (``"jobs"``, ``"jobs/sub"``; ``""`` for this
        manager's own), and so do those of the managers nested in it, followed
        recursively, including managers added or removed while the block runs
        (attached the moment their ``ServiceAdded`` is emitted, detached with
        their ``ServiceRemoved``). Bounded as `subscribe`.

        Raises:
            ValueError: *max_buffer* is not a positive int.

        .. versionadded:: 0.1.0
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer must be a positive int, not {safe_repr(max_buffer)}")

        def changed(path: str, event: ServiceEvent) -> None:
            child = _child_path(path, event.service)
            if isinstance(event, ServiceAdded):
                manager = tree.source(path)
                runner = None if manager is None else manager._runners.get(event.service)
                if runner is not None and isinstance(runner.service, Manager):
                    runner.service._attach(tree, child)
            elif tree.source(child) is not None:
                tree.detach(child)

        tree: TreeSubscription[Manager] = TreeSubscription(max_buffer, changed)
        self._attach(tree, "")
        try:
            yield tree
        finally:
            tree.close()

    def _attach(self, tree: TreeSubscription[Manager], path: str) -> None:
        """Attach this manager and those nested in it to *tree*, under *path*."""
        for p, manager in self.groups(path).items():
            tree.attach(p, manager._hub, manager)

    def groups(self, path: str = "") -> dict[str, Manager]:
        """This manager (as *path*) and every manager nested in it, by group path.

        A service that is itself a `Manager` is a group: the one registered as
        ``jobs`` here is ``"jobs"``, one nested in it ``"jobs/sub"`` (each under
        *path* when given). Parents come before their children.

        .. versionadded:: 0.1.0
        """
        out: dict[str, Manager] = {}
        seen: set[int] = set()  # a manager nested in itself, further down, is listed once
        todo: list[tuple[str, Manager]] = [(path, self)]
        for p, manager in todo:  # breadth first; grows while it runs
            if p in out or id(manager) in seen:
                continue
            seen.add(id(manager))
            out[p] = manager
            for name, runner in manager._runners.items():
                service = runner.service
                if isinstance(service, Manager) and service is not manager:
                    todo.append((_child_path(p, name), service))
        return out

    # ---------------------------------------------------------------- hooks

    def before_start(self, fn: F) -> F:
        """Run *fn* (sync or async) when ``serve`` begins, before any service."""
        self._before_start.append(fn)
        return fn

    def after_start(self, fn: F) -> F:
        """Run *fn* once every service has started, before ``serve`` reports ready."""
        self._after_start.append(fn)
        return fn

    def before_stop(self, fn: F) -> F:
        """Run *fn* when shutdown begins, before any service is stopped."""
        self._before_stop.append(fn)
        return fn

    def after_stop(self, fn: F) -> F:
        """Run *fn* at the very end of shutdown."""
        self._after_stop.append(fn)
        return fn

    def on_close(self, fn: F) -> F:
        """Run *fn* once per ``serve``, after the services have stopped.

        Never triggered by stop, restart or delete; never listed as a service.
        """
        self._on_close.append(fn)
        return fn

    # -------------------------------------------------------- control verbs
    # A verb records its request on the runner, then waits within its bound (_verbs.py)

    async def start_service(self, name: str) -> None:
        """Start a service; a no-op if it is running or starting.

        Clears stopped / failed / completed and the non-lifetime counters, and
        returns once the new instance has entered ``serve`` (not once it is
        ready), once it waits on a dependency that is not running, or once a
        later request (a stop, a delete) supersedes it. Before ``serve`` it only
        records that the service should start. Always a checkpoint.

        Raises:
            ServiceNotFound: no such service, or it is being deleted.
            ServiceStopTimeout: its earlier instance, still exiting, did not exit
                within ``stop_timeout`` (the start stays requested: it follows
                once that instance has exited).
        """
        await start(self._get(name), self._accepting_ctx(), self._hub)

    async def stop_service(self, name: str) -> None:
        """Stop a service and wait for its instance to exit, at most its ``stop_timeout``.

        A no-op if it is already stopped. Called from inside the service it
        only requests the stop. The service stays registered and is not
        restarted; a later start wins over this stop. Always a checkpoint.

        Raises:
            ServiceNotFound: no such service.
            ServiceStopTimeout: it did not exit in time (it stays stopped; its
                task is reaped once it exits).
        """
        runner = self._get(name)
        if runner.held and not runner.deleting:
            await trio.lowlevel.checkpoint()
            return
        await stop(runner, self._hub)

    async def restart_service(self, name: str) -> None:
        """Stop a service (as `stop_service`), then start it; never two at once.

        Returns once the new instance has entered ``serve`` (or waits on a
        dependency, or a later request superseded this one); its dependents
        are restarted too, in the background. Called from inside the service
        it only requests the restart. Always a checkpoint.

        Raises:
            ServiceNotFound: no such service, or it is being deleted.
            ServiceStopTimeout: the stop timed out; the service stays stopped.
        """
        runner = self._get(name)
        if not runner.alive or runner.deleting:
            await start(runner, self._accepting_ctx(), self._hub)
        else:
            await restart(runner, self._hub)
        ctx = self._ctx
        if ctx is not None and not ctx.stopping:  # in the background: not within this bound
            dependents = ctx.tree.dependents(runner)
            if dependents:
                ctx.nursery.start_soon(ctx.tree.restart_dependents, ctx, dependents)

    def reset_service(self, name: str) -> None:
        """Clear failed and the non-lifetime counters; starts nothing.

        Raises:
            ServiceNotFound: no such service.
        """
        self._get(name).reset()

    async def delete(self, name: str) -> None:
        """Stop a service (as `stop_service`), then unregister it once it has exited.

        A delete wins over every other request: from now on, starts and
        restarts of the name raise `ServiceNotFound`. The name stays
        registered (``add`` refuses it) until the instance has exited. Called
        from inside the service it only requests the delete. Always a checkpoint.

        Raises:
            ServiceNotFound: no such service.
            ServiceStopTimeout: the stop timed out; it stays registered, stopped.
        """
        await stop(self._get(name), self._hub, delete=True)

    async def remove_services(self) -> None:
        """Delete every service, concurrently; errors are logged, not raised."""
        await each(self._runners.values(), self._delete_runner, "remove")

    async def restart_services(self) -> None:
        """Restart every service, concurrently; errors are logged, not raised."""
        await each(self._runners.values(), self._restart_runner, "restart")

    async def _delete_runner(self, runner: Runner) -> None:
        if self._runners.get(runner.name) is runner:
            await stop(runner, self._hub, delete=True)

    async def _restart_runner(self, runner: Runner) -> None:
        if self._runners.get(runner.name) is runner:
            await self.restart_service(runner.name)

    async def wait_status(self, name: str, *statuses: ServiceStatus) -> ServiceStatus:
        """Wait until the service is in one of *statuses*; return that status.

        Returns at once if it already is (after a checkpoint).

        Raises:
            TypeError: no status given.
            ServiceNotFound: no such service, or it was deleted meanwhile.
        """
        if not statuses:
            raise TypeError("wait_status() needs at least one status")
        return await wait_status(self._get(name), statuses)

    # ------------------------------------------------------------------ serve

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the services until cancelled or terminated by a fatal error.

        ``before_start`` hooks, then the services in registration order (each
        that reports readiness awaited), then ``after_start`` hooks, then
        ``task_status.started()``. On cancellation or a fatal error the shutdown
        sequence runs (see the design notes), then a fatal error or a start
        hook's error is raised bare. A cancelled serve raises only the
        ``Cancelled`` its canceller absorbs.

        Raises:
            RuntimeError: the manager is already serving.
            FatalError: a service raised one (after shutdown).
            TerminateSupervisor: a service raised one (after shutdown).
            RestartIntensityExceeded: more than ``intensity`` automatic restarts
                within ``period`` (after shutdown).
            ValueError: a dependency is unknown or makes a cycle (before anything starts).
        """
        if self._serving:
            raise RuntimeError(f"manager {self.name!r} is already serving")
        self._next_position = len(assign_positions(self._runners))  # refuses a cycle first
        self._serving = True
        self._stopper = Shutdown()
        error: BaseException | None = None
        ctx: ServeContext | None = None
        try:
            async with trio.open_nursery() as nursery:
                timer = DeadlineTimer()
                intensity = (
                    None if self.intensity is None else Intensity(self.intensity, self.period)
                )
                tree = Tree(self.name, self.strategy, intensity, self._runners)
                ctx = ServeContext(
                    nursery, timer, time.time() - trio.current_time(), self._rng, tree, manager=self
                )
                self._ctx = ctx
                nursery.start_soon(timer.run, name=f"trisup:{self.name}:timer")
                self._hub.manager_event(ManagerStarted)
                try:
                    with trio.CancelScope() as ctx.startup:  # a fatal error cuts it short
                        await self._startup(ctx, task_status)
                    await ctx.terminated.wait()
                except Exception as exc:
                    error = exc
                finally:
                    if error is not None or ctx.terminated.is_set():
                        # ended by an error: a cancel (a signal) during the shutdown
                        # must not replace that error with a Cancelled
                        nursery.cancel_scope.shield = True
                    try:
                        await self._shutdown(ctx)
                    finally:  # also when a KeyboardInterrupt cut the shutdown short
                        for runner in self._runners.values():
                            runner.cancel_now()
                        nursery.cancel_scope.cancel(reason="trisup: manager shut down")
        finally:
            self._ctx = None
            self._accepting = False
            self._serving = False
            self._hub.manager_event(ManagerStopped)
        if error is not None:
            raise error
        if ctx is not None and ctx.fatal is not None:
            raise ctx.fatal

    async def _startup(self, ctx: ServeContext, task_status: trio.TaskStatus[None]) -> None:
        """``before_start`` hooks, the services by position, ``after_start`` hooks, started()."""
        for hook in list(self._before_start):
            await call_hook(hook)
        order = assign_positions(self._runners)  # hooks may have added services
        self._next_position = len(order)
        ctx.tree.has_dependencies = any(r.depends_on for r in order)
        self._accepting = True
        await start_all(ctx, order, self._runners)
        for hook in list(self._after_start):
            if ctx.terminated.is_set():
                return
            await call_hook(hook)
        if not ctx.terminated.is_set():
            task_status.started()

    async def _shutdown(self, ctx: ServeContext) -> None:
        ctx.stopping = True
        self._accepting = False
        self._hub.manager_event(ManagerStopping)
        await self._stopper.run(
            self._hub,
            self._runners.values(),
            self.stop_timeout,
            (self._before_stop, self._on_close, self._after_stop),
            self.stop_order,
        )

    async def serve_background(self, nursery: trio.Nursery) -> BackgroundServe:
        """Serve in *nursery*; return once startup is done (or has failed).

        Errors of ``serve`` (``Exception`` only) are delivered by the handle's
        ``wait()``, never raised into *nursery*.
        """
        handle = BackgroundServe()
        await nursery.start(serve_in_background, self.serve, handle)
        return handle

    async def run(self) -> ExitStatus:
        """Serve with graceful SIGINT / SIGTERM handling; return the exit status.

        The first signal starts the shutdown sequence, a second one cuts it
        short. Returns ``SUCCESS`` after a signal, a fatal error's status, or
        ``ERROR`` (logged) for any other error. ``sys.exit(trio.run(m.run))``.
        """
        return await run_with_signals(self.name, self.serve, lambda: self._stopper.abort())


def _child_path(path: str, name: str) -> str:
    """The group path of the manager registered as *name* in the group at *path*."""
    return f"{path}/{name}" if path else name
