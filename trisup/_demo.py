"""``trisup demo``: a small supervision tree that narrates itself on stdout.

The tree::

    demo                the root Manager
    |-- ticker          a steady worker: one tick a second
    |-- flaky           crashes every 2 s; restart_delay 0.5 s, doubling up to 2 s
    |-- doomed          fails every 0.5 s; max_restarts=2, then FAILED for good
    |-- api             reports readiness through task_status after a 1 s warm-up
    `-- backend         a nested Manager (a Manager is a Service)
        |-- cache       ready after 0.5 s
        `-- migrate     a one-shot job: returns after 2 s, policy ON_FAILURE

It serves the tree with `Manager.run` (so Ctrl-C / SIGTERM shut it down
gracefully) inside ``trio.move_on_after(duration)``; either way the shutdown
sequence runs. Status changes, failures and backoff waits are printed as they
happen by a `logging.Handler` on the ``trisup`` logger, and a table of every
service's info follows the shutdown. This module is the CLI; it may print.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import trio

from . import (
    ExitStatus,
    Manager,
    RestartPolicy,
    ServiceInfo,
    ServiceStatus,
    new_service,
    with_backoff,
    with_restart_delay,
    with_restart_window,
)

__all__ = ["DEFAULT_DURATION", "Narrator", "build_tree", "run_demo"]

DEFAULT_DURATION = 20.0
"""How long ``trisup demo`` runs unless told otherwise, in seconds."""

_TREE = """\
  demo                the root Manager
  |-- ticker          a steady worker: one tick a second
  |-- flaky           crashes every 2s; restart_delay 0.5s, doubling up to 2s
  |-- doomed          fails every 0.5s; max_restarts=2, then failed for good
  |-- api             reports readiness through task_status after a 1s warm-up
  `-- backend         a nested Manager
      |-- cache       ready after 0.5s
      `-- migrate     a one-shot job: returns after 2s, policy ON_FAILURE
"""

_FAILURE_STATUSES = frozenset({ServiceStatus.CRASHING, ServiceStatus.FAILED, ServiceStatus.ERROR})
_MANAGER_EVENTS = {
    "manager_started": "serving",
    "manager_stopping": "shutting down",
    "manager_stopped": "stopped",
}


# ------------------------------------------------------------------ services


@dataclass(slots=True)
class _Tally:
    ticks: int = 0
    crashes: int = 0


async def _tick(tally: _Tally) -> None:
    """A steady worker: one tick a second, forever."""
    while True:
        await trio.sleep(1.0)
        tally.ticks += 1


async def _flaky(tally: _Tally) -> None:
    """Works for 2 s, then crashes."""
    await trio.sleep(2.0)
    tally.crashes += 1
    raise RuntimeError(f"simulated crash #{tally.crashes}")


async def _doomed() -> None:
    """Fails every time, after 0.5 s."""
    await trio.sleep(0.5)
    raise ConnectionRefusedError("db.internal:5432 refused the connection")


async def _warm_up(seconds: float, *, task_status: trio.TaskStatus[None]) -> None:
    """Ready after *seconds*, then serves until cancelled."""
    await trio.sleep(seconds)
    task_status.started()
    await trio.sleep_forever()


async def _migrate() -> None:
    """A one-shot job that finishes after 2 s."""
    await trio.sleep(2.0)


def build_tree(tally: _Tally | None = None) -> tuple[Manager, Manager]:
    """Build the demo's tree; return the root manager and the nested one."""
    tally = _Tally() if tally is None else tally
    root = Manager("demo", stop_timeout=5.0)
    root.add(new_service("ticker", _tick, tally))
    root.add(
        new_service("flaky", _flaky, tally),
        with_restart_delay(0.5),
        with_backoff(2.0, 2.0),
        with_restart_window(60.0, 10),
    )
    root.add(new_service("doomed", _doomed), restart_delay=0.5, max_restarts=2)
    root.add(new_service("api", _warm_up, 1.0))
    backend = Manager("backend", stop_timeout=5.0)
    backend.add(new_service("cache", _warm_up, 0.5))
    backend.add(new_service("migrate", _migrate), restart_policy=RestartPolicy.ON_FAILURE)
    root.add(backend)
    return root, backend


# ----------------------------------------------------------------- narration


def _extra(record: logging.LogRecord, key: str) -> str:
    """The ``extra`` field *key* of *record* as text ("" when absent)."""
    value: object = getattr(record, key, None)
    return "" if value is None else str(value)


class Narrator(logging.Handler):
    """Prints trisup's status changes, failures and backoff waits, one line each.

    Attach it to the ``trisup`` logger at DEBUG. A failure is logged just before
    the status change it causes, so its message is appended to that status
    line; a repeated crash of a service that stays ``crashing`` (no status
    change) is printed with its backoff line instead.
    """

    def __init__(self, stream: TextIO, *, width: int = 8) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.width = width
        self.start = time.monotonic()
        self._pending: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Print *record* if it is one the demo narrates."""
        try:
            described = self.describe(record)
            if described is not None:
                who, text = described
                elapsed = time.monotonic() - self.start
                self.stream.write(f"{elapsed:7.2f}s  {who:<{self.width}}  {text}\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)

    def describe(self, record: logging.LogRecord) -> tuple[str, str] | None:
        """Who the record is about and what to say, or ``None`` to stay quiet."""
        event = _extra(record, "event")
        service = _extra(record, "service")
        if event == "status" and service:
            new: object = getattr(record, "new", None)
            text = f"{_extra(record, 'old') or '-'} -> {new}"
            error = self._pending.pop(service, None)
            if error is not None and new in _FAILURE_STATUSES:
                text += f": {error}"
            return service, text
        if event == "exited" and service:
            self._pending[service] = _extra(record, "error")
            return None
        if event == "backing_off" and service:
            delay: object = getattr(record, "delay", None)
            text = f"restarting in {delay:g}s" if isinstance(delay, float) else "restarting"
            error = self._pending.pop(service, None)
            if error is not None:
                text = f"crashed again: {error}; {text}"
            return service, text
        if event == "failed" and service:
            return service, f"gave up: {_extra(record, 'reason')}"
        if event in _MANAGER_EVENTS:
            return _extra(record, "manager"), _MANAGER_EVENTS[event]
        if record.levelno >= logging.WARNING:
            return service or _extra(record, "manager") or record.name, record.getMessage()
        return None


# --------------------------------------------------------------------- table

_HEADERS = (
    "NAME",
    "AT STOP",
    "STATUS",
    "STARTS",
    "RESTARTS",
    "ERRORS",
    "CONSEC",
    "UPTIME",
    "DELAY",
    "LAST ERROR",
)
_NUMERIC = frozenset({3, 4, 5, 6, 7})


def _row(info: ServiceInfo, at_stop: ServiceStatus | None) -> tuple[str, ...]:
    metric = info.metric
    return (
        info.name,
        "-" if at_stop is None else str(at_stop),
        str(info.status),
        str(metric.start_count),
        str(info.restart_count),
        str(metric.error_count),
        str(metric.consec_failures),
        f"{metric.total_uptime:.2f}s",
        str(info.to_dict()["current_delay"]),
        metric.last_error or "-",
    )


def format_table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> str:
    """Align *rows* under the demo's headers; numbers right, text left."""
    table = [_HEADERS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADERS))]
    lines: list[str] = []
    for row in table:
        cells = [
            cell.rjust(widths[i])
            if i in _NUMERIC and row is not _HEADERS
            else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------- run


class _Snapshot:
    """Each service's status when shutdown began, keyed by (manager, service)."""

    def __init__(self, *managers: Manager) -> None:
        self.managers = managers
        self.statuses: dict[tuple[str, str], ServiceStatus] = {}

    def take(self) -> None:
        """Record the statuses now (a ``before_stop`` hook)."""
        for manager in self.managers:
            for info in manager.get_services_info():
                self.statuses[manager.name, info.name] = info.status


async def _supervise(root: Manager, duration: float) -> ExitStatus | None:
    """Serve *root* for *duration* seconds; ``None`` when the time ran out."""
    with trio.move_on_after(duration):
        return await root.run()
    return None


def run_demo(duration: float = DEFAULT_DURATION, *, stream: TextIO | None = None) -> int:
    """Run the demo tree for *duration* seconds, narrating on *stream*.

    Returns the exit code: 0 when the time ran out or a signal ended the demo.
    """
    out = sys.stdout if stream is None else stream
    tally = _Tally()
    root, backend = build_tree(tally)
    snapshot = _Snapshot(root, backend)
    root.before_stop(snapshot.take)
    names = [info.name for m in (root, backend) for info in m.get_services_info()]
    narrator = Narrator(out, width=max(len(n) for n in [root.name, *names]))
    log = logging.getLogger("trisup")
    saved_level, saved_propagate = log.level, log.propagate
    out.write(f"trisup demo: supervising this tree for {duration:g}s (Ctrl-C stops it early)\n\n")
    out.write(_TREE + "\n")
    out.flush()
    log.addHandler(narrator)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        narrator.start = time.monotonic()
        status = trio.run(_supervise, root, duration)
    finally:
        log.removeHandler(narrator)
        log.setLevel(saved_level)
        log.propagate = saved_propagate
    elapsed = time.monotonic() - narrator.start
    why = "the duration ran out" if status is None else "interrupted by a signal"
    ticks = f"{tally.ticks} time{'' if tally.ticks == 1 else 's'}"
    out.write(f"\nstopped after {elapsed:.2f}s ({why}); ticker ticked {ticks}\n")
    out.write("final service info (AT STOP: the status when shutdown began)\n")
    for manager, title in ((root, "root manager"), (backend, f"nested in {root.name}")):
        rows = [
            _row(i, snapshot.statuses.get((manager.name, i.name)))
            for i in manager.get_services_info()
        ]
        out.write(f"\n{manager.name} ({title})\n")
        out.write(format_table(rows))
    out.flush()
    return 0 if status is None else status.as_int()
