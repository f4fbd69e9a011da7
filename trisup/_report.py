"""What the command line shows: table rows, the plain-text table and log lines.

No rich here: this is what ``trisup`` prints without a terminal or without the
``cli`` extra. A row is made from a service's JSON object in the HTTP API
(``ServiceInfo.to_dict()`` and ``phase``), so a live manager and a remote one
(``trisup status --url``) give the same table.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO, final

from ._errors import typed
from ._health import api_dict
from ._manager import Manager

__all__ = [
    "ERROR_WIDTH",
    "HEADERS",
    "NUMERIC",
    "LogfmtHandler",
    "Row",
    "align",
    "clip",
    "format_duration",
    "logfmt",
    "plain_table",
    "row_from_dict",
    "rows_of",
]

HEADERS = (
    "SERVICE",
    "STATUS",
    "PHASE",
    "STARTS",
    "RESTARTS",
    "FAILS",
    "UPTIME",
    "DELAY",
    "LAST ERROR",
)
"""The table's columns; PHASE is the shown phase (``stopped`` while stopped by hand, else
the `Phase`), FAILS counts consecutive failures."""

NUMERIC = frozenset({3, 4, 5, 6, 7})
"""The columns of `HEADERS` that hold numbers."""

ERROR_WIDTH = 120
"""The LAST ERROR cell of a plain table is cut to this many characters: room for the
type, a process's exit and the stderr lines after them."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One service as the table shows it."""

    name: str
    status: str
    phase: str
    starts: int
    restarts: int
    fails: int
    uptime: float
    delay: str  # the current delay while backing off, else ""
    error: str  # the last error with its type
    pid: int | None = None  # a process's child; not a column of the live table

    def cells(self) -> tuple[str, ...]:
        """The row's cells as text, in the order of `HEADERS`."""
        return (
            self.name,
            self.status,
            self.phase,
            str(self.starts),
            str(self.restarts),
            str(self.fails),
            format_duration(self.uptime) if self.uptime > 0 else "-",
            self.delay or "-",
            self.error or "-",
        )


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def row_from_dict(data: Mapping[str, object], prefix: str = "") -> Row:
    """A row from a service's JSON object in the HTTP API; missing keys read as empty.

    The phase shown is ``stopped`` while ``stopped`` is true, else ``phase``. The delay
    is shown only while the service backs off (phase ``backoff``); the error is
    ``last_error`` with its type (``last_error_type``): ``"FileNotFoundError: /etc/x"``.
    """
    delay = data.get("current_delay", "") if data.get("phase") == "backoff" else ""
    kind = data.get("last_error_type", "")
    error = typed(kind if isinstance(kind, str) else "", str(data.get("last_error", "")))
    pid = data.get("pid")
    return Row(
        name=prefix + str(data.get("name", "?")),
        status=str(data.get("status", "?")),
        phase="stopped" if data.get("stopped") is True else str(data.get("phase", "?")),
        starts=_int(data, "start_count"),
        restarts=_int(data, "restart_count"),
        fails=_int(data, "consec_failures"),
        uptime=_int(data, "current_uptime") / 1e9,
        delay=delay if isinstance(delay, str) else "",
        error=" ".join(error.split()),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
    )


def rows_of(managers: Sequence[tuple[str, Manager]]) -> list[Row]:
    """Rows for the services of each ``(prefix, manager)``, in order."""
    return [
        row_from_dict(api_dict(info), prefix)
        for prefix, manager in managers
        for info in manager.get_services_info()
    ]


def format_duration(seconds: float) -> str:
    """A short duration: ``"0.5s"``, ``"12.3s"``, ``"4m05s"``, ``"2h03m"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def align(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: frozenset[int] = frozenset(),
    indent: str = "",
) -> str:
    """Cells aligned in columns under *headers*; the *numeric* columns to the right."""
    table = [tuple(headers), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines: list[str] = []
    for n, cells in enumerate(table):
        aligned = [
            cell.rjust(widths[i]) if i in numeric and n else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        lines.append(indent + "  ".join(aligned).rstrip())
    return "\n".join(lines) + "\n"


def clip(text: str, width: int) -> str:
    """*text* cut to *width* characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def plain_table(rows: Sequence[Row], *, indent: str = "", max_error: int = ERROR_WIDTH) -> str:
    """The rows aligned under `HEADERS`; numbers right, text left."""
    cells = [(*row.cells()[:-1], clip(row.cells()[-1], max_error)) for row in rows]
    return align(HEADERS, cells, numeric=NUMERIC, indent=indent)


# ------------------------------------------------------------------ logging

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _value(value: object) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


def logfmt(record: logging.LogRecord) -> str:
    """One ``key=value`` line: time, level, the record's ``extra`` fields, message."""
    moment = datetime.fromtimestamp(record.created, UTC)
    parts = [
        f"ts={moment.strftime('%Y-%m-%dT%H:%M:%S')}.{moment.microsecond // 1000:03d}Z",
        f"level={record.levelname.lower()}",
    ]
    for key, value in record.__dict__.items():
        if key not in _STANDARD and value is not None:
            parts.append(f"{key}={_value(value)}")
    parts.append(f"msg={_value(record.getMessage())}")
    return " ".join(parts)


class LogfmtHandler(logging.Handler):
    """Writes each record as one `logfmt` line to a stream (no tracebacks)."""

    def __init__(self, stream: TextIO, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write *record* as one line and flush."""
        try:
            self.stream.write(logfmt(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)
