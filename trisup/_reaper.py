"""The subreaper: ``trisup run --subreaper``, and trisup as PID 1 (Linux).

With ``PR_SET_CHILD_SUBREAPER`` (or as PID 1, where the kernel does the same), the
orphans of trisup's descendants are reparented to trisup instead of init: a daemon
that double-forks, a grandchild that outlives its parent, a ``setsid`` escapee.
`subreaper` then

- reaps every such orphan once it exits (on each ``SIGCHLD``), so no zombie piles
  up: it lists trisup's children from ``/proc`` and reaps those that `trisup._spawn`
  did not start, under `trisup._spawn.LOCK`, so the exit status of a child a
  `ProcessService` waits for is never taken (a blind ``waitpid(-1)`` would);
- at its exit, after the services have stopped, sends ``SIGTERM`` to the adopted
  descendants still alive, ``SIGKILL`` to those left `ESCAPED_GRACE` seconds later,
  and reaps them.

A child started in the same process by other means (``subprocess``,
``trio.run_process``) while the subreaper runs would be taken for an orphan:
``trisup run`` starts none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path

import trio

from . import _spawn

__all__ = [
    "ESCAPED_GRACE",
    "adopted",
    "containment",
    "reap_orphans",
    "set_subreaper",
    "subreaper",
    "supported",
]

logger = logging.getLogger("trisup.reaper")

ESCAPED_GRACE = 2.0
"""Seconds from ``SIGTERM`` to ``SIGKILL`` for the descendants left at shutdown."""
_KILL_WAIT = 1.0  # how long SIGKILLed descendants are waited for
_POLL = 0.02  # how often the descendants left are looked at during the shutdown


supported = sys.platform.startswith("linux")
"""Whether trisup can be a subreaper here (Linux)."""


def set_subreaper() -> None:
    """Make this process a child subreaper (Linux).

    Raises:
        OSError: the system refused, or is not Linux.
    """
    if not sys.platform.startswith("linux"):
        raise OSError("a subreaper needs Linux (PR_SET_CHILD_SUBREAPER)")
    if _spawn.prctl(_spawn.PR_SET_CHILD_SUBREAPER, 1) != 0:
        raise OSError("prctl(PR_SET_CHILD_SUBREAPER) failed")


def _children() -> list[int]:
    """The pids of this process's children (of every thread), from ``/proc``."""
    pids: list[int] = []
    tasks = Path(f"/proc/{os.getpid()}/task")
    try:
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                pids += [int(pid) for pid in (task / "children").read_text().split()]
    except OSError:
        return []
    if pids or (tasks / str(os.getpid()) / "children").exists():
        return pids
    me = str(os.getpid())  # no CONFIG_PROC_CHILDREN: look at every process's parent
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if fields[1] == me:
                    pids.append(int(entry.name))
    return pids


def adopted() -> list[int]:
    """This process's children that `trisup._spawn` did not start (adopted orphans)."""
    with _spawn.LOCK:
        return [pid for pid in _children() if pid not in _spawn.SPAWNED]


def reap_orphans() -> list[int]:
    """Reap every adopted child that has exited; return their pids."""
    reaped: list[int] = []
    with _spawn.LOCK:  # no spawn in between: a pid listed here is not one of ours
        for pid in _children():
            if pid in _spawn.SPAWNED:
                continue
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    reaped.append(pid)
                    logger.debug(
                        "reaped orphan %d (%s)",
                        pid,
                        _describe(status),
                        extra={"event": "reaped", "pid": pid},
                    )
    return reaped


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


async def _reap_on_sigchld(*, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope, trio.open_signal_receiver(signal.SIGCHLD) as signals:
        task_status.started(scope)
        reap_orphans()  # those that exited before the receiver was open
        async for _ in signals:
            reap_orphans()


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


async def _end_escaped() -> None:
    """SIGTERM the adopted descendants still alive, SIGKILL them later, reap them."""
    reap_orphans()
    left = adopted()
    if not left:
        return
    logger.warning(
        "%d descendant(s) escaped their process group (%s); sending SIGTERM",
        len(left),
        ", ".join(map(str, left)),
        extra={"event": "escaped", "pids": left},
    )
    termed = set(left)
    _signal_all(left, signal.SIGTERM)
    with trio.move_on_after(ESCAPED_GRACE):
        while left:
            await trio.sleep(_POLL)
            reap_orphans()
            left = adopted()
            new = [pid for pid in left if pid not in termed]  # reparented since
            termed.update(new)
            _signal_all(new, signal.SIGTERM)
    with trio.move_on_after(_KILL_WAIT):
        while left:
            logger.warning(
                "killing %d descendant(s) still alive: %s",
                len(left),
                ", ".join(map(str, left)),
                extra={"event": "kill", "pids": left},
            )
            _signal_all(left, signal.SIGKILL)
            await trio.sleep(_POLL)
            reap_orphans()
            left = adopted()


@contextlib.asynccontextmanager
async def subreaper(nursery: trio.Nursery, *, pid1: bool = False) -> AsyncGenerator[None]:
    """Be a subreaper for the body: reap orphans; at exit, end the descendants left.

    The reaping task runs in *nursery* until the body is over. With *pid1* (trisup
    is PID 1, the reaper of everything already), the prctl is skipped. The final
    cleanup is shielded and bounded (`ESCAPED_GRACE` + 2 s). Must run in the main
    thread (it receives ``SIGCHLD``).

    Raises:
        OSError: this system cannot make trisup a subreaper (not Linux).
    """
    if not pid1:
        set_subreaper()
    reaping: trio.CancelScope = await nursery.start(_reap_on_sigchld)
    try:
        yield
    finally:
        with trio.move_on_after(ESCAPED_GRACE + _KILL_WAIT + 1, shield=True):
            await _end_escaped()
        reaping.cancel(reason="trisup: subreaper done")


def containment(nursery: trio.Nursery, *, requested: bool) -> AbstractAsyncContextManager[None]:
    """`subreaper` when *requested* or when trisup is PID 1 (on Linux); else nothing."""
    pid1 = os.getpid() == 1 and supported
    if requested or pid1:
        return subreaper(nursery, pid1=pid1)
    return nullcontext()
