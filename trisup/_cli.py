"""The ``run`` and ``check`` commands; ``supervise``, the heart of ``run``.

This module is the command line: it may print. Exit codes: 0 after a graceful
stop, the `ExitStatus` of a fatal error, 1 for an invalid configuration or any
other error.
"""

from __future__ import annotations

import functools
import logging
import math
import shlex
import signal
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO, final

import outcome
import trio

from ._background import absorb_late_signals, serve_with_signals
from ._controlplane import control_plane
from ._credentials import describe_credentials
from ._errors import FatalError, error_text, find_terminate
from ._logfile import DEFAULT_BACKUPS, DEFAULT_MAXBYTES, byte_size
from ._logqueue import QueuedLogfmtHandler
from ._manager import Manager
from ._reaper import containment
from ._reaper import supported as reaper_supported
from ._report import clip
from ._socketpath import SocketError
from ._status import ExitStatus, RestartPolicy, go_duration
from ._tomlconfig import ConfigError, Plan, ServicePlan, build, load_config
from .process import ProcessService, kill_after_for

if TYPE_CHECKING:
    from ._live import LiveView
    from .http._plane import ControlPlane

__all__ = [
    "Supervised",
    "check_command",
    "cli_logging",
    "exit_status",
    "make_live_view",
    "run_command",
    "supervise",
]

logger = logging.getLogger("trisup.cli")

# How far `trisup check` plays out a schedule that has neither given up nor settled
# into restarting for ever; a budget of more restarts than this is not previewed.
PREVIEW_LIMIT = 10_000


# ------------------------------------------------------------- supervising


def exit_status(manager: Manager, error: BaseException | None) -> ExitStatus:
    """The exit status of a serve that ended with *error* (``None``: a graceful stop)."""
    if error is None:
        return ExitStatus.SUCCESS
    term = find_terminate(error)
    if isinstance(term, FatalError):
        logger.error(
            "manager %s ended by a fatal error: %s (exit status %d)",
            manager.name,
            error_text(term),
            int(term.status),
            extra={"manager": manager.name, "event": "fatal", "status": int(term.status)},
        )
        return term.status
    logger.error(
        "manager %s ended with an error: %s",
        manager.name,
        error_text(error),
        extra={"manager": manager.name, "event": "error"},
    )
    return ExitStatus.ERROR


@final
@dataclass(frozen=True, slots=True)
class Supervised:
    """How `supervise` ended.

    Attributes:
        status: the exit status (``SUCCESS`` after a signal or the duration).
        signal: the name of the first signal received, or ``None``.
    """

    status: ExitStatus
    signal: str | None


async def supervise(
    manager: Manager,
    processes: Sequence[ProcessService] = (),
    *,
    view: LiveView | None = None,
    duration: float | None = None,
    subreaper: bool = False,
    control: ControlPlane | None = None,
    final: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> Supervised:
    """Serve *manager* until SIGINT / SIGTERM, a fatal error or *duration* seconds.

    The signal handling is `Manager.run`'s (`serve_with_signals`): the first
    signal starts the graceful shutdown (in the manager's ``stop_order``, each
    service within its ``stop_timeout``); a second one makes every process in
    *processes* skip its grace period (``SIGKILL`` at once). With *view*, the
    live table runs beside the manager until its shutdown is over. Ready once
    the manager is serving. With *subreaper* (or as PID 1), trisup adopts and
    reaps orphans, and ends the escaped descendants after the shutdown. With
    *control*, the control socket and console listen before any service starts,
    until the shutdown is over. With *final* (the process exits once this returns),
    SIGINT and SIGTERM stay logged and ignored after the shutdown.
    """
    deadline = math.inf if duration is None else trio.current_time() + duration

    def expedite() -> None:
        for process in processes:
            process.expedite()

    # Once the manager stopped, the view and the control plane wind down: a signal
    # then is noted, not SIGTERM's default action (serve_with_signals restores this).
    with absorb_late_signals(manager.name, restore=not final):
        async with trio.open_nursery() as nursery:

            async def serve(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                if view is not None:
                    await nursery.start(view.run)
                if control is not None:  # the control plane first: before any service
                    await nursery.start(control.serve)
                # the escaped descendants are ended (shielded) while the signals are ours
                async with containment(nursery, requested=subreaper):
                    await manager.serve(task_status=task_status)

            result, first = await serve_with_signals(
                manager.name, serve, expedite, deadline=deadline, task_status=task_status
            )
            nursery.cancel_scope.cancel(reason="trisup: manager stopped")
    error = result.error if isinstance(result, outcome.Error) else None
    return Supervised(exit_status(manager, error), first)


def make_live_view(
    managers: Sequence[tuple[str, Manager]], out: TextIO, *, title: str
) -> LiveView | None:
    """A live view on *out* if rich is installed and *out* is a capable terminal."""
    try:
        from rich.console import Console

        from ._live import LiveView
    except ImportError:
        return None
    console = Console(file=out)
    if not console.is_terminal or console.is_dumb_terminal:
        return None
    return LiveView(managers, console, title=title)


@contextmanager
def cli_logging(out: TextIO, view: LiveView | None) -> Generator[None]:
    """Route trisup's logging to the live view, or to *out* as one logfmt line per event.

    Without a view every event is printed (the ``trisup`` logger at DEBUG), by a
    writer thread through a bounded queue: when *out* stalls, lines are dropped and
    counted, the supervisor never waits. With a view, INFO and above are printed
    above the table. Restored on exit.
    """
    handler: logging.Handler
    if view is not None:
        from ._live import RichLogHandler

        handler = RichLogHandler(view.console)
        level = logging.INFO
    else:
        handler = QueuedLogfmtHandler(out)  # a stalled *out* must not stall the supervisor
        level = logging.DEBUG
    log = logging.getLogger("trisup")
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
        handler.close()


# --------------------------------------------------------------------- run


def run_command(
    path: str,
    *,
    live: bool = True,
    subreaper: bool = False,
    out: TextIO,
    err: TextIO,
    final: bool = False,
) -> int:
    """``trisup run FILE``: supervise the file's services until a signal.

    With *final* (the process exits once this returns), SIGINT and SIGTERM are
    ignored from the end of the shutdown on: a second signal that arrives just
    after it must not turn exit status 0 into a death by that signal.
    """
    if subreaper and not reaper_supported:
        print("trisup: --subreaper needs Linux (PR_SET_CHILD_SUBREAPER)", file=err)
        return 1
    try:
        plan = load_config(path)
        manager, processes = build(plan, with_http=False)
        control = control_plane(plan, manager, processes)
    except (ConfigError, SocketError) as exc:
        print(f"trisup: {exc}", file=err)
        return 1
    for warning in plan.warnings:
        print(f"trisup: warning: {warning}", file=err)
    view = make_live_view([("", manager)], out, title=f"trisup · {manager.name}") if live else None
    try:
        with cli_logging(out, view):
            run = functools.partial(
                supervise,
                manager,
                processes,
                view=view,
                subreaper=subreaper,
                control=control,
                final=final,
            )
            try:
                result = trio.run(run)
            finally:
                if final:  # Python resets its own handlers as the interpreter exits: SIG_IGN
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        control.close()
    return result.status.as_int()


# ------------------------------------------------------------------- check


def _describe_process(service: ServicePlan) -> list[str]:
    process = service.process
    lines = [f"cwd {process['cwd']}"]
    env = process.get("env")
    if isinstance(env, dict) and env:
        lines[0] += f"; env {', '.join(str(k) for k in env)}"  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    made = service.make_service()
    if made.ready_pattern is not None:
        ready = f"ready when a line matches {made.ready_pattern.pattern!r}"
    elif made.ready_after is not None:
        ready = f"ready after {made.ready_after:g}s up"
    else:
        ready = "ready at spawn"
    kill_after = made.kill_after or kill_after_for(service.config.stop_timeout)
    stop = f"stop: {made.stop_signal.name}, SIGKILL after {kill_after:g}s"
    lines.append(f"{ready}; {stop}")
    if made.fatal_exit_codes:
        codes = ", ".join(str(c) for c in sorted(made.fatal_exit_codes))
        lines.append(f"fatal exit codes: {codes}")
    lines += describe_credentials(made)
    logs = describe_logs(process)
    if logs:
        lines.append(logs)
    return lines


def describe_logs(process: Mapping[str, object]) -> str:
    """Where a service's output goes, as ``trisup check`` says it ("" without a log file)."""
    files = {k: process[k] for k in ("logfile", "stdout_logfile", "stderr_logfile") if k in process}
    if not files:
        return ""
    names = {"logfile": "stdout and stderr", "stdout_logfile": "stdout", "stderr_logfile": "stderr"}
    where = ", ".join(f"{names[k]} to {v}" for k, v in files.items())
    size = byte_size("logfile_maxbytes", process.get("logfile_maxbytes", DEFAULT_MAXBYTES))
    backups = process.get("logfile_backups", DEFAULT_BACKUPS)
    text = f"output: {where}"
    text += f" (rotated at {size:,} bytes, {backups} kept)" if size else " (never rotated)"
    return text + ("; each line also logged" if process.get("log_output") else "")


def _describe_restarts(service: ServicePlan, failures: int) -> list[str]:
    c = service.config
    policy = RestartPolicy(c.restart_policy).name.lower()
    delays = (
        f"delay {go_duration(c.restart_delay)} x{c.backoff_multiplier:g}"
        f" up to {go_duration(c.max_restart_delay)}"
    )
    if c.jitter:
        delays += f" (+ up to {c.jitter:.0%} jitter)"
    limits: list[str] = []
    if c.max_restarts_in_window:
        limits.append(f"{c.max_restarts_in_window} restarts within {go_duration(c.restart_window)}")
    if c.max_restarts:
        limits.append(f"{c.max_restarts} restarts in all (max_restarts)")
    lines = [
        f"policy {policy}; {delays}; stop_timeout {go_duration(c.stop_timeout)}",
        f"gives up after {' or '.join(limits)}" if limits else "never gives up",
    ]
    if c.restart_policy is RestartPolicy.NEVER:
        lines.append("if it fails: never restarted; failed at t=0s")
        return lines
    plan = c.schedule(failures)
    if plan.failed_at is None and not plan.forever:  # play it out until it is decided
        plan = c.schedule(PREVIEW_LIMIT)
    starts = plan.starts
    if plan.failed_at is not None:
        shown = [go_duration(t) for t in starts]
        if len(starts) > failures + 2:  # the first ones, then the last
            shown = [*shown[:failures], "...", f"{shown[-1]} ({len(starts)} starts)"]
        text = f"if it fails at once: starts at t={', '.join(shown)}"
        text += f"; failed at t={go_duration(plan.failed_at)} ({plan.reason})"
    else:
        shown = [go_duration(t) for t in starts[: failures + 1]]
        text = f"if it fails at once: starts at t={', '.join(shown)}, ..."
        if plan.forever:
            steady = c.max_restart_delay if c.backoff_multiplier > 1 else c.restart_delay
            text += f"; restarts for ever (delay up to {go_duration(steady)})"
        else:
            text += f"; still restarting after {len(plan.delays)} failures (not played further)"
    lines.append(text)
    return lines


def describe_plan(plan: Plan, *, failures: int = 10) -> str:
    """The human summary that ``trisup check`` prints."""
    name = plan.manager.get("name", "trisup")
    count = len(plan.services)
    lines = [f"{plan.file}: valid; manager {name!r}, {count} service{'s' * (count != 1)}"]
    order = plan.manager.get("stop_order", "dependencies")  # trisup run's default
    how = "dependents first, others together" if order == "dependencies" else "one by one"
    lines.append(f"shutdown: {how} (stop_order {order!r})")
    if plan.http is not None:
        options = ", ".join(f"{k}={v!r}" for k, v in plan.http.options.items() if k != "token")
        lines.append(f"http console: {options or 'defaults'}")
    for service in plan.services:
        argv = service.process["argv"]
        assert isinstance(argv, list)
        lines.append("")
        command = shlex.join(str(a) for a in argv).replace("\n", "\\n")  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        lines.append(f"{service.name}: {clip(command, 100)}")
        if service.depends_on:
            lines.append(f"  depends on {', '.join(service.depends_on)}")
        lines += [f"  {line}" for line in _describe_process(service)]
        lines += [f"  {line}" for line in _describe_restarts(service, failures)]
    return "\n".join(lines) + "\n"


def check_command(path: str, *, failures: int = 10, out: TextIO, err: TextIO) -> int:
    """``trisup check FILE``: validate and print each service's restart schedule."""
    try:
        plan = load_config(path)
        if plan.http is not None:
            build(plan)  # the console must be importable and accept its options
    except ConfigError as exc:
        print(f"trisup: {exc}", file=err)
        return 1
    for warning in plan.warnings:
        print(f"trisup: warning: {warning}", file=err)
    out.write(describe_plan(plan, failures=failures))
    return 0
