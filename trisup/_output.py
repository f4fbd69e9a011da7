"""A child's output at full speed: lines in batches, log files written off the event loop.

A pipe is read in chunks; each chunk's complete lines are handled as one batch:

- the bytes go, as written, to the stream's log file (`LogFile`), whose writes happen
  in a thread of its own; when more than ``PENDING_LIMIT`` (1 MiB) bytes wait for that thread,
  the pump stops reading the pipe until they are written, so a slow disk slows the
  child down (its pipe fills) instead of the event loop or the file losing lines;
- the last lines go to the ring (`Output.tail`), as bytes, decoded only when read;
- the count grows by the number of lines and waiters of `Output.wait` wake once.

Only while a ``ready_pattern`` has not matched yet, or with ``log_output`` (one
`logging.LogRecord` per line, the slow path), is each line decoded on arrival.

The log files themselves (rotation, the writer thread) are in ``trisup._logfile``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import Protocol, final

import trio

from ._logfile import LogFile
from ._stderr import StderrTail

__all__ = ["MAX_LINE", "Output", "RunState"]

MAX_LINE = 64 * 1024  # a longer line is cut into pieces of this size
_CLOSE_TIMEOUT = 1.0  # how long closing a pipe may take

# ----------------------------------------------------------------- output


class RunState(Protocol):
    """What a pump updates about the current run of the child."""

    pid: int
    stderr: StderrTail


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _split(block: bytes) -> list[bytes]:
    """The lines of *block* (which ends with a newline), longer ones cut at `MAX_LINE`."""
    lines = block.split(b"\n")
    lines.pop()
    if len(block) > MAX_LINE and max(map(len, lines)) > MAX_LINE:
        lines = [
            line[i : i + MAX_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_LINE)
        ]
    return lines


@final
class Output:
    """A service's output: the ring, the line count, its log files and its logger.

    Args:
        name: the service's name (the logger is ``trisup.process.<name>``).
        lines: how many lines the ring keeps.
        files: the log file of each stream (``"stdout"``, ``"stderr"``), if any.
        log_output: log every line at INFO (one record per line).
    """

    def __init__(
        self, name: str, lines: int, files: dict[str, LogFile], *, log_output: bool
    ) -> None:
        self.name = name
        self.files = files
        self.log_output = log_output
        self._ring: deque[tuple[str, bytes]] = deque(maxlen=lines)
        self._keep = lines
        self._count = 0
        self._arrived = trio.Event()  # set, and replaced, when lines arrive
        self._log = logging.getLogger(f"trisup.process.{name}")

    # ------------------------------------------------------------- reading

    def tail(self) -> list[tuple[str, str]]:
        """The lines in the ring, oldest first, as ``(stream, line)``."""
        return [(stream, _text(raw)) for stream, raw in self._ring]

    @property
    def count(self) -> int:
        """How many lines have been received in all."""
        return self._count

    def since(self, count: int) -> tuple[int, list[tuple[str, str]]]:
        """The lines received after the first *count* still in the ring, and the total."""
        total = self._count
        new = min(max(total - count, 0), len(self._ring))
        if not new:
            return total, []
        ring = list(self._ring)
        return total, [(stream, _text(raw)) for stream, raw in ring[len(ring) - new :]]

    async def wait(self, count: int) -> None:
        """Wait until more than *count* lines have been received."""
        while self._count <= count:
            await self._arrived.wait()
        await trio.lowlevel.checkpoint()

    async def open(self) -> None:
        """Open the log files (in worker threads).

        Raises:
            OSError: a log file cannot be opened.
        """
        for file in self.files.values():
            await file.open()

    def close(self) -> None:
        """Close the log files (once what is queued is written)."""
        for file in self.files.values():
            file.close()

    async def flush(self) -> None:
        """Wait until the log files hold everything received so far."""
        for file in self.files.values():
            await file.flush()

    # ------------------------------------------------------------- writing

    async def pump(
        self,
        stream: trio.abc.ReceiveStream,
        kind: str,
        run: RunState,
        match: Callable[[str], bool] | None,
    ) -> None:
        """Read *stream* to its end, handling its lines in batches.

        *match* is called with each line until it returns true (readiness). The log
        file gets the bytes as written, in whole lines (a line over 64 KiB may be
        passed on in pieces before its end arrives).
        """
        file = self.files.get(kind)
        buffer = bytearray()
        try:
            await self._pump(stream, file, buffer, kind, run, match)
        finally:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await stream.aclose()

    async def _pump(
        self,
        stream: trio.abc.ReceiveStream,
        file: LogFile | None,
        buffer: bytearray,
        kind: str,
        run: RunState,
        match: Callable[[str], bool] | None,
    ) -> None:
        while True:
            chunk = await stream.receive_some(MAX_LINE)
            if not chunk:
                break
            buffer += chunk
            end = buffer.rfind(b"\n") + 1
            block = b""
            lines: list[bytes] = []
            if end:
                block = bytes(buffer[:end])
                del buffer[:end]
                lines = _split(block)
            if len(buffer) >= MAX_LINE:  # a long line still without its end
                cut = len(buffer) - len(buffer) % MAX_LINE
                long = bytes(buffer[:cut])
                del buffer[:cut]
                block += long
                lines += [long[i : i + MAX_LINE] for i in range(0, cut, MAX_LINE)]
            if lines:
                if file is not None:
                    await file.write(block)
                match = self._add(lines, kind, run, match)
        if buffer:
            rest = bytes(buffer)
            if file is not None:
                await file.write(rest)
            self._add([rest], kind, run, match)

    def _add(
        self, lines: list[bytes], kind: str, run: RunState, match: Callable[[str], bool] | None
    ) -> Callable[[str], bool] | None:
        keep = self._keep
        if keep:
            self._ring.extend(zip(repeat(kind), lines[-keep:] if len(lines) > keep else lines))
        self._count += len(lines)
        arrived = self._arrived
        if arrived.statistics().tasks_waiting:
            arrived.set()
            self._arrived = trio.Event()
        if kind == "stderr":
            run.stderr.add(lines)
        if self.log_output and self._log.isEnabledFor(logging.INFO):
            extra = {"service": self.name, "event": "output", "stream": kind, "pid": run.pid}
            for raw in lines:
                self._log.info("%s", _text(raw), extra=extra)
        if match is not None:
            for raw in lines:
                if match(_text(raw)):
                    return None
        return match
