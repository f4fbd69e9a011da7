"""Helpers for testing code that uses trisup, made for ``autojump_clock``.

- `EventRecorder` / `record_events`: every event of a manager, with its time.
- `scripted_service`: a service that follows a script, one attempt after another:
  ``scripted_service("db", [fail_after(2), run(10), succeed_after(1), hang()])``.
- `serving`: serve a manager for the length of a block; errors are re-raised.
- `start_supervised`: a pytest fixture (``pytest_plugins = ["trisup.testing"]`` in
  ``conftest.py``) that serves
  managers inside a test and tears them down at its end, like Elixir's
  ``start_supervised!``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import final

import outcome
import trio

from ._background import BackgroundServe
from ._events import Event, ServiceEvent, Subscription
from ._manager import Manager

__all__ = [
    "EventRecorder",
    "ScriptedService",
    "Starter",
    "Step",
    "fail_after",
    "hang",
    "ready_after",
    "record_events",
    "run",
    "scripted_service",
    "serving",
    "start_supervised",
    "succeed_after",
]


# ------------------------------------------------------------------ recording


@final
class EventRecorder:
    """The events of one manager, in order; made by `record_events`."""

    __slots__ = ("_events", "_sub")

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub
        self._events: list[Event] = []

    @property
    def events(self) -> list[Event]:
        """Every event so far."""
        while (event := self._sub.receive_nowait()) is not None:
            self._events.append(event)
        return list(self._events)

    @property
    def lost(self) -> int:
        """Events dropped because the recorder's buffer was full."""
        return self._sub.lost

    def kinds(self, service: str | None = None, *, status: bool = False) -> list[str]:
        """The kinds of the events (of *service* only, if given), status and phase
        changes left out unless *status*."""
        return [
            e.kind
            for e in self.events
            if (status or (e.kind != "status" and e.kind != "phase"))
            and (service is None or (isinstance(e, ServiceEvent) and e.service == service))
        ]

    def timeline(self, service: str, kind: str) -> list[float | None]:
        """The times of *service*'s events of one *kind* (e.g. ``"starting"``)."""
        return [
            e.time
            for e in self.events
            if isinstance(e, ServiceEvent) and e.service == service and e.kind == kind
        ]


@asynccontextmanager
async def record_events(
    manager: Manager, *, max_buffer: int = 1_000_000
) -> AsyncGenerator[EventRecorder]:
    """Record *manager*'s events while the block runs."""
    async with manager.subscribe(max_buffer=max_buffer) as sub:
        yield EventRecorder(sub)


# ------------------------------------------------------------------- scripting


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a script; make steps with the functions below.

    A step either ends the attempt (``fail_after``, ``succeed_after``, ``hang``)
    or is followed by the next step within the same attempt (``run``,
    ``ready_after``).
    """

    action: str
    seconds: float = 0.0
    message: str = ""

    @property
    def ends_attempt(self) -> bool:
        """Whether the attempt ends with this step."""
        return self.action in ("fail", "succeed", "hang")


def fail_after(seconds: float, message: str = "scripted failure") -> Step:
    """Raise ``RuntimeError(message)`` *seconds* after the step begins."""
    return Step("fail", seconds, message)


def succeed_after(seconds: float) -> Step:
    """Return cleanly *seconds* after the step begins."""
    return Step("succeed", seconds)


def run(seconds: float) -> Step:
    """Stay up *seconds*, then go on with the next step in the same attempt."""
    return Step("run", seconds)


def ready_after(seconds: float) -> Step:
    """Report readiness *seconds* after the step begins (ready at once otherwise)."""
    return Step("ready", seconds)


def hang() -> Step:
    """Run until stopped."""
    return Step("hang")


@final
class ScriptedService:
    """A service that plays its script: each attempt takes steps until one ends it.

    When the script is used up, further attempts hang. ``starts`` holds the
    time of each attempt's start.
    """

    def __init__(self, name: str, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        for step in steps:
            if not isinstance(step, Step):
                raise TypeError(f"script steps must be trisup.testing steps, not {step!r}")
        self.name = name
        self._steps = list(steps)
        self._next = 0
        self.starts: list[float] = []

    def _take(self) -> Step:
        if self._next >= len(self._steps):
            return hang()
        step = self._steps[self._next]
        self._next += 1
        return step

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Play the next steps of the script, up to one that ends the attempt."""
        self.starts.append(trio.current_time())
        step = self._take()
        if step.action == "ready":
            await trio.sleep(step.seconds)
            step = self._take()
        task_status.started()
        while step.action == "run":
            await trio.sleep(step.seconds)
            step = self._take()
        if step.action == "fail":
            await trio.sleep(step.seconds)
            raise RuntimeError(step.message)
        if step.action == "succeed":
            await trio.sleep(step.seconds)
            return
        await trio.sleep_forever()


def scripted_service(name: str, steps: Sequence[Step]) -> ScriptedService:
    """A service named *name* that plays *steps*, attempt after attempt."""
    return ScriptedService(name, steps)


# ------------------------------------------------------------------- serving


@asynccontextmanager
async def serving(manager: Manager) -> AsyncGenerator[Manager]:
    """Serve *manager* while the block runs; it is ready when the block starts.

    At the end the manager is shut down and any error of ``serve`` (a fatal
    error, a start hook's error) is raised.
    """
    async with trio.open_nursery() as nursery:
        handle = await manager.serve_background(nursery)
        try:
            yield manager
        finally:
            handle.cancel()
    result = await handle.wait()
    if isinstance(result, outcome.Error):
        result.unwrap()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    async def start_supervised() -> AsyncGenerator[Starter]:
        """Serve managers inside a test; they are shut down when the test ends.

        ``manager = await start_supervised(trisup.Manager(...))`` returns once
        the manager is ready. An error of ``serve`` fails the test at teardown.
        """
        async with trio.open_nursery() as nursery:
            starter = Starter(nursery)
            yield starter
            await starter.close()


@final
class Starter:
    """What the `start_supervised` fixture gives a test: call it with a manager."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._handles: list[BackgroundServe] = []

    async def __call__(self, manager: Manager) -> Manager:
        self._handles.append(await manager.serve_background(self._nursery))
        return manager

    async def close(self) -> None:
        errors: list[Exception] = []
        for handle in reversed(self._handles):
            handle.cancel()
            result = await handle.wait()
            if isinstance(result, outcome.Error) and isinstance(result.error, Exception):
                errors.append(result.error)
        if errors:
            raise ExceptionGroup("supervised managers failed", errors)
