"""How the manager's control verbs wait: each records its request, then waits within its bound.

A verb asks the runner (`Requests`), which records the request and cancels or
wakes its task; the task decides (`Runner._go_on`). The verb then waits for the
effect, or for a later request that supersedes it, never longer than its bound:

=============  =========================================================  =================
verb           returns once                                               bound
=============  =========================================================  =================
start          the new instance entered ``serve``, waits on a dependency,  the old instance's
               or a later request superseded the start                    ``stop_timeout``
stop, delete   the instance it stopped has exited                         ``stop_timeout``
restart        the old instance exited, then the new one entered          ``stop_timeout``
=============  =========================================================  =================

Called from inside the service (or a task it started), a verb only requests.
Every path is a checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, NoReturn

import trio

from ._context import ServeContext, trio_now
from ._errors import ServiceNotFound, ServiceStopTimeout, SupervisorError
from ._events import EventHub, ServiceStopTimedOut
from ._status import ServiceStatus

if TYPE_CHECKING:
    from ._runner import Runner

__all__ = ["each", "restart", "start", "stop", "wait_status"]

logger = logging.getLogger("trisup")


async def start(runner: Runner, ctx: ServeContext | None, hub: EventHub) -> None:
    """``start_service``; *ctx* is ``None`` while the manager does not accept starts."""
    if runner.deleting:
        await trio.lowlevel.checkpoint()
        raise ServiceNotFound(runner.name)
    exiting = runner.stop_asked
    attempt = runner.attempt
    if not runner.request_start(ctx) or runner.owns_current_task():
        await trio.lowlevel.checkpoint()
        return
    entered = partial(_entered, runner, runner.seq, attempt)  # this request's number
    if not exiting:
        await _wait(runner, entered)
        return
    timeout = runner.config.stop_timeout  # the old instance must exit first
    with trio.move_on_after(timeout):
        await _wait(runner, entered)
        return
    timed_out(hub, runner)


async def stop(runner: Runner, hub: EventHub, *, delete: bool = False) -> None:
    """``stop_service`` (or ``delete``): wait until the instance it stopped has exited."""
    life = runner.life
    lives = runner.request_stop(delete=delete)
    seq = runner.seq  # this request's number
    if not lives or runner.owns_current_task():
        await trio.lowlevel.checkpoint()
        return
    timeout = runner.config.stop_timeout
    with trio.move_on_after(timeout):
        await _wait(runner, partial(runner.ended_since, life))
        return
    if delete and runner.seq == seq:
        runner.keep()  # it stays registered, stopped
    timed_out(hub, runner)


async def restart(runner: Runner, hub: EventHub) -> None:
    """``restart_service`` of a live service: the old instance exits, then the next enters."""
    life, attempt = runner.life, runner.attempt
    runner.request_restart()
    seq = runner.seq  # this request's number
    if runner.owns_current_task():
        await trio.lowlevel.checkpoint()
        return
    timeout = runner.config.stop_timeout
    with trio.move_on_after(timeout) as scope:
        await _wait(runner, partial(runner.ended_since, life))  # the old one exited
    if scope.cancelled_caught:
        if runner.seq == seq:
            runner.request_stop()  # the stop timed out: it stays stopped, nothing starts
        timed_out(hub, runner)
    await runner.until(partial(_entered, runner, seq, attempt))


async def each(
    runners: Iterable[Runner], verb: Callable[[Runner], Awaitable[None]], what: str
) -> None:
    """*verb* on every runner, concurrently: as long as the slowest; errors logged, not raised."""

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

    todo = list(runners)
    if not todo:
        await trio.lowlevel.checkpoint()
        return
    async with trio.open_nursery() as nursery:
        for runner in todo:
            nursery.start_soon(one, runner)


async def wait_status(runner: Runner, statuses: Iterable[ServiceStatus]) -> ServiceStatus:
    """``wait_status``: the status once it is one of *statuses* (a checkpoint either way)."""
    wanted = frozenset(ServiceStatus(s) for s in statuses)
    value: ServiceStatus | None = runner.status.value
    if value is None or value not in wanted:
        value = await runner.status.wait_value(  # pyright: ignore[reportUnknownMemberType]
            lambda v: v is None or v in wanted  # pyright: ignore[reportUnknownLambdaType]
        )
    else:
        await trio.lowlevel.checkpoint()
    if value is None:  # deleted meanwhile
        raise ServiceNotFound(runner.name)
    return value


def timed_out(hub: EventHub, runner: Runner) -> NoReturn:
    """Emit `ServiceStopTimedOut` and raise `ServiceStopTimeout` for *runner*."""
    timeout = runner.config.stop_timeout
    if hub.wanted(logging.WARNING):
        hub.emit(
            ServiceStopTimedOut(
                manager=hub.manager, time=trio_now(), service=runner.name, timeout=timeout
            ),
            logging.WARNING,
        )
    raise ServiceStopTimeout(runner.name, timeout)


async def _wait(runner: Runner, done: Callable[[], bool]) -> None:
    """Wait until *done()* holds; a checkpoint either way."""
    if done():
        await trio.lowlevel.checkpoint()
    else:
        await runner.until(done)


def _entered(runner: Runner, seq: int, attempt: int) -> bool:
    """Whether a start (request *seq*, made at *attempt*) is done or superseded."""
    return runner.seq != seq or runner.entered_since(attempt)
