"""The stop phase of the shutdown sequence (SPEC §7): services in order, hooks bounded.

Two orders (`Manager`'s ``stop_order``): ``"position"``, one service at a time in
reverse position order (OTP's), and ``"dependencies"``, every service stopping as
soon as each service that depends on it has stopped, the independent ones at
once (systemd's).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import trio

from ._background import call_hook
from ._events import EventHub, ServiceStopTimedOut

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = [
    "STOP_ORDERS",
    "Shutdown",
    "bounded_hook",
    "check_stop_order",
    "stop_by_dependencies",
    "stop_in_order",
]

STOP_ORDERS = ("position", "dependencies")
"""The values of `Manager`'s ``stop_order``."""


def check_stop_order(value: object) -> str:
    """*value* as a stop order.

    Raises:
        ValueError: it is not one of `STOP_ORDERS`.
    """
    if not isinstance(value, str) or value not in STOP_ORDERS:
        raise ValueError(f'stop_order must be "position" or "dependencies", not {value!r}')
    return value


logger = logging.getLogger("trisup")


class Shutdown:
    """One serve's shutdown sequence (SPEC §7); `abort` cuts it short (a second signal)."""

    __slots__ = ("_aborted", "_scope")

    def __init__(self) -> None:
        self._aborted = False
        self._scope: trio.CancelScope | None = None

    def abort(self) -> None:
        """Cut the sequence short: what still runs is cancelled at once."""
        self._aborted = True
        if self._scope is not None:
            self._scope.cancel(reason="trisup: shutdown aborted")

    async def run(
        self,
        hub: EventHub,
        runners: Iterable[Runner],
        stop_timeout: float,
        hooks: tuple[Iterable[Hook], Iterable[Hook], Iterable[Hook]],
        stop_order: str = "position",
    ) -> None:
        """``before_stop`` hooks, the services, ``on_close``, ``after_stop`` (each reversed)."""
        before_stop, on_close, after_stop = (list(h) for h in hooks)
        runners = list(runners)
        name = hub.manager
        with trio.CancelScope(shield=True) as scope:
            self._scope = scope
            if self._aborted:
                scope.cancel()
            for hook in reversed(before_stop):
                await bounded_hook(name, hook, "before_stop", stop_timeout)
            if stop_order == "dependencies":
                await stop_by_dependencies(hub, runners, stop_timeout)
            else:
                await stop_in_order(hub, runners, stop_timeout)
            for hook in reversed(on_close):
                await bounded_hook(name, hook, "on_close", stop_timeout)
            for hook in reversed(after_stop):
                await bounded_hook(name, hook, "after_stop", stop_timeout)
        self._scope = None
        if scope.cancelled_caught:
            for runner in runners:
                runner.cancel_now()


Hook = Callable[[], object]


async def bounded_hook(
    manager: str, hook: Callable[[], object], phase: str, stop_timeout: float
) -> None:
    """Call a stop-phase *hook*; log (not raise) its error, or its running past *stop_timeout*."""
    with trio.move_on_after(stop_timeout) as scope:
        try:
            await call_hook(hook)
        except Exception:
            logger.exception(
                "%s hook %r of manager %s failed",
                phase,
                hook,
                manager,
                extra={"manager": manager, "event": "hook_failed", "phase": phase},
            )
    if scope.cancelled_caught:
        logger.warning(
            "%s hook %r of manager %s timed out after %gs",
            phase,
            hook,
            manager,
            stop_timeout,
            extra={"manager": manager, "event": "hook_timed_out", "phase": phase},
        )


async def stop_in_order(hub: EventHub, runners: Iterable[Runner], stop_timeout: float) -> None:
    """Stop the live *runners* one by one, in reverse position order.

    Each stop waits for its runner's task, at most the service's own ``stop_timeout``
    from its start (past that, `ServiceStopTimedOut` is emitted, as a verb's stop
    would), and the whole phase at most the manager's *stop_timeout*; what is still
    running then is cancelled at once (without waiting) and named in a warning.
    """
    manager = hub.manager
    live = sorted((r for r in runners if r.alive), key=_by_position, reverse=True)
    phase_deadline = trio.current_time() + stop_timeout
    queue = iter(live)
    runner: Runner | None = None  # the stop in progress
    until = math.inf  # when that stop times out
    finished = False
    # One cancel scope serves many stops. Its deadline is set by the first stop in
    # it and moved only to an earlier one: each stop's own deadline is later, so
    # when the scope expires, the stop in progress either has timed out (it is
    # left to the stragglers) or goes on waiting in a fresh scope until its own.
    while not finished and trio.current_time() < phase_deadline:
        with trio.CancelScope(deadline=until if runner is not None else math.inf) as scope:
            while True:
                if runner is None:
                    runner = next(queue, None)
                    if runner is None:
                        finished = True
                        break
                    now = trio.current_time()
                    if now >= phase_deadline:
                        break
                    runner.request_stop(hold=False)
                    until = min(phase_deadline, now + runner.config.stop_timeout)
                    if until < scope.deadline:
                        scope.deadline = until
                await runner.until(runner.exited)
                runner = None
        if runner is not None and trio.current_time() >= until:
            if until < phase_deadline:  # its own stop_timeout, not the phase's, ran out
                _timed_out(hub, runner)
            runner = None  # this stop timed out; the next ones go on
    _cancel_stragglers(manager, live)


async def stop_by_dependencies(
    hub: EventHub, runners: Iterable[Runner], stop_timeout: float
) -> None:
    """Stop the live *runners* concurrently, each once its dependents have stopped.

    A service's stop begins when every service that depends on it (directly or
    through a stopped one) has exited or timed out its own ``stop_timeout``;
    services with no dependents between them stop at once, together. Each stop
    is bounded as in `stop_in_order`, the whole phase by the manager's
    *stop_timeout*; what still runs then is cancelled and named in a warning.
    """
    runners = list(runners)
    by_name = {r.name: r for r in runners}
    dependents: dict[str, list[str]] = {r.name: [] for r in runners}
    for runner in runners:
        for dep in runner.depends_on:
            if dep in dependents:
                dependents[dep].append(runner.name)
    done = {r.name: trio.Event() for r in runners}
    live = [r for r in runners if r.alive]

    async def stop_one(runner: Runner) -> None:
        for name in dependents[runner.name]:
            await done[name].wait()
        if runner.alive:
            runner.request_stop(hold=False)
            own = runner.config.stop_timeout
            with trio.move_on_after(own) as scope:
                await runner.until(runner.exited)
            if scope.cancelled_caught:
                _timed_out(hub, runner)
        done[runner.name].set()

    with trio.move_on_after(stop_timeout):
        async with trio.open_nursery() as nursery:
            for runner in by_name.values():
                nursery.start_soon(
                    stop_one, runner, name=f"trisup:{hub.manager}:stop:{runner.name}"
                )
    _cancel_stragglers(hub.manager, live)


def _cancel_stragglers(manager: str, live: list[Runner]) -> None:
    stragglers = [r for r in live if r.alive]
    for runner in stragglers:
        runner.cancel_now()
    if stragglers:
        names = ", ".join(r.name for r in stragglers)
        logger.warning(
            "manager %s: services still running after the stop phase: %s",
            manager,
            names,
            extra={"manager": manager, "event": "stop_phase_timed_out", "services": names},
        )


def _timed_out(hub: EventHub, runner: Runner) -> None:
    if hub.wanted(logging.WARNING):
        hub.emit(
            ServiceStopTimedOut(
                manager=hub.manager,
                time=trio.current_time(),
                service=runner.name,
                timeout=runner.config.stop_timeout,
            ),
            logging.WARNING,
        )


def _by_position(runner: Runner) -> int:
    return runner.position
