"""The live status view of ``trisup run`` and ``trisup demo`` (needs rich: ``trisup[cli]``).

A table of every service — status and phase in colour, starts, restarts,
consecutive failures, uptime, current delay, last error — redrawn when an event arrives (at
most twenty times a second, so a crash storm costs little) and once a second for
the uptimes. Log lines (process output, warnings) are printed above it. Rich's
own refresh thread is not used: a Trio task does the redrawing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ._events import Subscription
from ._manager import Manager
from ._report import HEADERS, NUMERIC, Row, format_duration, rows_of

__all__ = ["PHASE_STYLES", "STATUS_STYLES", "LiveView", "RichLogHandler", "rich_table"]

STATUS_STYLES = {
    "running": "green",
    "starting": "cyan",
    "crashing": "bold yellow",
    "error": "red",
    "failed": "bold red",
    "completed": "blue",
    "stopped": "dim",
    "idle": "dim",
}

PHASE_STYLES = {
    "running": "green",
    "starting": "cyan",
    "waiting_deps": "cyan",
    "stopping": "yellow",
    "backoff": "bold yellow",
    "group_wait": "yellow",
    "completed": "blue",
    "failed": "bold red",
    "stopped": "dim",
    "idle": "dim",
}
"""The style of each shown phase (``stopped`` while held, else the `Phase`)."""

_MIN_WIDTH = {"STATUS": 9, "PHASE": 12}  # the longest values: crashing, waiting_deps

_MIN_INTERVAL = 0.05  # at most twenty redraws a second
_TICK = 1.0  # redraw at least once a second, for the uptimes


def rich_table(
    rows: Sequence[Row], *, title: str | None = None, caption: str | None = None
) -> Table:
    """The service table as a rich `Table`, as wide as the console.

    Every column keeps its full width but the last error's, which takes what is
    left and is cut with an ellipsis.
    """
    table = Table(title=title, caption=caption, title_justify="left", expand=True)
    for i, header in enumerate(HEADERS):
        if header == "LAST ERROR":
            table.add_column(header, overflow="ellipsis", no_wrap=True, ratio=1)
        else:
            table.add_column(
                header,
                justify="right" if i in NUMERIC else "left",
                no_wrap=True,
                min_width=max(len(header), _MIN_WIDTH.get(header, 0)),
            )
    for row in rows:
        cells = row.cells()
        status = Text(cells[1], style=STATUS_STYLES.get(row.status, ""))
        phase = Text(cells[2], style=PHASE_STYLES.get(row.phase, ""))
        error = Text(cells[-1], style="red" if row.error else "dim")
        table.add_row(Text(cells[0], style="bold"), status, phase, *cells[3:-1], error)
    return table


def _summary(rows: Sequence[Row]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    parts = [f"{len(rows)} services"]
    parts += [f"{n} {status}" for status, n in sorted(counts.items())]
    return ", ".join(parts)


class LiveView:
    """Keeps a live table of the services of one or more managers on a console.

    Args:
        managers: ``(prefix, manager)`` pairs; each service's name is shown
            with its prefix (``"backend/"`` for a nested manager).
        console: the rich console to draw on.
        title: the first words of the table's title.
    """

    def __init__(
        self, managers: Sequence[tuple[str, Manager]], console: Console, *, title: str
    ) -> None:
        self.managers = list(managers)
        self.console = console
        self.title = title
        self.began = time.monotonic()
        self._wake = trio.Event()

    def render(self) -> Table:
        """The table as it is now."""
        rows = rows_of(self.managers)
        up = format_duration(time.monotonic() - self.began)
        return rich_table(
            rows,
            title=f"{self.title} · {_summary(rows)} · up {up}",
            caption="Ctrl-C stops gracefully; a second Ctrl-C stops at once",
        )

    def changed(self) -> None:
        """Ask for a redraw soon (sync; any task may call it)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Draw until cancelled; the last table stays on the screen.

        Ready once the view is on the screen and subscribed to every manager.
        """
        self.began = time.monotonic()
        with Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="visible",
        ) as live:
            try:
                async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
                    for _, manager in self.managers:
                        events = await stack.enter_async_context(manager.subscribe())
                        nursery.start_soon(self._follow, events)
                    task_status.started()
                    while True:
                        with trio.move_on_after(_TICK):
                            await self._wake.wait()
                        self._wake = trio.Event()
                        live.update(self.render(), refresh=True)
                        await trio.sleep(_MIN_INTERVAL)
            finally:
                live.update(self.render(), refresh=True)

    async def _follow(self, events: Subscription) -> None:
        async for _ in events:
            self._wake.set()


class RichLogHandler(logging.Handler):
    """Prints log records above the live table: time, service, message."""

    def __init__(self, console: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        """Print *record* as one line (markup in the message is not interpreted)."""
        try:
            when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
            who: object = getattr(record, "service", None) or getattr(record, "manager", None)
            stream: object = getattr(record, "stream", None)
            if record.levelno >= logging.ERROR:
                style = "red"
            elif record.levelno >= logging.WARNING:
                style = "yellow"
            else:
                style = "red" if stream == "stderr" else ""
            line = Text.assemble(
                (when, "dim"),
                " ",
                (str(who or record.name), "bold"),
                (" | " if stream else ": ", "dim"),
                (record.getMessage(), style),
            )
            self.console.print(line, soft_wrap=True, highlight=False)
        except Exception:
            self.handleError(record)
