"""`current_service`: the service the calling task belongs to."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast, final

import trio

from ._config import ServiceConfig
from ._context import runner_of_current_task

if TYPE_CHECKING:
    from ._context import Running
    from ._manager import Manager

__all__ = ["CurrentService", "current_service"]


@final
class CurrentService:
    """The service the calling task belongs to; see `current_service`."""

    __slots__ = ("_runner",)

    def __init__(self, runner: Running) -> None:
        self._runner = runner

    @property
    def name(self) -> str:
        """The service's name."""
        return self._runner.name

    @property
    def manager(self) -> Manager:
        """The `Manager` running it.

        .. versionchanged:: 0.2
           The manager itself, not its name (``current_service().manager.name``).
        """
        ctx = self._runner.ctx
        assert ctx is not None  # a service's task runs only while its manager serves
        return cast("Manager", ctx.manager)

    @property
    def config(self) -> ServiceConfig:
        """The service's `ServiceConfig` (its ``stop_timeout``, for instance)."""
        return self._runner.config

    @property
    def stop_requested(self) -> trio.Event:
        """Set when a stop of the current attempt is requested.

        With a ``grace_period``, the service has that long to return on its
        own before it is cancelled.
        """
        return self._runner.stop_event()


def current_service() -> CurrentService:
    """The service the calling task runs in (also from tasks it started in its nurseries).

    Raises:
        RuntimeError: not called from inside a supervised service.
    """
    runner = runner_of_current_task()
    if runner is None:
        raise RuntimeError("current_service() called outside a trisup service")
    return CurrentService(runner)
