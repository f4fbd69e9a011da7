"""The stderr lines that say why a child process failed.

Pure: no trio import. A run of a `ProcessService` keeps the last `KEPT` non-blank
lines its child wrote on stderr (`StderrTail`, fed by the output pump: one slice and
one ``extend`` per batch of lines, decoded only when the run fails). When the child
fails, `lines_that_matter` picks from them what goes into the error's message:

1. a Python traceback: its final exception line (``ValueError: bad port``), the one
   after the last traceback's frames;
2. else the lines that look like errors (not indented: a stack's frames never count),
   the most severe kind present: ``FATAL``, ``PANIC``, ``CRITICAL``, Go's ``panic:``
   and ``fatal error:`` first; then ``ERROR``, ``Error``, ``Exception``, ``error:``;
   each with the ``DETAIL:`` / ``HINT:`` lines that follow it (PostgreSQL's), the
   last `SHOWN` of them;
3. else the last `SHOWN` lines (a message written over several lines, such as
   PostgreSQL's refusal to run as root).

Each line is cut to `LINE_CHARS` characters. Lines before the last `KEPT` are not
seen: an error line followed by more than that many lines (a long Go stack) is lost.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import final

__all__ = ["KEPT", "LINE_CHARS", "SHOWN", "StderrTail", "lines_that_matter"]

KEPT = 20
"""How many of the last non-blank stderr lines a run keeps."""

SHOWN = 4
"""At most this many lines go into a message."""

LINE_CHARS = 200
"""Each line is cut to this many characters."""

_FRAME = re.compile(r'^\s*(?:Traceback \(most recent call last\):|File ".*", line \d+)')
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?::|$)")  # ValueError: x, KeyboardInterrupt
_SEVERE = re.compile(r"FATAL|PANIC|CRITICAL|^panic: |\bfatal error: ")
_ERROR = re.compile(r"ERROR|Error|Exception|\berror: ")
_FOLLOWER = re.compile(r"\b(?:DETAIL|HINT):")


def _cut(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"


def _python_exception(lines: Sequence[str]) -> str | None:
    """The final exception line of the last Python traceback in *lines*, if any."""
    last_frame = None
    for i, line in enumerate(lines):
        if _FRAME.match(line):
            last_frame = i
    if last_frame is None:
        return None
    for line in lines[last_frame + 1 :]:
        if not line[:1].isspace() and _EXCEPTION.match(line):
            return line
    return None


def _marked(lines: Sequence[str], pattern: re.Pattern[str]) -> list[str]:
    """The lines matching *pattern*, each with its DETAIL/HINT lines; the last `SHOWN`.

    An indented line is a frame of a stack (Java's ``\tat ...ErrorHandler...``), never
    an error line of its own.
    """
    picked: list[str] = []
    following = False
    for line in lines:
        if not line[:1].isspace() and pattern.search(line):
            picked.append(line)
            following = True
        elif following and _FOLLOWER.search(line):
            picked.append(line)
        else:
            following = False
    return picked[-SHOWN:]


def lines_that_matter(lines: Sequence[str]) -> list[str]:
    """The lines of a failed run's stderr that say why (see the module's docstring).

    >>> lines_that_matter(["starting", "FATAL:  bad config", "HINT:  fix it", "bye"])
    ['FATAL:  bad config', 'HINT:  fix it']
    """
    lines = [line.rstrip() for line in lines if line.strip()]
    exception = _python_exception(lines)
    if exception is not None:
        return [_cut(exception.strip())]
    picked = _marked(lines, _SEVERE) or _marked(lines, _ERROR) or lines[-SHOWN:]
    return [_cut(line.strip()) for line in picked]


@final
class StderrTail:
    """The last `KEPT` non-blank lines a run's child wrote on stderr, as raw bytes."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: deque[bytes] = deque(maxlen=KEPT)

    def add(self, lines: Sequence[bytes]) -> None:
        """Keep the non-blank ones of the last `KEPT` of *lines* (a batch, oldest first)."""
        self._lines.extend(filter(bytes.strip, lines[-KEPT:]))  # the pump is hot: no loop

    def lines(self) -> list[str]:
        """The lines kept, oldest first, decoded (UTF-8, errors replaced), indentation kept."""
        return [raw.decode("utf-8", "replace").rstrip() for raw in self._lines]
