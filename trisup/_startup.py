"""The service phase of ``serve``'s startup (SPEC §4): positions, then the starts in order."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

import trio

from ._lifecycle import STARTING
from ._tree import start_order

if TYPE_CHECKING:
    from ._context import ServeContext
    from ._runner import Runner

__all__ = ["assign_positions", "settled", "start_all"]


async def settled(runner: Runner, attempt: int) -> None:
    """Wait until a start made at *attempt* is ready or ended, or its ``start_timeout`` passed.

    The timed-out attempt is cancelled at that moment, but may take its cleanup's time
    to end: the wait does not.
    """
    timeout = runner.config.start_timeout
    with trio.move_on_after(math.inf if timeout is None else timeout):
        await runner.until(partial(runner.settled_since, attempt))


def assign_positions(runners: Mapping[str, Runner]) -> list[Runner]:
    """Number *runners* by position: dependency order, then registration order.

    Raises:
        ValueError: a dependency is unknown or makes a cycle.
    """
    if any(r.depends_on for r in runners.values()):
        names = start_order(list(runners), {n: r.depends_on for n, r in runners.items()})
        order = [runners[n] for n in names]
    else:
        order = list(runners.values())
    for position, runner in enumerate(order):
        runner.position = position
    return order


async def start_all(ctx: ServeContext, order: list[Runner], registry: Mapping[str, Runner]) -> None:
    """Start every auto-start service afresh, by position, as ``start_service`` would.

    A service that reports readiness is awaited until it is ready, its first attempt
    is classified (or timed out), or it waits on a dependency; plain services start
    in one batch, and this returns once each has entered ``serve``.
    """
    for runner in order:
        if ctx.terminated.is_set():
            return
        if runner.held or runner.alive or registry.get(runner.name) is not runner:
            continue
        attempt = runner.attempt
        runner.request_start(ctx)
        if runner.accepts_task_status:  # at most start_timeout: its attempt is cut then
            await settled(runner, attempt)
            # a KeyboardInterrupt that ended it has cancelled us by now: not ready
            await trio.lowlevel.checkpoint_if_cancelled()
    # plain services were spawned in one batch (and a service may have started one
    # early): wait until each spawned one has entered serve
    for runner in order:
        if runner.phase is STARTING and runner.run_started is None:
            await runner.until(runner.not_spawning)
