"""Shown phases, readiness, summaries and the API's JSON of services, read from their info.

Pure (no trio import). Shared by the HTTP control plane (``trisup.http``), the
systemd notifier (``trisup.systemd``) and the command line's tables. Every answer
is read from `ServiceInfo.phase` (written by the service's runner), so it is exact
at the moment of the snapshot: nothing is inferred from other fields or events.

Where one word stands for a service (the console's badge and timeline, the tables'
PHASE column, summaries), it is its *shown phase*: ``"stopped"`` when it is held
(stopped by hand, ``ServiceInfo.stopped``), else its phase. Readiness: a service
counts when it is meant to run (not held); it is ready when its phase is
``running`` (in ``serve`` and ready) or ``completed``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._errors import type_name, typed
from ._status import Phase, ServiceInfo

__all__ = [
    "SHOWN",
    "api_dict",
    "counts",
    "error_text",
    "error_type",
    "is_ready",
    "not_ready",
    "shown",
    "shown_phase",
    "summary",
]

SHOWN: tuple[str, ...] = (
    "running",
    "starting",
    "waiting_deps",
    "stopping",
    "backoff",
    "group_wait",
    "stopped",
    "failed",
    "completed",
    "idle",
    "removed",
)
"""Every shown phase (each `Phase` and ``"stopped"``), in the order summaries list them."""

_READY = frozenset({Phase.RUNNING, Phase.COMPLETED})


def shown(phase: Phase, held: bool) -> str:
    """The one word shown for a service in *phase*: ``"stopped"`` if *held*, else the phase."""
    return "stopped" if held else str(phase)


def shown_phase(info: ServiceInfo) -> str:
    """The one word shown for the service of *info* (see `shown`)."""
    return "stopped" if info.stopped else str(info.phase)


def is_ready(info: ServiceInfo) -> bool:
    """Whether the service is ready: running (in ``serve``, ready) or completed."""
    return info.phase in _READY


def not_ready(infos: Iterable[ServiceInfo], *, exclude: Iterable[str] = ()) -> list[str]:
    """The critical services meant to run (not held) that are not ready, in order.

    A service with ``critical=False``, or named in *exclude*, never counts.
    """
    skip = frozenset(exclude)
    return [i.name for i in infos if counts(i) and i.name not in skip and not is_ready(i)]


def counts(info: ServiceInfo) -> bool:
    """Whether readiness counts *info*: a critical service meant to run (not held)."""
    return info.critical and not info.stopped


def error_type(info: ServiceInfo) -> str:
    """The type of the service's last error (``"FileNotFoundError"``), ``""`` without one.

    The type of the error the message is about: a group of one error, a
    `DoNotRestart` with a cause and a `FatalError` name the error they wrap. A
    start that timed out is a ``ServiceStartTimeout``.
    """
    return "" if info.error is None else type_name(info.error)


def error_text(info: ServiceInfo) -> str:
    """The last error as a person reads it: ``"FileNotFoundError: /etc/shop/credentials.json"``.

    Its type and message (``metric.last_error``); the type alone when the message is
    empty; ``""`` without an error.
    """
    return typed(error_type(info), info.metric.last_error)


def api_dict(info: ServiceInfo) -> dict[str, object]:
    """The HTTP API's JSON object of a service: ``to_dict()``'s seed keys and trisup's own.

    trisup adds ``phase``, ``critical`` and ``last_error_type`` (`error_type`; the
    seed's ``last_error`` stays the message). A service whose details hold a ``pid``
    (a `ProcessService`) also gets ``pid``.
    """
    data = info.to_dict()
    data["phase"] = str(info.phase)
    data["critical"] = info.critical
    data["last_error_type"] = error_type(info)
    if "pid" in info.details:
        pid = info.details["pid"]
        data["pid"] = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    return data


def summary(manager: str, infos: Iterable[ServiceInfo]) -> str:
    """One line: the manager's name, the number of services and their shown phases.

    >>> summary("app", [])
    'app: 0 services'
    """
    counts: dict[str, int] = dict.fromkeys(SHOWN, 0)
    total = 0
    for info in infos:
        counts[shown_phase(info)] += 1
        total += 1
    parts = [f"{n} {p}" for p, n in counts.items() if n]
    noun = "service" if total == 1 else "services"
    head = f"{manager}: {total} {noun}"
    return ", ".join([head, *parts])
