"""`Manager`: the registry, the control verbs, serve / run / serve_background, hooks.

The manager owns the registry and the serve lifecycle; each `Runner` owns its
service's counters and task. Control verbs change a runner's flags
synchronously, then wait (with the service's ``stop_timeout``) for its task.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import NoReturn, TypeVar, Unpack, final

import trio

from ._background import BackgroundServe, call_hook, run_with_signals, serve_in_background
from ._config import Option, ServiceConfig, ServiceFields, build_config, finite, repair
from ._context import ServeContext, trio_now
from ._errors import (
    ServiceAlreadyExists,
    ServiceNotFound,
    ServiceStopTimeout,
    SupervisorError,
    safe_repr,
)
from ._events import (
    EventHub,
    ManagerStarted,
    ManagerStopped,
    ManagerStopping,
    ServiceAdded,
    ServiceStopTimedOut,
    Subscription,
)
from ._runner import Runner
from ._service import Service
from ._shutdown import bounded_hook, stop_in_order
from ._snapshot import snapshot
from ._status import ExitStatus, ServiceInfo, ServiceStatus
from ._timer import DeadlineTimer
from ._tree import Intensity, Strategy, Tree, start_order

__all__ = ["Manager"]

logger = logging.getLogger("trisup")

F = TypeVar("F", bound=Callable[[], object])


def _check_service(service: object) -> Service:
    if not isinstance(service, Service):
        raise TypeError(
            f"service must have a 'name' and an async 'serve' method, not {type(service).__name__}"
        )
    name: object = service.name
    if not isinstance(name, str) or not name:
        raise TypeError(f"service name must be a non-empty str, not {safe_repr(name)}")
    if not callable(service.serve):
        raise TypeError(f"service {name!r}: 'serve' is not callable")
    return service


@final
class Manager:
    """Runs named services with restart policies, backoff and runtime control.

    A `Manager` is itself a `Service`, so managers nest into supervision trees.

    Args:
        name: the manager's name (its service name inside a parent manager).
        stop_timeout: the bound of the shutdown's service phase and of each hook.
        rng: the random generator for jitter (seed one for reproducible tests).
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
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, not {safe_repr(name)}")
        if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, (int, float)):
            raise TypeError(
                f"stop_timeout must be a number of seconds, not {type(stop_timeout).__name__}"
            )
        if not finite(stop_timeout) or stop_timeout <= 0:
            raise ValueError(
                f"stop_timeout must be positive and finite, not {safe_repr(stop_timeout)}"
            )
        try:
            strategy = Strategy(strategy)
        except Exception:  # not a member; the enum's own message may fail to repr it
            raise ValueError(
                f"strategy must be a trisup.Strategy, not {safe_repr(strategy)}"
            ) from None
        if intensity is not None and (
            isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0
        ):
            raise ValueError(
                f"intensity must be a non-negative int or None, not {safe_repr(intensity)}"
            )
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise TypeError(f"period must be a number of seconds, not {type(period).__name__}")
        if not finite(period) or period <= 0:
            raise ValueError(f"period must be positive and finite, not {safe_repr(period)}")
        self.name = name
        self.stop_timeout = float(stop_timeout)
        self.strategy = strategy
        self.intensity = intensity
        self.period = float(period)
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
        self._aborted = False
        self._shutdown_scope: trio.CancelScope | None = None

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
        service = _check_service(service)
        if service is self:
            raise ValueError(f"manager {self.name!r} cannot supervise itself")
        name = service.name
        if name in self._runners:
            raise ServiceAlreadyExists(name)
        deps = self._check_dependencies(name, depends_on)
        config = repair(config, name)
        runner = Runner(service, config, self._wall_now(), self._hub, self._runners)
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

    def _check_dependencies(self, name: str, depends_on: Iterable[str]) -> tuple[str, ...]:
        if isinstance(depends_on, str):
            raise TypeError("depends_on must be a list of service names, not a str")
        try:
            deps = tuple(depends_on)
        except TypeError:  # not iterable: say which argument
            raise TypeError(
                f"depends_on must be a list of service names, not {type(depends_on).__name__}"
            ) from None
        for dep in deps:
            if not isinstance(dep, str):
                raise TypeError(f"depends_on must hold service names, not {safe_repr(dep)}")
        if name in deps:
            raise ValueError(f"service {name!r} cannot depend on itself")
        if not deps and self._ctx is None:
            return deps  # no edge leaves *name*, so no cycle can pass through it
        known = [n for n in self._runners if n != name]
        graph = {n: r.depends_on for n, r in self._runners.items()}
        graph[name] = deps
        if self._ctx is not None:  # serving: every dependency must exist now
            start_order([*known, name], graph)
        else:  # names may be added later; still refuse a cycle among known ones
            names = [*known, name]
            start_order(names, {n: [d for d in graph[n] if d in graph] for n in names})
        return deps

    def has(self, name: str) -> bool:
        """Whether a service named *name* is registered."""
        return name in self._runners

    def services(self) -> list[Service]:
        """The registered services, in registration order."""
        return [r.service for r in self._runners.values()]

    def get_service_info(self, name: str) -> ServiceInfo:
        """A snapshot of one service. Raises `ServiceNotFound`."""
        return snapshot(self._get(name), trio_now())

    def get_services_info(self) -> list[ServiceInfo]:
        """Snapshots of every service, in registration order."""
        now = trio_now()
        return [snapshot(r, now) for r in self._runners.values()]

    def _get(self, name: str) -> Runner:
        try:
            return self._runners[name]
        except (KeyError, TypeError):
            raise ServiceNotFound(str(name)) from None

    def _wall_now(self) -> float:
        ctx = self._ctx
        now = trio_now()
        if ctx is None or now is None:
            return time.time()
        return ctx.wall(now)

    def _manager_event(self, kind: type[ManagerStarted | ManagerStopping | ManagerStopped]) -> None:
        if self._hub.wanted(logging.INFO):
            self._hub.emit(kind(manager=self.name, time=trio_now()), logging.INFO)

    @asynccontextmanager
    async def subscribe(self, *, max_buffer: int = 1024) -> AsyncGenerator[Subscription]:
        """Receive this manager's events while the block runs.

        The stream is bounded by *max_buffer*: when a subscriber falls behind, the
        oldest events are dropped and counted in `Subscription.lost`; the manager
        never waits for a subscriber.

        Raises:
            ValueError: *max_buffer* is not a positive int.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer must be a positive int, not {safe_repr(max_buffer)}")
        sub = self._hub.subscribe(max_buffer)
        try:
            yield sub
        finally:
            self._hub.unsubscribe(sub)

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
    # Each verb records its request on the runner, which decides (`Runner._go_on`);
    # the verb then waits, within its bound, for the effect or for a later request.

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
        await self._start(self._get(name))

    async def _start(self, runner: Runner) -> None:
        if runner.deleting:
            await trio.lowlevel.checkpoint()
            raise ServiceNotFound(runner.name)
        exiting = runner.stop_asked
        seq, attempt = runner.seq + 1, runner.attempt
        if not runner.request_start(self._ctx if self._accepting else None) or (
            runner.owns_current_task()
        ):
            await trio.lowlevel.checkpoint()
            return
        entered = partial(_entered, runner, seq, attempt)
        if not exiting:
            await _wait(runner, entered)
            return
        timeout = runner.config.stop_timeout
        with trio.move_on_after(timeout):
            await _wait(runner, entered)
            return
        self._stop_timed_out(runner, timeout)

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
        await self._stop(runner)

    async def _stop(self, runner: Runner, *, delete: bool = False) -> None:
        life, seq = runner.life, runner.seq + 1
        if not runner.request_stop(delete=delete) or runner.owns_current_task():
            await trio.lowlevel.checkpoint()
            return
        timeout = runner.config.stop_timeout
        with trio.move_on_after(timeout):
            await _wait(runner, partial(runner.ended_since, life))
            return
        if delete and runner.seq == seq:
            runner.keep()  # it stays registered, stopped
        self._stop_timed_out(runner, timeout)

    def _stop_timed_out(self, runner: Runner, timeout: float) -> NoReturn:
        if self._hub.wanted(logging.WARNING):
            self._hub.emit(
                ServiceStopTimedOut(
                    manager=self.name, time=trio_now(), service=runner.name, timeout=timeout
                ),
                logging.WARNING,
            )
        raise ServiceStopTimeout(runner.name, timeout)

    async def restart_service(self, name: str) -> None:
        """Stop a service (as `stop_service`), then start it; never two at once.

        Returns once the new instance has entered ``serve`` (or waits on a
        dependency, or a later request superseded this one); its dependents
        are restarted too. Called from inside the service it only requests
        the restart. Always a checkpoint.

        Raises:
            ServiceNotFound: no such service, or it is being deleted.
            ServiceStopTimeout: the stop timed out; the service stays stopped.
        """
        runner = self._get(name)
        if not runner.alive or runner.deleting:
            await self._start(runner)
        else:
            await self._restart(runner)
        ctx = self._ctx
        if ctx is not None and not runner.owns_current_task():
            dependents = ctx.tree.dependents(runner)
            if dependents:
                await ctx.tree.restart_dependents(ctx, dependents)

    async def _restart(self, runner: Runner) -> None:
        life, seq, attempt = runner.life, runner.seq + 1, runner.attempt
        runner.request_restart()
        if runner.owns_current_task():
            await trio.lowlevel.checkpoint()
            return
        timeout = runner.config.stop_timeout
        with trio.move_on_after(timeout) as scope:
            await _wait(runner, partial(runner.ended_since, life))  # the old one exited
        if scope.cancelled_caught:
            if runner.seq == seq:
                runner.request_stop()  # the stop timed out: it stays stopped, nothing starts
            self._stop_timed_out(runner, timeout)
        await runner.until(partial(_entered, runner, seq, attempt))

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
        await self._stop(self._get(name), delete=True)

    async def remove_services(self) -> None:
        """Delete every service, concurrently; errors are logged, not raised."""
        await self._each(self._delete_runner, "remove")

    async def restart_services(self) -> None:
        """Restart every service, concurrently; errors are logged, not raised."""
        await self._each(self._restart_runner, "restart")

    async def _delete_runner(self, runner: Runner) -> None:
        if self._runners.get(runner.name) is runner:
            await self._stop(runner, delete=True)

    async def _restart_runner(self, runner: Runner) -> None:
        if self._runners.get(runner.name) is runner:
            await self.restart_service(runner.name)

    async def _each(self, verb: Callable[[Runner], Awaitable[None]], what: str) -> None:
        async def one(runner: Runner) -> None:
            try:
                await verb(runner)
            except SupervisorError as exc:
                logger.error(
                    "%s of service %s failed: %s",
                    what,
                    runner.name,
                    exc,
                    extra={"service": runner.name, "event": f"{what}_failed"},
                )

        runners = list(self._runners.values())
        if not runners:
            await trio.lowlevel.checkpoint()
            return
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(one, runner)

    async def wait_status(self, name: str, *statuses: ServiceStatus) -> ServiceStatus:
        """Wait until the service is in one of *statuses*; return that status.

        Returns at once if it already is (after a checkpoint).

        Raises:
            TypeError: no status given.
            ServiceNotFound: no such service, or it was deleted meanwhile.
        """
        if not statuses:
            raise TypeError("wait_status() needs at least one status")
        wanted = frozenset(ServiceStatus(s) for s in statuses)
        runner = self._get(name)
        value: ServiceStatus | None = runner.status.value
        if value is None or value not in wanted:
            value = await runner.status.wait_value(  # pyright: ignore[reportUnknownMemberType]
                lambda v: v is None or v in wanted  # pyright: ignore[reportUnknownLambdaType]
            )
        else:
            await trio.lowlevel.checkpoint()
        if value is None:
            raise ServiceNotFound(name)
        return value

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
        self._start_order()  # refuse an unknown dependency or a cycle before anything runs
        self._serving = True
        self._aborted = False
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
                self._manager_event(ManagerStarted)
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
            self._manager_event(ManagerStopped)
        if error is not None:
            raise error
        if ctx is not None and ctx.fatal is not None:
            raise ctx.fatal

    def _start_order(self) -> list[Runner]:
        """The runners by position: dependency order, then registration order (renumbered)."""
        runners = self._runners
        if any(r.depends_on for r in runners.values()):
            names = start_order(list(runners), {n: r.depends_on for n, r in runners.items()})
            order = [runners[n] for n in names]
        else:
            order = list(runners.values())
        for position, runner in enumerate(order):
            runner.position = position
        self._next_position = len(order)
        return order

    async def _startup(self, ctx: ServeContext, task_status: trio.TaskStatus[None]) -> None:
        """Start the services by position (SPEC §4), then the ``after_start`` hooks."""
        for hook in list(self._before_start):
            await call_hook(hook)
        runners = self._start_order()  # hooks may have added services
        ctx.tree.has_dependencies = any(r.depends_on for r in runners)
        self._accepting = True
        plain: list[tuple[Runner, int]] = []
        for runner in runners:
            if ctx.terminated.is_set():
                return
            if runner.held or runner.alive or self._runners.get(runner.name) is not runner:
                continue
            attempt = runner.attempt
            runner.request_start(ctx)  # afresh, as start_service would
            if runner.accepts_task_status:  # ready, classified, timed out or waiting
                await runner.until(partial(runner.settled_since, attempt))
                # a KeyboardInterrupt that ended it has cancelled us by now: not ready
                await trio.lowlevel.checkpoint_if_cancelled()
            else:
                plain.append((runner, attempt))
        for runner, attempt in plain:  # spawned in one batch; each has entered serve
            await runner.until(partial(runner.entered_since, attempt))
        for hook in list(self._after_start):
            if ctx.terminated.is_set():
                return
            await call_hook(hook)
        if not ctx.terminated.is_set():
            task_status.started()

    async def _shutdown(self, ctx: ServeContext) -> None:
        ctx.stopping = True
        self._accepting = False
        self._manager_event(ManagerStopping)
        with trio.CancelScope(shield=True) as scope:
            self._shutdown_scope = scope
            if self._aborted:
                scope.cancel()
            for hook in reversed(self._before_stop):
                await bounded_hook(self.name, hook, "before_stop", self.stop_timeout)
            await stop_in_order(self._hub, self._runners.values(), self.stop_timeout)
            for hook in reversed(self._on_close):
                await bounded_hook(self.name, hook, "on_close", self.stop_timeout)
            for hook in reversed(self._after_stop):
                await bounded_hook(self.name, hook, "after_stop", self.stop_timeout)
        self._shutdown_scope = None
        if scope.cancelled_caught:
            for runner in self._runners.values():
                runner.cancel_now()

    def _abort(self) -> None:
        """Cut the shutdown sequence short (a second signal)."""
        self._aborted = True
        if self._shutdown_scope is not None:
            self._shutdown_scope.cancel(reason="trisup: shutdown aborted")

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
        return await run_with_signals(self.name, self.serve, self._abort)


async def _wait(runner: Runner, done: Callable[[], bool]) -> None:
    """Wait until *done()* holds; a checkpoint either way."""
    if done():
        await trio.lowlevel.checkpoint()
    else:
        await runner.until(done)


def _entered(runner: Runner, seq: int, attempt: int) -> bool:
    """Whether a start (request *seq*, made at *attempt*) is done or superseded."""
    return runner.seq != seq or runner.entered_since(attempt)
