"""Phase, readiness and summaries of services, read from their `ServiceInfo` (pure).

Shared by the HTTP control plane (``trisup.http``) and the systemd notifier
(``trisup.systemd``). No trio import.

A service's *phase* refines its status: a ``running`` or ``crashing`` service
whose attempt has ended and that waits to restart is ``backoff``. Readiness: a
service counts when it is meant to run (not stopped by hand, and not an
``auto_start=False`` service that was never started); it is ready when an attempt
runs and has reported readiness, or when it has completed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ._status import ServiceInfo, ServiceStatus

__all__ = ["PHASES", "is_ready", "is_running", "not_ready", "phase", "phase_of", "summary"]

S = ServiceStatus

PHASES: tuple[str, ...] = (
    "running",
    "starting",
    "crashing",
    "backoff",
    "stopped",
    "failed",
    "error",
    "completed",
    "idle",
)
"""Every phase, in the order summaries list them."""


def is_running(info: ServiceInfo) -> bool:
    """Whether an attempt of the service runs now (it is not waiting to restart)."""
    return info.running


def phase_of(status: ServiceStatus, waiting: bool) -> str:
    """The phase of a service in *status*, *waiting* to restart or not."""
    if waiting and (status is S.RUNNING or status is S.CRASHING):
        return "backoff"
    return str(status)


def phase(info: ServiceInfo) -> str:
    """The service's phase: its status, or ``backoff`` while it waits to restart."""
    status = info.status
    return phase_of(status, (status is S.RUNNING or status is S.CRASHING) and not is_running(info))


def is_ready(info: ServiceInfo) -> bool:
    """Whether the service is ready: running and ready, or completed."""
    status = info.status
    if status is S.COMPLETED:
        return True
    return (status is S.RUNNING or status is S.CRASHING) and is_running(info)


def not_ready(infos: Iterable[ServiceInfo], *, exclude: Iterable[str] = ()) -> list[str]:
    """The names of the services meant to run that are not ready, in the given order."""
    skip = frozenset(exclude)
    return [i.name for i in infos if not i.stopped and i.name not in skip and not is_ready(i)]


def summary(
    manager: str,
    infos: Iterable[ServiceInfo],
    phase_of_info: Callable[[ServiceInfo], str] | None = None,
) -> str:
    """One line: the manager's name, the number of services and their phases.

    *phase_of_info* gives a service's phase (default: `phase`).

    >>> summary("app", [])
    'app: 0 services'
    """
    counts: dict[str, int] = dict.fromkeys(PHASES, 0)
    total = 0
    get = phase if phase_of_info is None else phase_of_info
    for info in infos:
        counts[get(info)] += 1
        total += 1
    parts = [f"{n} {p}" for p, n in counts.items() if n]
    noun = "service" if total == 1 else "services"
    head = f"{manager}: {total} {noun}"
    return ", ".join([head, *parts])
