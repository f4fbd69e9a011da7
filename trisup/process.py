"""`ProcessService`: a supervised child process (POSIX).

A `ProcessService` runs a program as a service of a `Manager`, with the same
restart policies, backoff and metrics as any other service. How the child's
exit is classified:

========================  ===============================================
exit code 0               a clean return
exit code 3 or 4          a `RestartNow`: relaunched at once, counted as a
                          start, not a failure (`ExitStatus.RESTART` /
                          ``UPGRADE``); after less than a second of uptime,
                          ``restart_delay`` first, so it never spins
a code in                 a `FatalError` with that `ExitStatus` (or
``fatal_exit_codes``      ``ERROR`` for a code that is not one): ends the tree
any other code, a signal  `ProcessExited`: a failure, restarted by policy
========================  ===============================================

The child runs in its own session and process group. When the child exits,
anything left in its group is killed; when the service is stopped, the group
gets ``stop_signal`` (and ``SIGCONT``, so a stopped child sees it), then ``SIGKILL``
once ``kill_after`` seconds have passed.
That cleanup runs in a ``finally`` with a shielded, bounded scope, so no process
is left behind on any way out of ``serve``: a stop, a restart, a failure, the
manager's cancellation or a ``KeyboardInterrupt``. (A process that leaves the
group on purpose, with ``setsid``, is out of reach but for a subreaper,
`trisup._reaper`. On Linux the child also dies with the supervisor, even one killed
with ``SIGKILL``: see `trisup._spawn`.)

stdout and stderr are read in batches of lines (see ``trisup._output``): to the
stream's log file when it has one (``stdout_logfile``, ``stderr_logfile`` or one
``logfile``, rotated by size, written by a thread so the event loop never blocks),
into a bounded ring (`ProcessService.output_tail`), and, with ``log_output``, one
record per line at INFO on the ``trisup.process.<name>`` logger (``extra``:
``service``, ``stream``, ``pid``, ``event="output"``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import final

import trio

from ._credentials import account_of, effective, group_of, umask_of
from ._current import current_service
from ._errors import RestartNow, as_fatal
from ._logfile import DEFAULT_BACKUPS, DEFAULT_MAXBYTES, log_files
from ._output import Output
from ._procargs import (
    RELAUNCH_CODES,
    argv_of,
    env_of,
    fatal_codes_of,
    pattern_of,
    seconds,
    signal_of,
)
from ._spawn import Child, spawn
from ._status import ExitStatus
from ._stderr import LINE_CHARS, SHOWN, StderrTail, lines_that_matter

__all__ = [
    "DEFAULT_KILL_AFTER",
    "RELAUNCH_CODES",
    "ProcessExited",
    "ProcessService",
    "describe_exit",
    "kill_after_for",
    "signal_name",
]


_DRAIN_TIMEOUT = 1.0  # how long output is still read after the group is gone
_REAP_TIMEOUT = 2.0  # how long to wait for the kernel to reap a SIGKILLed child
_STDERR_IN_MESSAGE = SHOWN * LINE_CHARS  # characters of stderr in an error message, at most


def kill_after_for(stop_timeout: float) -> float:
    """A ``kill_after`` that lands before a stop of *stop_timeout* gives up.

    One second before *stop_timeout*, or three quarters of it when it is shorter
    than four seconds: ``kill_after_for(10.0) == 9.0``.
    """
    return stop_timeout - min(1.0, stop_timeout / 4)


DEFAULT_KILL_AFTER = kill_after_for(10.0)
"""The default ``kill_after``: 9 s, one second before the default ``stop_timeout``."""


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal 99"`` for a number with no name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(returncode: int) -> str:
    """``"exited with code 1"`` or ``"killed by SIGKILL"``."""
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    return f"exited with code {returncode}"


class ProcessExited(Exception):
    """A supervised process exited with a code other than 0, 3 or 4, or by a signal.

    Attributes:
        service: the service's name.
        returncode: the exit code, or minus the signal number (as `subprocess`).
        signal: the signal's name (``"SIGKILL"``) when a signal ended it, else ``None``.
        stderr: the lines of what the process wrote on stderr during that run that
            say why it failed, joined with newlines, or "": a Python traceback's
            final exception line, else the lines that look like errors (``FATAL``,
            ``panic:``, ``ERROR`` ...), else the last few lines (at most four, each
            cut to 200 characters; see ``trisup._stderr``). The message carries them
            joined with ``" | "``: ``"exited with code 1; stderr: FATAL: ... | HINT: ..."``.
    """

    def __init__(self, service: str, returncode: int, stderr: str = "") -> None:
        self.service = service
        self.returncode = returncode
        self.signal = signal_name(-returncode) if returncode < 0 else None
        self.stderr = stderr
        message = describe_exit(returncode)
        shown = " | ".join(line for line in stderr.splitlines() if line.strip())
        if shown:
            if len(shown) > _STDERR_IN_MESSAGE:
                shown = shown[: _STDERR_IN_MESSAGE - 1] + "…"
            message += f"; stderr: {shown}"
        super().__init__(message)


def _signal_group(pgid: int, signum: int) -> None:
    """Send *signum* to the process group *pgid*; a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class _Run:
    """One launch of the child: the process and what was seen of it."""

    __slots__ = ("killed", "pid", "process", "signalled", "stderr")

    def __init__(self, process: Child) -> None:
        self.process = process
        self.pid = process.pid
        self.stderr = StderrTail()  # its last lines, for the message of a failure
        self.signalled: float | None = None  # when stop_signal was sent
        self.killed = False  # the group got its final SIGKILL

    @property
    def returncode(self) -> int:
        code = self.process.returncode
        assert code is not None, "the child has not been reaped"
        return code

    @property
    def stop_requested(self) -> bool:
        return self.signalled is not None


class _Readiness:
    """Calls ``task_status.started()`` once, whichever launch gets there first."""

    __slots__ = ("_task_status", "done")

    def __init__(self, task_status: trio.TaskStatus[None]) -> None:
        self._task_status = task_status
        self.done = False

    def set(self) -> None:
        if not self.done:
            self.done = True
            self._task_status.started()


@final
class ProcessService:
    """A child process supervised as a service (POSIX only).

    Args:
        name: the service's name, unique within its manager.
        argv: the program and its arguments (no shell involved).
        cwd: the working directory of the child (default: the parent's).
        env: variables added to the parent's environment for the child.
        ready_pattern: the service is ready once a line on stdout or stderr
            matches this regular expression (``re.search``).
        ready_after: the service is ready once the child has stayed up this
            many seconds (supervisord's ``startsecs``). Without either option
            it is ready as soon as the child is spawned.
        stop_signal: sent to the process group when the service is stopped.
        kill_after: seconds from ``stop_signal`` to ``SIGKILL`` of the group.
            Keep it below the service's ``stop_timeout``. By default it is
            ``kill_after_for(stop_timeout)`` of the service's own configuration,
            taken when it is served (9 s for the default 10 s; 9 s too when it
            is served outside a manager).
        fatal_exit_codes: exit codes that end the whole tree with a
            `FatalError` (its status is the code when it is an `ExitStatus`,
            else ``ERROR``).
        output_lines: how many of the last output lines `output_tail` keeps.
        user: run the child as this user (a name or a uid), with its groups
            and its ``HOME``, ``USER`` and ``LOGNAME`` (``env`` overrides them).
            Needs root, unless it is the user trisup runs as already.
        group: run the child with this group (a name or a gid; default: the
            user's group).
        umask: the child's umask, an int (``0o027``) or octal digits (``"027"``).
        stdout_logfile: a file that receives the child's stdout, as written.
        stderr_logfile: a file that receives its stderr (may be the same file).
        logfile: one file for both streams (not with the two above).
        logfile_maxbytes: rotate a log file before it grows past this size
            (an int, or a string such as ``"50MB"``; default 50 MiB; 0: never).
        logfile_backups: rotated files kept, ``NAME.1`` … (default 10; 0: the
            file is truncated instead).
        log_output: also log each line at INFO on ``trisup.process.<name>``
            (one `logging.LogRecord` per line: much slower for chatty children).

    Raises:
        TypeError: an argument has the wrong type (the message names it).
        ValueError: an argument has a bad value (the message names it).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        ready_pattern: str | re.Pattern[str] | None = None,
        ready_after: float | None = None,
        stop_signal: int = signal.SIGTERM,
        kill_after: float | None = None,
        fatal_exit_codes: Iterable[int] = (),
        output_lines: int = 100,
        user: str | int | None = None,
        group: str | int | None = None,
        umask: int | str | None = None,
        stdout_logfile: str | os.PathLike[str] | None = None,
        stderr_logfile: str | os.PathLike[str] | None = None,
        logfile: str | os.PathLike[str] | None = None,
        logfile_maxbytes: int | str = DEFAULT_MAXBYTES,
        logfile_backups: int = DEFAULT_BACKUPS,
        log_output: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"service name must be a non-empty str, not {name!r}")
        self.name = name
        self.argv = argv_of(argv)
        if cwd is not None and not isinstance(cwd, (str, os.PathLike)):
            raise TypeError(f"cwd must be a path, not {type(cwd).__name__}")
        self.cwd = cwd
        self.env = env_of(env)
        self.ready_pattern = pattern_of(ready_pattern)
        self.ready_after = None if ready_after is None else seconds("ready_after", ready_after)
        if self.ready_pattern is not None and self.ready_after is not None:
            raise ValueError("ready_pattern and ready_after cannot be combined; choose one")
        self.stop_signal = signal_of(stop_signal)
        self.kill_after = None if kill_after is None else seconds("kill_after", kill_after)
        self.user = account_of(user)
        self.group = group_of(group)
        self.umask = umask_of(umask)
        self.fatal_exit_codes = fatal_codes_of(fatal_exit_codes)
        if isinstance(output_lines, bool) or not isinstance(output_lines, int):
            raise TypeError(f"output_lines must be an int, not {type(output_lines).__name__}")
        if output_lines < 0:
            raise ValueError(f"output_lines must not be negative, not {output_lines}")
        if not isinstance(log_output, bool):
            raise TypeError(f"log_output must be a bool, not {type(log_output).__name__}")
        files = log_files(
            stdout=stdout_logfile,
            stderr=stderr_logfile,
            both=logfile,
            maxbytes=logfile_maxbytes,
            backups=logfile_backups,
        )
        self._output = Output(name, output_lines, files, log_output=log_output)
        self._log = logging.getLogger(f"trisup.process.{name}")
        self.pid: int | None = None
        self.returncode: int | None = None  # of the run that ended last; None while one runs
        self.last_returncode: int | None = (
            None  # of the last run that ended, kept while the next runs
        )
        self.exit_time: float | None = None  # wall-clock seconds of the last exit
        self.relaunches = 0
        self._expedited = False
        self._grace: trio.CancelScope | None = None
        self._kill_after = DEFAULT_KILL_AFTER  # of the current serve

    def __repr__(self) -> str:
        return f"<trisup.ProcessService {self.name!r} argv={list(self.argv)!r} pid={self.pid}>"

    # ------------------------------------------------------------- inspection

    def output_tail(self) -> list[tuple[str, str]]:
        """The last output lines, oldest first, as ``(stream, line)`` pairs.

        ``stream`` is ``"stdout"`` or ``"stderr"``; the ring survives restarts,
        so the lines before a crash stay visible.
        """
        return self._output.tail()

    @property
    def output_count(self) -> int:
        """How many output lines this service has received in all (it only grows)."""
        return self._output.count

    def output_since(self, count: int) -> tuple[int, list[tuple[str, str]]]:
        """The lines received after the first *count*, still in the ring, and the new count.

        ``(total, lines)``: *lines* are ``(stream, line)`` pairs, oldest first; the ones
        that left the ring already are skipped. Pass *total* back to get the next ones.
        """
        return self._output.since(count)

    async def wait_output(self, count: int) -> None:
        """Wait until more than *count* lines have been received (at once if so already)."""
        await self._output.wait(count)

    def details(self) -> dict[str, object]:
        """What `ServiceInfo.details` shows: pid, last exit, relaunches, output."""
        return {
            "argv": list(self.argv),
            "pid": self.pid,
            "returncode": self.returncode,
            "last_exit": None
            if self.last_returncode is None
            else describe_exit(self.last_returncode),
            "relaunches": self.relaunches,
            "output": [list(pair) for pair in self._output.tail()],
        }

    def expedite(self) -> None:
        """Make stops skip the grace period: ``SIGKILL`` the group at once.

        A stop in progress kills the group now; a later stop of this ``serve``
        sends ``SIGKILL`` instead of ``stop_signal``. The next ``serve`` is
        graceful again. ``trisup run`` calls it on a second SIGINT / SIGTERM.
        """
        self._expedited = True
        if self._grace is not None:
            self._grace.cancel()

    # ------------------------------------------------------------------ serve

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the program until it exits; ask for a restart now on exit code 3 or 4.

        Reports readiness through *task_status* (see ``ready_pattern`` and
        ``ready_after``). Cancellation stops the child: ``stop_signal`` to its
        group, then ``SIGKILL`` after ``kill_after``; ``serve`` returns (or
        re-raises the cancellation) only once the child has been reaped.

        Raises:
            RestartNow: the child exited with code 3 or 4.
            ProcessExited: the child exited with another code, or by a signal.
            FatalError: the exit code is one of ``fatal_exit_codes``.
            OSError: the program could not be started, or a log file opened.
        """
        self._expedited = False
        self._kill_after = self._kill_after_now()
        readiness = _Readiness(task_status)
        await self._output.open()
        try:
            run = await self._launch(readiness)
        finally:
            self._output.close()
        returncode = run.returncode
        if returncode == 0 or run.stop_requested:
            return
        if returncode in RELAUNCH_CODES:
            self.relaunches += 1
            if self._log.isEnabledFor(logging.INFO):
                self._log.info(
                    "%s %s, relaunching",
                    self.name,
                    describe_exit(returncode),
                    extra={"service": self.name, "event": "relaunch", "returncode": returncode},
                )
            raise RestartNow(f"{describe_exit(returncode)}: relaunch")
        stderr = "\n".join(lines_that_matter(run.stderr.lines()))
        error = ProcessExited(self.name, returncode, stderr)
        if returncode in self.fatal_exit_codes:
            status = ExitStatus(returncode) if returncode <= 4 else ExitStatus.ERROR
            raise as_fatal(error, status)
        raise error

    async def _launch(self, readiness: _Readiness) -> _Run:
        """One run of the child, from spawn to reaping."""
        credentials = effective(self.user, self.group, self.umask)
        env = None
        if self.env is not None or self.user is not None:
            account = {} if self.user is None else self.user.env()
            env = {**os.environ, **account, **(self.env or {})}
        process = await spawn(self.argv, cwd=self.cwd, env=env, credentials=credentials)
        run = _Run(process)
        try:
            self.pid = run.pid
            self.returncode = None
            if self._log.isEnabledFor(logging.INFO):
                self._log.info(
                    "%s started, pid %d",
                    self.name,
                    run.pid,
                    extra={"service": self.name, "event": "spawned", "pid": run.pid},
                )
            async with trio.open_nursery() as nursery:
                drain = trio.CancelScope(shield=True)
                nursery.start_soon(self._drain, run, drain, readiness)
                if self.ready_pattern is None and self.ready_after is None:
                    readiness.set()
                elif self.ready_after is not None:
                    nursery.start_soon(self._ready_after, self.ready_after, readiness)
                nursery.start_soon(self._watch_stop_request, run)
                try:
                    await process.wait()
                finally:
                    try:
                        await self._stop_group(run)
                    finally:
                        drain.deadline = trio.current_time() + _DRAIN_TIMEOUT
                        nursery.cancel_scope.cancel(reason="trisup: process exited")
            return run
        finally:
            if not run.killed:  # something went wrong above: nothing may stay all the same
                _signal_group(run.pid, signal.SIGKILL)
            self.returncode = self.last_returncode = process.returncode
            self.exit_time = time.time()
            self.pid = None

    def _kill_after_now(self) -> float:
        """``kill_after``, or the one that suits the service's own ``stop_timeout``."""
        if self.kill_after is not None:
            return self.kill_after
        try:
            return kill_after_for(current_service().config.stop_timeout)
        except RuntimeError:  # served outside a trisup manager
            return DEFAULT_KILL_AFTER

    def _send_stop_signal(self, run: _Run) -> None:
        if run.signalled is None:
            _signal_group(run.pid, signal.SIGKILL if self._expedited else self.stop_signal)
            if not self._expedited:  # a stopped (SIGSTOP) child sees the signal only now
                _signal_group(run.pid, signal.SIGCONT)
            run.signalled = trio.current_time()

    async def _stop_group(self, run: _Run) -> None:
        """Stop the child's group (shielded, bounded); leftovers get ``SIGKILL``."""
        process = run.process
        with trio.move_on_after(self._kill_after + _REAP_TIMEOUT, shield=True):
            if process.returncode is None and not self._expedited:
                self._send_stop_signal(run)
                assert run.signalled is not None
                with trio.move_on_at(run.signalled + self._kill_after) as grace:
                    self._grace = grace
                    await process.wait()
                self._grace = None
                late = process.returncode is None and not self._expedited
                if late and self._log.isEnabledFor(logging.WARNING):
                    self._log.warning(
                        "%s did not exit within %gs of %s; killing its process group",
                        self.name,
                        self._kill_after,
                        self.stop_signal.name,
                        extra={"service": self.name, "event": "kill", "pid": run.pid},
                    )
            _signal_group(run.pid, signal.SIGKILL)
            run.killed = True
            with trio.move_on_after(_REAP_TIMEOUT):
                await process.wait()

    async def _watch_stop_request(self, run: _Run) -> None:
        """With a ``grace_period``, send ``stop_signal`` as soon as a stop is requested."""
        try:
            requested = current_service().stop_requested
        except RuntimeError:  # served outside a trisup manager
            return
        await requested.wait()
        self._send_stop_signal(run)

    @staticmethod
    async def _ready_after(seconds: float, readiness: _Readiness) -> None:
        await trio.sleep(seconds)
        readiness.set()

    async def _drain(self, run: _Run, scope: trio.CancelScope, readiness: _Readiness) -> None:
        """Read both pipes to their end, inside *scope* (shielded until the child is gone)."""
        process = run.process
        pattern = self.ready_pattern

        def match(line: str) -> bool:
            if readiness.done or (pattern is not None and pattern.search(line)):
                readiness.set()
                return True
            return False

        check = None if pattern is None else match
        with scope:
            async with trio.open_nursery() as nursery:
                assert process.stdout is not None
                assert process.stderr is not None
                nursery.start_soon(self._output.pump, process.stdout, "stdout", run, check)
                nursery.start_soon(self._output.pump, process.stderr, "stderr", run, check)
            await self._output.flush()
