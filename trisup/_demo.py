"""``trisup demo``: real child processes and in-process services under one tree.

The tree::

    demo                          the root Manager
    |-- steady    process         prints a tick a second; ready once it says "listening"
    |-- flaky     process         exits 1 after 1.5 s: crashes, backs off 0.5, 1, 2, 2 s
    |-- reloader  process         exits 3 every 2.5 s: restarted at once, not a failure
    |-- ticker    in-process      a steady task: one tick a second
    |-- doomed    in-process      fails every 0.5 s; max_restarts=2, then FAILED for good
    `-- backend   in-process      a nested Manager
        |-- cache                 ready after 0.5 s
        `-- migrate               a one-shot job: returns after 2 s (policy on_failure)

The processes come from a TOML configuration (`DEMO_CONFIG`, the format of
``trisup run``; ``trisup demo --print-config`` prints it), the in-process
services are added in code. The tree is supervised as ``trisup run`` does it
(live table in a terminal, one log line per event otherwise, graceful on
SIGINT / SIGTERM) for ``--duration`` seconds; a table of every service's info
follows the shutdown. This module is the CLI; it may print.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import trio

from ._cli import cli_logging, make_live_view, supervise
from ._health import api_dict
from ._manager import Manager
from ._report import ERROR_WIDTH, HEADERS, NUMERIC, Row, align, clip, row_from_dict
from ._service import new_service
from ._status import ExitStatus, RestartPolicy, ServiceStatus
from ._tomlconfig import build, parse_config
from .process import ProcessService

__all__ = ["DEFAULT_DURATION", "DEMO_CONFIG", "build_tree", "demo_config", "run_demo"]

DEFAULT_DURATION = 20.0
"""How long ``trisup demo`` runs unless told otherwise, in seconds."""

DEMO_CONFIG = """\
# The processes of `trisup demo`, in the format of `trisup run`.

[manager]
name = "demo"
stop_timeout = 10

[services.steady]
command = ["python3", "-u", "-c", '''
import itertools, time
print("listening on :8000")
for i in itertools.count(1):
    time.sleep(1)
    print(f"tick {i}")
''']
ready_pattern = "listening"
stop_timeout = 5

[services.flaky]
command = ["python3", "-u", "-c", '''
import sys, time
print("working")
time.sleep(1.5)
sys.exit("RuntimeError: lost the connection to the queue")
''']
restart_delay = 0.5
max_restart_delay = 2
restart_window = 60
max_restarts_in_window = 20

[services.reloader]
command = ["python3", "-u", "-c", '''
import time
print("serving with configuration v1")
time.sleep(2.5)
print("configuration changed: exit 3 asks for a restart")
raise SystemExit(3)
''']
"""

_TREE = """\
  demo                          the root Manager
  |-- steady    process         prints a tick a second; ready once it says "listening"
  |-- flaky     process         exits 1 after 1.5s: crashes, backs off 0.5, 1, 2, 2s
  |-- reloader  process         exits 3 every 2.5s: relaunched at once, not a failure
  |-- ticker    in-process      a steady task: one tick a second
  |-- doomed    in-process      fails every 0.5s; max_restarts=2, then failed for good
  `-- backend   in-process      a nested Manager
      |-- cache                 ready after 0.5s
      `-- migrate               a one-shot job: returns after 2s (policy on_failure)
"""


def demo_config(python: str = "python3") -> str:
    """`DEMO_CONFIG` with *python* as the interpreter of the processes."""
    return DEMO_CONFIG.replace('["python3",', f"[{json.dumps(python)},")


# ------------------------------------------------------------ in-process


@dataclass(slots=True)
class _Tally:
    ticks: int = 0


async def _tick(tally: _Tally) -> None:
    """A steady worker: one tick a second, forever."""
    while True:
        await trio.sleep(1.0)
        tally.ticks += 1


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


def build_tree(tally: _Tally | None = None) -> tuple[Manager, Manager, list[ProcessService]]:
    """The demo's tree: the root manager, the nested one, and the processes."""
    tally = _Tally() if tally is None else tally
    plan = parse_config(demo_config(sys.executable), file="<demo>", base_dir=Path.cwd())
    root, processes = build(plan)
    root.add(new_service("ticker", _tick, tally))
    root.add(new_service("doomed", _doomed), restart_delay=0.5, max_restarts=2)
    backend = Manager("backend", stop_timeout=5.0)
    backend.add(new_service("cache", _warm_up, 0.5))
    backend.add(new_service("migrate", _migrate), restart_policy=RestartPolicy.ON_FAILURE)
    root.add(backend)
    return root, backend, processes


# ----------------------------------------------------------------- report


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


def _final_table(rows: Sequence[tuple[Row, str]]) -> str:
    """The table with an AT STOP column after the name."""
    headers = (HEADERS[0], "AT STOP", *HEADERS[1:])
    cells = [
        (row.cells()[0], at_stop, *row.cells()[1:-1], clip(row.cells()[-1], ERROR_WIDTH))
        for row, at_stop in rows
    ]
    return align(headers, cells, numeric=frozenset(i + 1 for i in NUMERIC), indent="  ")


def _report(
    out: TextIO,
    root: Manager,
    backend: Manager,
    processes: Sequence[ProcessService],
    snap: _Snapshot,
) -> None:
    out.write("final service info (AT STOP: the status when shutdown began; UPTIME: all runs)\n")
    for manager, title in ((root, "root manager"), (backend, f"nested in {root.name}")):
        rows = [
            (
                dataclasses.replace(row_from_dict(api_dict(info)), uptime=info.metric.total_uptime),
                str(snap.statuses.get((manager.name, info.name), "-")),
            )
            for info in manager.get_services_info()
        ]
        out.write(f"\n{manager.name} ({title})\n")
        out.write(_final_table(rows))
    out.write("\nprocesses\n")
    for process in processes:
        exit_text = process.details()["last_exit"] or "-"
        tail = process.output_tail()
        last = tail[-1][1] if tail else "-"
        out.write(
            f"  {process.name:<9} last exit: {exit_text}; relaunches: {process.relaunches};"
            f" last output: {last}\n"
        )


# -------------------------------------------------------------------- run


def run_demo(
    duration: float = DEFAULT_DURATION,
    *,
    live: bool = True,
    out: TextIO | None = None,
) -> int:
    """Run the demo tree for *duration* seconds on *out* (default: stdout).

    Returns the exit code: 0 when the time ran out or a signal ended the demo.
    """
    stream: TextIO = sys.stdout if out is None else out
    tally = _Tally()
    root, backend, processes = build_tree(tally)
    snapshot = _Snapshot(root, backend)
    root.before_stop(snapshot.take)
    stream.write(
        f"trisup demo: supervising this tree for {duration:g}s (Ctrl-C stops it early)\n\n"
    )
    stream.write(_TREE + "\n")
    stream.flush()
    title = f"trisup demo · {root.name}"
    managers = [("", root), ("backend/", backend)]
    view = make_live_view(managers, stream, title=title) if live else None
    began = time.monotonic()
    with cli_logging(stream, view):
        result = trio.run(
            functools.partial(supervise, root, processes, view=view, duration=duration)
        )
    elapsed = time.monotonic() - began
    if result.signal is not None:
        why = f"stopped by {result.signal}"
    elif result.status is ExitStatus.SUCCESS:
        why = "the duration ran out"
    else:
        why = f"ended with exit status {result.status.as_int()}"
    ticks = f"{tally.ticks} time{'' if tally.ticks == 1 else 's'}"
    stream.write(f"\nstopped after {elapsed:.2f}s ({why}); ticker ticked {ticks}\n")
    _report(stream, root, backend, processes, snapshot)
    stream.write(
        "\nThe processes above come from a TOML file; try them yourself:\n"
        "  trisup demo --print-config > demo.toml\n"
        "  trisup check demo.toml && trisup run demo.toml\n"
    )
    stream.flush()
    return result.status.as_int()
