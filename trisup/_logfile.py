"""Log files: rotated by size as supervisord does, written by a thread off the event loop.

`RotatingFile` rotates by size: ``name.log`` is renamed ``name.log.1`` (``.1`` to
``.2`` and so on, the oldest beyond ``backups`` replaced) once the next lines would
take it past ``maxbytes``. Lines are never split across files: a file exceeds
``maxbytes`` only when it holds a single longer line. `LogFile` feeds one from Trio
through a queue written by a thread of its own, with backpressure past
`PENDING_LIMIT` bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import final

import trio

__all__ = [
    "DEFAULT_BACKUPS",
    "DEFAULT_MAXBYTES",
    "PENDING_LIMIT",
    "LogFile",
    "RotatingFile",
    "byte_size",
    "log_files",
]

DEFAULT_MAXBYTES = 50 * 1024 * 1024  # supervisord's logfile_maxbytes
DEFAULT_BACKUPS = 10  # supervisord's logfile_backups
PENDING_LIMIT = 1024 * 1024  # bytes queued for a log file before the pipe is left unread
_IDLE = 10.0  # seconds after which an idle writer thread ends (a new write starts another)

_SIZE = re.compile(r"\s*(\d+)\s*([kmg]i?b?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def byte_size(key: str, value: object) -> int:
    """A size in bytes: an int, or a string such as ``"50MB"``, ``"512KB"`` or ``"1GiB"``.

    Units are powers of 1024, as supervisord's. Raises `TypeError` or `ValueError`
    naming *key*.
    """
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(
                f'{key} must be a number of bytes or a size like "50MB", not {value!r}'
            )
        unit = (match[2] or "")[:1].lower()
        return int(match[1]) * _UNITS[unit]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} must be an int or a size string, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{key} must not be negative, not {value}")
    return value


# ------------------------------------------------------------------ files


def log_files(
    *,
    stdout: str | os.PathLike[str] | None,
    stderr: str | os.PathLike[str] | None,
    both: str | os.PathLike[str] | None,
    maxbytes: object,
    backups: object,
) -> dict[str, LogFile]:
    """The `LogFile` of each stream from `ProcessService`'s options (checked).

    A relative path is made absolute against the current directory. One path for
    both streams (``logfile``, or the same path twice) gives one shared `LogFile`.

    Raises:
        TypeError: an option has the wrong type (the message names it).
        ValueError: an option has a bad value, or ``logfile`` is combined with
            ``stdout_logfile`` / ``stderr_logfile``.
    """
    size = byte_size("logfile_maxbytes", maxbytes)
    if isinstance(backups, bool) or not isinstance(backups, int):
        raise TypeError(f"logfile_backups must be an int, not {type(backups).__name__}")
    if backups < 0:
        raise ValueError(f"logfile_backups must not be negative, not {backups}")
    if both is not None:
        if stdout is not None or stderr is not None:
            raise ValueError(
                "logfile cannot be combined with stdout_logfile or stderr_logfile; choose one"
            )
        stdout = stderr = both
    paths: dict[str, str] = {}
    for key, path in (("stdout", stdout), ("stderr", stderr)):
        if path is None:
            continue
        name = "logfile" if both is not None else f"{key}_logfile"
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path, not {type(path).__name__}")
        text = os.fspath(path)
        if not text or "\0" in text:
            raise ValueError(f"{name} must be a non-empty path without NUL bytes, not {text!r}")
        paths[key] = os.path.abspath(text)
    files: dict[str, LogFile] = {}
    shared: dict[str, LogFile] = {}
    for key, path in paths.items():
        if path not in shared:
            shared[path] = LogFile(path, maxbytes=size, backups=backups)
        files[key] = shared[path]
    return files


@final
class RotatingFile:
    """A file opened for appending, rotated by size (blocking: used by a writer thread).

    Args:
        path: the file; backups are ``path.1`` … ``path.N``.
        maxbytes: rotate before a file would grow past this size; 0: never.
        backups: how many rotated files to keep; 0: the file is truncated instead.

    Raises:
        OSError: the file cannot be opened.
    """

    def __init__(self, path: str, maxbytes: int, backups: int) -> None:
        self.path = path
        self.maxbytes = maxbytes
        self.backups = backups
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115  # kept open, closed by close()
        self.size = os.fstat(self._file.fileno()).st_size

    def write(self, data: bytes) -> None:
        """Append *data*, rotating at line ends so that no file passes ``maxbytes``."""
        while data:
            if self.maxbytes <= 0 or self.size + len(data) <= self.maxbytes:
                self._write(data)
                return
            cut = data.rfind(b"\n", 0, self.maxbytes - self.size) + 1
            if not cut:  # the next line does not fit
                if self.size:
                    self.rotate()
                    continue
                cut = data.find(b"\n") + 1 or len(data)  # alone and too long: it stays whole
            self._write(data[:cut])
            data = data[cut:]
            self.rotate()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            assert written is not None, "a blocking file"
            view = view[written:]
            self.size += written

    def rotate(self) -> None:
        """``path`` becomes ``path.1`` (and so on); a new, empty ``path`` is opened."""
        self._file.close()
        if self.backups > 0:
            for n in range(self.backups - 1, 0, -1):
                older = f"{self.path}.{n}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{n + 1}")
            if os.path.exists(self.path):
                os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115  # see __init__
        self.size = 0

    def close(self) -> None:
        """Close the file."""
        self._file.close()


@final
class LogFile:
    """A `RotatingFile` fed from Trio and written by a thread of its own.

    `write` queues bytes and returns at once while fewer than ``limit`` bytes wait;
    beyond that it waits for the thread (backpressure). The thread ends after ten idle
    seconds and is started again by the next write. Write errors are logged once on
    ``trisup.output`` and the batch is dropped (counted in ``lost``).
    """

    def __init__(
        self,
        path: str,
        *,
        maxbytes: int = DEFAULT_MAXBYTES,
        backups: int = DEFAULT_BACKUPS,
        limit: int = PENDING_LIMIT,
    ) -> None:
        self.path = path
        self.maxbytes = maxbytes
        self.backups = backups
        self.limit = limit
        self.lost = 0  # bytes that could not be written
        self._file: RotatingFile | None = None
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._pending: list[bytes] = []
        self._bytes = 0  # queued or being written
        self._thread: threading.Thread | None = None
        self._waiters: list[trio.Event] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._failed = False
        self._close_when_done = False

    def __repr__(self) -> str:
        return f"<trisup LogFile {self.path!r}>"

    @property
    def pending(self) -> int:
        """Bytes queued or being written."""
        return self._bytes

    async def open(self) -> None:
        """Open the file (in a worker thread) if it is not open yet.

        Raises:
            OSError: the file cannot be opened.
        """
        with self._lock:
            self._close_when_done = False
            if self._file is not None:
                return
        args = (self.path, self.maxbytes, self.backups)
        opened = await trio.to_thread.run_sync(RotatingFile, *args)
        with self._lock:
            if self._file is None:
                self._file = opened
                return
        opened.close()  # the writer thread opened it meanwhile

    async def write(self, data: bytes) -> None:
        """Queue *data*; wait while more than ``limit`` bytes are queued.

        Checkpoints only when it waits. Cancelling the wait leaves *data* queued.
        """
        with self._lock:
            self._pending.append(data)
            self._bytes += len(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"trisup log {self.path}", daemon=True
                )
                self._thread.start()
            else:
                self._work.notify()
        if self._bytes > self.limit:
            await self._wait_for(lambda: self._bytes <= self.limit)

    async def flush(self) -> None:
        """Wait until every queued byte has been written (no checkpoint if none wait)."""
        await self._wait_for(lambda: self._bytes == 0)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while True:
            with self._lock:
                if condition():
                    return
                event = trio.Event()
                self._waiters.append(event)
                self._token = trio.lowlevel.current_trio_token()
            await event.wait()

    def close(self) -> None:
        """Close the file now, or once the thread has written what is queued.

        A later `open` or `write` opens it again.
        """
        with self._lock:
            if self._bytes:
                self._close_when_done = True
            elif self._file is not None:
                self._file.close()
                self._file = None

    def _run(self) -> None:
        """The writer thread: write what is queued in one batch, until idle."""
        while True:
            with self._work:
                if not self._pending and not self._work.wait_for(lambda: self._pending, _IDLE):
                    self._thread = None
                    return
                batch, self._pending = self._pending, []
            size = sum(map(len, batch))
            self._write(b"".join(batch))
            with self._lock:
                self._bytes -= size
                if self._close_when_done and not self._bytes and self._file is not None:
                    self._file.close()
                    self._file = None
                waiters, self._waiters = self._waiters, []
                token = self._token
            if waiters and token is not None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(_set_all, waiters)

    def _write(self, data: bytes) -> None:
        try:
            if self._file is None:
                self._file = RotatingFile(self.path, self.maxbytes, self.backups)
            self._file.write(data)
            self._failed = False
        except OSError as exc:
            self.lost += len(data)
            if not self._failed:
                self._failed = True
                logging.getLogger("trisup.output").error(
                    "cannot write log file %s: %s (output is dropped until it can)",
                    self.path,
                    exc,
                    extra={"event": "logfile_error", "path": self.path},
                )


def _set_all(events: list[trio.Event]) -> None:
    for event in events:
        event.set()
