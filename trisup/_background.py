"""`BackgroundServe`, the handle `Manager.serve_background` returns, and hook calls."""

from __future__ import annotations

import inspect
import logging
import math
import signal
from collections.abc import Awaitable, Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, final

import outcome
import trio

from ._errors import FatalError, error_text, find_terminate
from ._status import ExitStatus

__all__ = [
    "BackgroundServe",
    "ForwardStatus",
    "absorb_late_signals",
    "call_hook",
    "exit_status",
    "run_with_signals",
    "serve_in_background",
    "serve_with_signals",
]

logger = logging.getLogger("trisup")

Hook = Callable[[], object]


class _Serve(Protocol):
    def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> Awaitable[None]: ...


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


async def serve_in_background(
    serve: _Serve,
    handle: BackgroundServe,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *serve* in the handle's scope; its errors go to the handle, not the nursery."""
    forward = ForwardStatus(task_status)
    result: outcome.Outcome[None] = outcome.Value(None)
    try:
        with handle.scope:
            try:
                await serve(task_status=forward)
            except Exception as exc:
                result = outcome.Error(exc)
    finally:
        handle.finish(result)
    if not forward.called:
        task_status.started()


async def run_with_signals(name: str, serve: _Serve, abort: Callable[[], None]) -> ExitStatus:
    """Serve until SIGINT / SIGTERM (a second one calls *abort*); return the exit status."""
    result, _ = await serve_with_signals(name, serve, abort)
    return exit_status(name, result)


async def serve_with_signals(
    name: str,
    serve: _Serve,
    abort: Callable[[], None],
    *,
    deadline: float = math.inf,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> tuple[outcome.Outcome[None], str | None]:
    """Serve until SIGINT / SIGTERM or *deadline*; the outcome and the first signal's name.

    The one signal path of `Manager.run` and ``trisup run``: the first signal
    cancels *serve* (its shutdown sequence runs), a second one calls *abort*
    (cut the shutdown short). A signal that arrives as the receiver closes is
    absorbed and logged, never re-raised after the shutdown has run. Ready
    (*task_status*) when *serve* is.
    """
    result: outcome.Outcome[None] = outcome.Value(None)
    serve_scope = trio.CancelScope(deadline=deadline)
    received: list[str] = []

    def note(sig: str) -> bool:
        """Log the signal *sig*; whether it is the first one."""
        received.append(sig)
        extra = {"manager": name, "event": "signal", "signal": sig}
        if len(received) == 1:
            logger.warning(
                "received %s, shutting down gracefully (send it again to stop at once)",
                sig,
                extra=extra,
            )
            return True
        logger.warning("received %s again, stopping at once", sig, extra=extra)
        return False

    def late(sig: str) -> None:
        received.append(sig)
        extra = {"manager": name, "event": "signal", "signal": sig}
        logger.warning("received %s as the shutdown ended; nothing left to stop", sig, extra=extra)

    with _absorb_late(late), trio.open_signal_receiver(*_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    if note(signal.Signals(signum).name):
                        serve_scope.cancel(reason=f"trisup: {received[0]}")
                    else:
                        abort()

            nursery.start_soon(watch, name=f"trisup:{name}:signals")
            with serve_scope:
                try:
                    await serve(task_status=task_status)
                except Exception as exc:
                    result = outcome.Error(exc)
            # A signal that came before serve returned may still be on its way to the
            # watcher (trio delivers them with run_sync_soon, in order): let it arrive,
            # or closing the receiver would re-raise it (KeyboardInterrupt, or SIGTERM's
            # default action) after the shutdown has run. What still comes later is
            # absorbed by _absorb_late.
            delivered = trio.Event()
            trio.lowlevel.current_trio_token().run_sync_soon(delivered.set)
            await delivered.wait()
            nursery.cancel_scope.cancel(reason="trisup: serve ended")
    return result, received[0] if received else None


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def absorb_late_signals(name: str, *, restore: bool = True) -> AbstractContextManager[None]:
    """SIGINT / SIGTERM are logged and ignored within: around a shutdown's last steps.

    `serve_with_signals` inside it restores this handler, not the default action, when
    its receiver closes; so a signal after the manager stopped, while what served
    beside it winds down, does not kill the process. Without *restore* the handler
    stays after the block: for a program that exits once its shutdown is over.
    """

    def late(sig: str) -> None:
        extra = {"manager": name, "event": "signal", "signal": sig}
        logger.warning("received %s as the shutdown ended; nothing left to stop", sig, extra=extra)

    return _absorb_late(late, restore=restore)


@contextmanager
def _absorb_late(note: Callable[[str], object], *, restore: bool = True) -> Generator[None]:
    """Around a signal receiver: what it re-raises as it closes is noted, not acted on."""

    def late(signum: int, frame: object) -> None:
        note(signal.Signals(signum).name)

    saved = {sig: signal.signal(sig, late) for sig in _SIGNALS}
    try:
        yield
    finally:
        if restore:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


def exit_status(name: str, result: outcome.Outcome[None]) -> ExitStatus:
    """The exit status of a serve that ended with *result*; errors are logged."""
    if not isinstance(result, outcome.Error):
        return ExitStatus.SUCCESS
    term = find_terminate(result.error)
    if isinstance(term, FatalError):
        logger.error(
            "manager %s ended by a fatal error: %s",
            name,
            error_text(term),
            extra={"manager": name, "event": "fatal", "status": int(term.status)},
        )
        return term.status
    logger.error(
        "manager %s ended with an error",
        name,
        exc_info=result.error,
        extra={"manager": name, "event": "error"},
    )
    return ExitStatus.ERROR
