"""Starting a child so that it dies with trisup: the spawn path of `ProcessService`.

On Linux every child gets ``PR_SET_PDEATHSIG`` (``SIGKILL``), so a ``kill -9`` of
the supervisor does not leave it running. The kernel sends that signal when the
*thread* that forked the child exits, not the process: a fork from one of Trio's
cached worker threads (``trio.lowlevel.open_process`` forks there) would kill a
healthy child as soon as that thread has idled ten seconds. So the fork happens in
one thread of our own, ``trisup-spawn``, started at the first spawn and kept for
the life of the process (a daemon thread blocked on its queue, never exiting). The
child sets the signal itself (``preexec_fn``, a ``prctl`` through ctypes), then
checks that its parent is still the supervisor: if the supervisor died between the
fork and the ``prctl``, the signal would never come, so the child kills itself.

The spawned child is waited for through a pidfd (``wait_readable``), then reaped
with ``waitpid`` under `LOCK`, which the orphan reaper (`trisup._reaper`) takes too:
`SPAWNED` holds the pids this module started and has not reaped yet, so the reaper
never takes their exit status.

Elsewhere (macOS, other POSIX systems, a Linux kernel without ``pidfd_open``),
children are started with ``trio.lowlevel.open_process`` as before, without a
parent-death signal.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar, final

import outcome
import trio

from ._credentials import Credentials

__all__ = [
    "LOCK",
    "SPAWNED",
    "Child",
    "contained",
    "prctl",
    "spawn",
]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

LOCK = threading.Lock()
"""Held while a child is forked and registered, and while orphans are reaped."""

SPAWNED: set[int] = set()
"""Pids started by `spawn` (Linux path) and not reaped yet; guarded by `LOCK`."""


class Child(Protocol):
    """What `ProcessService` uses of a started child (`trio.Process` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdout(self) -> trio.abc.ReceiveStream | None: ...

    @property
    def stderr(self) -> trio.abc.ReceiveStream | None: ...

    async def wait(self) -> int: ...


_prctl_fn: Callable[[int, int, int, int, int], int] | None = None


def _load_prctl() -> Callable[[int, int, int, int, int], int]:
    global _prctl_fn  # loaded once, at the first use
    if _prctl_fn is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: no ldconfig run
        function = libc.prctl
        function.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
        function.restype = ctypes.c_int
        _prctl_fn = function
    return _prctl_fn


def prctl(option: int, arg: int) -> int:
    """``prctl(option, arg, 0, 0, 0)`` through ctypes (Linux); 0 on success."""
    return _load_prctl()(option, arg, 0, 0, 0)


def _pidfd_works() -> bool:
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel older than 5.3, or a seccomp filter
        return False
    return True


contained = _pidfd_works()
"""Whether children get a parent-death signal here (Linux with ``pidfd_open``)."""


def _die_with(parent: int) -> Callable[[], None]:
    """The ``preexec_fn`` of a child of *parent*: SIGKILL when the forking thread exits."""
    call = _load_prctl()  # loaded now, not in the child

    def preexec() -> None:
        call(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


# ----------------------------------------------------------- the spawn thread

_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _serve_jobs() -> None:
    while True:
        _jobs.get()()


T = TypeVar("T")


async def _in_spawn_thread(fn: Callable[[], T]) -> T:
    """Run *fn* in the ``trisup-spawn`` thread; not cancellable once submitted."""
    global _thread  # started once, kept for the life of the process
    await trio.lowlevel.checkpoint_if_cancelled()
    with _thread_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve_jobs, name="trisup-spawn", daemon=True)
            _thread.start()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def job() -> None:
        result = outcome.capture(fn)
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    _jobs.put(job)

    def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        return trio.lowlevel.Abort.FAILED  # a forked child must not be lost

    result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    return result


# ---------------------------------------------------------------- the child


@final
class _Contained:
    """A child started by the spawn thread, waited for through its pidfd."""

    __slots__ = ("_pidfd", "_popen", "_wait_lock", "pid", "stderr", "stdout")

    def __init__(
        self, popen: subprocess.Popen[bytes], stdout: int, stderr: int, pidfd: int
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout: trio.abc.ReceiveStream | None = trio.lowlevel.FdStream(stdout)
        self.stderr: trio.abc.ReceiveStream | None = trio.lowlevel.FdStream(stderr)
        self._pidfd: int | None = pidfd
        self._wait_lock = trio.Lock()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait until the child has exited, reap it and return its code (as `Popen`)."""
        async with self._wait_lock:
            if self._popen.returncode is None:
                assert self._pidfd is not None
                await trio.lowlevel.wait_readable(self._pidfd)
                with LOCK:
                    self._popen.wait()  # an exited child: waitpid returns at once
                    SPAWNED.discard(self.pid)
                trio.lowlevel.notify_closing(self._pidfd)
                os.close(self._pidfd)
                self._pidfd = None
        code = self._popen.returncode
        assert code is not None
        return code


def _popen(
    argv: Sequence[str],
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    credentials: Credentials,
) -> tuple[subprocess.Popen[bytes], int, int, int]:
    """Fork and exec in the spawn thread; the child's pid is registered before `LOCK` drops.

    Returns the `Popen`, the read ends of its stdout and stderr, and its pidfd.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        with LOCK:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
                user=credentials.uid,
                group=credentials.gid,
                extra_groups=credentials.groups,
                umask=credentials.umask,
            )
            SPAWNED.add(popen.pid)
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:  # out of descriptors: the child must not run unwatched
            os.killpg(popen.pid, signal.SIGKILL)
            with LOCK:
                popen.wait()
                SPAWNED.discard(popen.pid)
            raise
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return popen, out_r, err_r, pidfd


async def spawn(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    credentials: Credentials,
) -> Child:
    """Start *argv* in its own session, stdin from ``/dev/null``, stdout and stderr piped.

    On Linux it dies with the supervisor (see the module docstring). Not cancellable
    once the fork has been asked for: a started child is always returned.

    Raises:
        OSError: the program could not be started (as `subprocess.Popen`).
    """
    if contained:
        started = await _in_spawn_thread(lambda: _popen(argv, cwd, env, credentials))
        return _Contained(*started)  # its streams and lock made in Trio's thread
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        user=credentials.uid,
        group=credentials.gid,
        extra_groups=credentials.groups,
        umask=credentials.umask,
    )
    return process
