"""``trisup reload``: re-read the TOML file and apply the difference to a running manager.

A reload compares the file's new `Plan` with the one applied last, service by
service (`ServicePlan` equality: command, cwd, env, process options, config,
dependencies):

- a service only in the new file is added (started if the manager serves);
- a service only in the old one is deleted (stopped, then unregistered);
- a changed service is deleted, then its new definition added under the same
  name (a new `ProcessService` with its new settings, a new pid);
- every other service is left alone: same instance, same pid.

An invalid file changes nothing: the reload fails with `trisup check`'s message.
``[manager]`` and ``[http]`` are read once, at start: a change there is reported,
not applied. Reloads are serialized (a second one waits for the first, then reads
the file afresh); a reload is refused once the manager is stopping, and one in
progress when the shutdown begins stops applying at its next step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import final

import trio

from ._errors import SupervisorError
from ._manager import Manager
from ._tomlconfig import ConfigError, Plan, ServicePlan, load_config
from ._tree import start_order
from .process import ProcessService

__all__ = ["ReloadDiff", "ReloadError", "Reloader", "diff_plans"]

logger = logging.getLogger("trisup.reload")


class ReloadError(Exception):
    """A reload that was refused or failed; the message says why.

    Attributes:
        status: the HTTP status that carries it: 422 for an invalid file (nothing
            changed), 409 for a stopping manager (nothing changed), 500 when a
            step failed (the other steps were applied).
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadDiff:
    """What a reload does, by service name (each in the file order of its plan)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """The JSON object of ``POST /api/reload`` (without ``status`` and ``message``)."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": list(self.unchanged),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line: ``added a; removed b; changed c; 2 unchanged``."""
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        parts.append(f"{len(self.unchanged)} unchanged")
        return "; ".join(parts)


def diff_plans(old: Plan, new: Plan) -> ReloadDiff:
    """Compare two plans of the same file, service by service."""
    before: Mapping[str, ServicePlan] = {s.name: s for s in old.services}
    after: Mapping[str, ServicePlan] = {s.name: s for s in new.services}
    notes: list[str] = []
    if dict(old.manager) != dict(new.manager):
        notes.append("[manager] changed: not applied until trisup run restarts")
    if old.http != new.http:
        notes.append("[http] changed: not applied until trisup run restarts")
    return ReloadDiff(
        added=tuple(n for n in after if n not in before),
        removed=tuple(n for n in before if n not in after),
        changed=tuple(n for n in after if n in before and after[n] != before[n]),
        unchanged=tuple(n for n in after if n in before and after[n] == before[n]),
        notes=tuple(notes),
    )


@final
class Reloader:
    """Applies a file's new plan to the manager built from its old one.

    Args:
        manager: the running manager.
        plan: the plan the manager was built from.
        processes: the manager's `ProcessService` instances; kept up to date
            (the deleted ones leave it, the added ones join it).
        stopping: tells whether the manager is stopping (a reload is refused then).
    """

    def __init__(
        self,
        manager: Manager,
        plan: Plan,
        processes: MutableSequence[ProcessService],
        stopping: Callable[[], bool],
    ) -> None:
        self.manager = manager
        self.plan = plan
        self._processes = processes
        self._stopping = stopping
        self._lock = trio.Lock()

    def _refuse_if_stopping(self) -> None:
        if self._stopping():
            raise ReloadError(f"manager {self.manager.name} is stopping", status=409)

    async def reload(self) -> ReloadDiff:
        """Re-read the file and apply it; return what was done.

        Waits for a reload in progress first. Checkpoints; cancellation stops
        applying at the next step.

        Raises:
            ReloadError: the file is invalid (nothing changed), the manager is
                stopping, or a step failed (the others were applied).
        """
        self._refuse_if_stopping()
        async with self._lock:
            self._refuse_if_stopping()
            try:
                plan = load_config(self.plan.file)
            except ConfigError as exc:
                raise ReloadError(f"{exc}; nothing changed", status=422) from None
            diff = diff_plans(self.plan, plan)
            self.plan = plan
            failures = await self._apply(plan, diff)
        logger.info(
            "reloaded %s: %s",
            plan.file,
            diff.summary(),
            extra={"manager": self.manager.name, "event": "reloaded", **diff.to_dict()},
        )
        for note in diff.notes:
            logger.warning(
                "reload of %s: %s", plan.file, note, extra={"manager": self.manager.name}
            )
        if failures:
            raise ReloadError(f"reload of {plan.file}: {'; '.join(failures)}", status=500)
        return diff

    async def _apply(self, plan: Plan, diff: ReloadDiff) -> list[str]:
        failures: list[str] = []
        gone = {*diff.removed, *diff.changed}
        async with trio.open_nursery() as nursery:
            for name in gone:
                nursery.start_soon(self._delete, name, failures)
        self._processes[:] = [p for p in self._processes if p.name not in gone]
        fresh = {*diff.added, *diff.changed}
        services = {s.name: s for s in plan.services}
        order = start_order(list(services), {n: s.depends_on for n, s in services.items()})
        for name in order:
            if name not in fresh:
                continue
            self._refuse_if_stopping()
            service_plan = services[name]
            service = service_plan.make_service()
            try:
                self.manager.add_with_config(
                    service, service_plan.config, depends_on=service_plan.depends_on
                )
            except (SupervisorError, ValueError) as exc:
                failures.append(f"service {name}: not added: {exc}")
                continue
            self._processes.append(service)
        return failures

    async def _delete(self, name: str, failures: list[str]) -> None:
        try:
            await self.manager.delete(name)
        except SupervisorError as exc:
            failures.append(f"service {name}: not deleted: {exc}")
