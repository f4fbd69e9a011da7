"""The command line's log output: a bounded queue and a writer thread.

``trisup run --no-live`` prints one logfmt line per event. Writing them from the event
loop would freeze the whole supervisor as soon as stdout stalls (a pipe no one reads,
``| less``, Ctrl-S in a terminal): no restarts, no console, no signal handling. So a
record is formatted where it is emitted and its line put in a bounded queue; a thread
writes the queue to the stream in batches. When the queue is full the line is dropped
and counted; once the writer catches up it writes a line saying how many were dropped,
and `QueuedLogfmtHandler.close` says how many in all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from typing import TextIO, final

from ._report import logfmt

__all__ = ["DEFAULT_CAPACITY", "QueuedLogfmtHandler", "dropped_line"]

DEFAULT_CAPACITY = 10_000  # lines waiting for the writer before new ones are dropped
_CLOSE_TIMEOUT = 1.0  # how long close() waits for the writer to write what is queued


def dropped_line(count: int, *, total: bool = False) -> str:
    """The logfmt line that reports *count* dropped lines (``total``: at exit)."""
    message = f"trisup: {count} log lines dropped" + (" in all" if total else "")
    record = logging.makeLogRecord(
        {
            "name": "trisup.cli",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": message,
            "event": "log_dropped",
            "dropped": count,
        }
    )
    return logfmt(record) + "\n"


@final
class QueuedLogfmtHandler(logging.Handler):
    """Writes each record as one logfmt line to *stream*, from a thread; never blocks.

    With a stream that has a file descriptor the thread writes to it with `os.write`
    (so no lock of the stream is held while the write is stuck); otherwise with
    ``stream.write`` and ``flush``.

    Attributes:
        dropped: lines dropped in all because the queue was full.
    """

    def __init__(
        self, stream: TextIO, level: int = logging.NOTSET, *, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        super().__init__(level)
        self.stream = stream
        self.capacity = capacity
        self.dropped = 0
        self._unreported = 0
        self._queue: deque[str] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closing = False  # the writer ends once the queue is empty
        self._closed = False
        self._fd: int | None = None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = stream.fileno()
            stream.flush()  # what was printed before comes first
            self._fd = fd
        self._thread = threading.Thread(target=self._run, name="trisup log writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue *record* as one line, or count it as dropped when the queue is full."""
        try:
            line = logfmt(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self._cond:
            if len(self._queue) >= self.capacity:
                self.dropped += 1
                self._unreported += 1
                return
            self._queue.append(line)
            if len(self._queue) == 1:
                self._cond.notify()

    def close(self) -> None:
        """Write what is queued (waiting at most a second) and the total dropped; stop.

        Only the first call does it (`logging.shutdown` calls it again at exit).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify()
        self._thread.join(_CLOSE_TIMEOUT)
        if self._thread.is_alive():  # the stream is stuck: what is left is lost
            with self._cond:
                self.dropped += len(self._queue)
                self._queue.clear()
            if self.dropped:
                _write_soon(2, dropped_line(self.dropped, total=True))
        elif self.dropped:
            if self._fd is not None:
                _write_soon(self._fd, dropped_line(self.dropped, total=True))
            else:
                with contextlib.suppress(Exception):
                    self._write(dropped_line(self.dropped, total=True))
        super().close()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, deque()
                unreported, self._unreported = self._unreported, 0
            text = "".join(batch)
            if unreported:
                text += dropped_line(unreported)
            try:
                self._write(text)
            except Exception:  # a closed stream: nothing more can be shown
                with self._cond:
                    self._closing = True
                    self.dropped += len(self._queue) + len(batch)
                    self._queue.clear()
                return

    def _write(self, text: str) -> None:
        if self._fd is None:
            self.stream.write(text)
            self.stream.flush()
            return
        data = memoryview(text.encode("utf-8", "replace"))
        while data:
            data = data[os.write(self._fd, data) :]


def _write_soon(fd: int, text: str) -> None:
    """Write *text* to *fd* from a daemon thread, waiting for it at most a moment."""

    def write() -> None:
        with contextlib.suppress(OSError):
            os.write(fd, text.encode())

    thread = threading.Thread(target=write, name="trisup log notice", daemon=True)
    thread.start()
    thread.join(0.2)
