"""`BackgroundServe`, the handle `Manager.serve_background` returns, and hook calls."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import final

import outcome
import trio

__all__ = ["BackgroundServe", "ForwardStatus", "call_hook"]

Hook = Callable[[], object]


async def call_hook(fn: Hook) -> None:
    """Call a sync or async callable, awaiting its result if it is awaitable."""
    result = fn()
    if inspect.isawaitable(result):
        await result


class ForwardStatus:
    """A ``task_status`` that forwards the first ``started()`` and remembers it."""

    __slots__ = ("_inner", "called")

    def __init__(self, inner: trio.TaskStatus[None]) -> None:
        self._inner = inner
        self.called = False

    def started(self, value: None = None) -> None:
        """Forward readiness once."""
        if not self.called:
            self.called = True
            self._inner.started()


@final
class BackgroundServe:
    """A manager serving in a nursery of the caller's, from `Manager.serve_background`.

    ``cancel()`` stops it (the shutdown sequence runs); ``await wait()`` returns
    the `outcome.Outcome` of ``serve``: ``Value(None)`` after a cancellation,
    ``Error(exc)`` for any ``Exception`` it raised, startup errors included.
    """

    __slots__ = ("_done", "_outcome", "_scope")

    def __init__(self) -> None:
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._outcome: outcome.Outcome[None] | None = None

    def cancel(self) -> None:
        """Stop serving; does not wait (use `wait`)."""
        self._scope.cancel(reason="trisup: serve_background handle cancelled")

    @property
    def done(self) -> bool:
        """Whether ``serve`` has ended."""
        return self._done.is_set()

    async def wait(self) -> outcome.Outcome[None]:
        """Wait until ``serve`` has ended; return its outcome.

        A checkpoint; cancelling the caller does not stop the manager.
        """
        await self._done.wait()
        assert self._outcome is not None
        return self._outcome

    def finish(self, result: outcome.Outcome[None]) -> None:
        """Record the outcome (called by the manager)."""
        self._outcome = result
        self._done.set()

    @property
    def scope(self) -> trio.CancelScope:
        """The cancel scope ``serve`` runs in (for the manager)."""
        return self._scope
