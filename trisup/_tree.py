"""Supervision across services: strategies, dependencies and restart intensity.

The runner decides *whether* its own service restarts (SPEC §4); this module
decides what that restart means for the others:

- a strategy (one-for-all, rest-for-one) stops the affected siblings in reverse
  start order, waits until their tasks have exited, and starts everything again
  in start order with readiness;
- dependents of a restarting service are stopped and started again once their
  dependencies are ready;
- more than ``intensity`` automatic restarts within ``period`` seconds end the
  manager with `RestartIntensityExceeded` (OTP's restart intensity).
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Protocol

import trio
from trio_util import AsyncValue

from ._config import seconds
from ._errors import RestartIntensityExceeded, safe_repr
from ._events import EventHub, ManagerGaveUp
from ._status import Phase

__all__ = [
    "Group",
    "Intensity",
    "Member",
    "Serving",
    "Strategy",
    "Tree",
    "check_dependencies",
    "check_supervision",
    "start_order",
]

logger = logging.getLogger("trisup")


class Strategy(enum.StrEnum):
    """What an automatic restart of one service does to its siblings."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def start_order(names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """A topological order of *names* that keeps their given order where free.

    Raises:
        ValueError: a dependency is not among *names*, or the graph has a cycle
            (the message names the cycle).
    """
    index = {name: i for i, name in enumerate(names)}
    for name in names:
        for dep in deps.get(name, ()):
            if dep not in index:
                raise ValueError(f"service {name!r} depends on unknown service {dep!r}")
    waiting = {name: len(deps.get(name, ())) for name in names}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in deps.get(name, ()):
            dependents[dep].append(name)
    ready = [(index[n], n) for n in names if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, (index[dependent], dependent))
    if len(order) < len(names):
        raise ValueError(f"dependency cycle: {' -> '.join(_find_cycle(names, deps))}")
    return order


def _find_cycle(names: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in deps.get(name, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in names:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []  # pragma: no cover - only called when a cycle exists


class Intensity:
    """OTP's restart intensity: at most *limit* automatic restarts per *period*."""

    __slots__ = ("_recent", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._recent: deque[tuple[float, BaseException | None]] = deque()

    def record(self, now: float, error: BaseException | None) -> bool:
        """Count a restart; return whether the limit is now exceeded."""
        recent = self._recent
        recent.append((now, error))
        horizon = now - self.period
        while recent and recent[0][0] <= horizon:
            recent.popleft()
        while len(recent) > self.limit + 1:
            recent.popleft()
        return len(recent) > self.limit

    def failures(self) -> list[Exception]:
        """The errors of the restarts still counted."""
        return [e for _, e in self._recent if isinstance(e, Exception)]


class Serving(Protocol):
    """What the tree needs of the serve it belongs to (`ServeContext` is one)."""

    @property
    def nursery(self) -> trio.Nursery: ...

    @property
    def stopping(self) -> bool: ...

    def terminate(self, error: BaseException | None) -> None: ...


class Member(Protocol):
    """What the tree asks of a service's runner (`Runner` is one): it never assigns."""

    @property
    def name(self) -> str: ...

    @property
    def position(self) -> int: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...

    @property
    def group(self) -> object | None: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def stop_asked(self) -> bool: ...

    @property
    def life(self) -> int: ...

    @property
    def attempt(self) -> int: ...

    @property
    def hub(self) -> EventHub: ...

    @property
    def alive(self) -> bool: ...

    async def until(self, done: Callable[[], bool]) -> None: ...

    def settled_since(self, attempt: int) -> bool: ...

    def ended_since(self, life: int) -> bool: ...

    def request_group_stop(self, group: object) -> None: ...

    def release(self) -> None: ...

    def readiness(self) -> AsyncValue[bool]: ...

    def request_restart(self, *, fresh: bool = ...) -> None: ...

    def count_restart(self, *, grow: bool = ...) -> None: ...


class Group:
    """One group restart: the services it stops and starts again, and its state."""

    __slots__ = ("failed", "members", "stopping")

    def __init__(self, failed: Member, members: list[Member]) -> None:
        self.failed = failed
        self.members = members  # in position order, the failed one among them
        self.stopping = True  # until every member has stopped: deaths meanwhile join it


class Tree:
    """The cross-service rules of one manager, for one ``serve``.

    The tree decides; runners carry out its requests (``request_group_stop``,
    ``release``, ``request_restart``) and never see each other.
    """

    def __init__(
        self,
        manager: str,
        strategy: Strategy,
        intensity: Intensity | None,
        runners: Mapping[str, Member],
    ) -> None:
        self.manager = manager
        self.strategy = strategy
        self.intensity = intensity
        self.runners = runners
        self.lock = trio.Lock()
        self.groups: list[Group] = []  # the group restarts not finished yet, oldest first
        self.has_dependencies = any(r.depends_on for r in runners.values())

    # ------------------------------------------------------------- intensity

    def note_restart(self, ctx: Serving, runner: Member, error: BaseException | None) -> bool:
        """Count an automatic restart; return ``False`` if the manager must give up."""
        intensity = self.intensity
        if intensity is None or not intensity.record(trio.current_time(), error):
            return True
        reason = (
            f"more than {intensity.limit} restarts within {intensity.period:g}s "
            f"(last: {runner.name})"
        )
        exc = RestartIntensityExceeded(self.manager, reason)
        failures = intensity.failures()
        if failures:
            exc.__cause__ = ExceptionGroup(f"recent failures in {self.manager}", failures)
        ctx.terminate(exc)
        if runner.hub.wanted(logging.ERROR):
            runner.hub.emit(
                ManagerGaveUp(manager=self.manager, time=trio.current_time(), reason=reason),
                logging.ERROR,
            )
        return False

    # ------------------------------------------------------------ strategies

    def stopping_group(self, runner: Member) -> Group | None:
        """The group restart that is stopping *runner*'s group, if any: its death is part of it."""
        for group in self.groups:
            if group.stopping and runner in group.members:
                return group
        return None

    def start_group_restart(self, ctx: Serving, failed: Member, delay: float) -> Group | None:
        """Begin the strategy's group restart for *failed* (``None`` under one-for-one)."""
        strategy = self.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            return None
        position = failed.position
        members = sorted(
            (
                r
                for r in self.runners.values()
                if r is failed
                or (
                    r.alive
                    and r.group is None
                    and (strategy is Strategy.ONE_FOR_ALL or r.position > position)
                )
            ),
            key=_by_position,
        )
        if len(members) == 1:
            return None
        group = Group(failed, members)
        self.groups.append(group)
        ctx.nursery.start_soon(self._group_restart, ctx, group, trio.current_time() + delay)
        return group

    async def _group_restart(self, ctx: Serving, group: Group, deadline: float) -> None:
        """Stop the group (reverse position order), wait, start it again in position order."""
        try:
            async with self.lock:
                for runner in reversed(group.members):
                    if runner is group.failed:
                        continue
                    if runner.alive and runner.group is None and not runner.stop_asked:
                        runner.request_group_stop(group)
                    await runner.until(partial(_stopped_for, runner, group))
                group.stopping = False
                await trio.sleep_until(deadline)
                if ctx.stopping:
                    return  # the manager is shutting down: no restart follows, none is counted
                if group.failed.group is group:
                    group.failed.count_restart()
                for runner in group.members:
                    if ctx.stopping:
                        return
                    if runner.group is group and runner.phase is Phase.GROUP_WAIT:
                        settled = partial(runner.settled_since, runner.attempt)
                        runner.release()
                        await runner.until(settled)
        finally:
            group.stopping = False
            self.groups.remove(group)
            for runner in group.members:
                if runner.group is group:
                    runner.release()  # cut short (the shutdown): let it go on, or exit

    # ---------------------------------------------------------- dependencies

    def dependents(self, runner: Member) -> list[Member]:
        """Every live service that depends on *runner*, directly or not."""
        if not self.has_dependencies:
            return []
        found: dict[str, Member] = {}
        stack = [runner.name]
        while stack:
            name = stack.pop()
            for other in self.runners.values():
                if name in other.depends_on and other.name not in found:
                    found[other.name] = other
                    stack.append(other.name)
        return [r for r in found.values() if r.alive]

    async def restart_dependents(self, ctx: Serving, dependents: Iterable[Member]) -> None:
        """Stop *dependents* (reverse position order); each starts again in its own task
        once its dependencies are ready."""
        for runner in sorted(dependents, key=_by_position, reverse=True):
            if ctx.stopping:
                return
            if runner.alive and not runner.stop_asked and runner.group is None:
                stopped = partial(runner.ended_since, runner.life)
                runner.request_restart(fresh=False)
                await runner.until(stopped)


def _by_position(runner: Member) -> int:
    return runner.position


def _stopped_for(runner: Member, group: Group) -> bool:
    """Whether a group restart's stop of *runner* is over (parked, exited, or taken out)."""
    return runner.group is not group or runner.phase is Phase.GROUP_WAIT or not runner.alive


def check_supervision(
    strategy: object, intensity: object, period: object
) -> tuple[Strategy, float]:
    """Check a manager's strategy, intensity and period; the strategy and period to use.

    Raises:
        TypeError: *period* is not a number.
        ValueError: an unknown strategy, a negative or non-int intensity, a
            non-positive or non-finite period.
    """
    try:
        checked = Strategy(strategy)  # type: ignore[arg-type]  # any value: refused below
    except Exception:  # not a member; the enum's own message may fail to repr it
        raise ValueError(f"strategy must be a trisup.Strategy, not {safe_repr(strategy)}") from None
    if intensity is not None and (
        isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0
    ):
        raise ValueError(
            f"intensity must be a non-negative int or None, not {safe_repr(intensity)}"
        )
    return checked, seconds("period", period)


def check_dependencies(
    name: str, depends_on: Iterable[str], registered: Mapping[str, Member], *, serving: bool
) -> tuple[str, ...]:
    """*name*'s dependencies, checked against the *registered* services' own.

    While *serving*, every dependency must be registered; before, names may come
    later, but a cycle among the known ones is refused at once.

    Raises:
        TypeError: *depends_on* is not a list of names.
        ValueError: *name* depends on itself, on an unknown service (while serving),
            or through a cycle.
    """
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
    if not deps and not serving:
        return deps  # no edge leaves *name*, so no cycle can pass through it
    if serving:  # every dependency must exist now (another service's need not)
        for dep in deps:
            if dep not in registered:
                raise ValueError(f"service {name!r} depends on unknown service {dep!r}")
    names = [*(n for n in registered if n != name), name]
    full = {**{n: m.depends_on for n, m in registered.items()}, name: deps}
    start_order(names, {n: [d for d in full[n] if d in full] for n in names})  # no cycle
    return deps
