"""The live status view: in a pseudo-terminal as a real ``trisup run``, and in-process."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest
import trio
from rich.console import Console

import trisup
from trisup import ServiceStatus
from trisup._cli import cli_logging, make_live_view
from trisup._live import LiveView, RichLogHandler, rich_table
from trisup._report import row_from_dict

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pseudo-terminals")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
PY = json.dumps(sys.executable)


def plain(data: bytes) -> str:
    """Terminal output without its escape sequences."""
    return ANSI.sub("", data.decode("utf-8", "replace"))


class Terminal:
    """A process running in a pseudo-terminal of 40 x 160, its output collected."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
        }
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = b""

    def read(self, timeout: float) -> bool:
        """Read what is there within *timeout*; ``False`` once the terminal has closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child side is closed
            return False
        self.output += data
        return bool(data)

    def wait_for(self, predicate: object, within: float = 20.0) -> None:
        """Read until ``predicate(plain output)`` holds."""
        deadline = time.monotonic() + within
        while not predicate(plain(self.output)):  # type: ignore[operator]
            assert time.monotonic() < deadline, plain(self.output)[-3000:]
            assert self.read(0.1), plain(self.output)[-3000:]

    def finish(self, within: float = 30.0) -> int:
        """Read to the end and return the exit code."""
        deadline = time.monotonic() + within
        while self.read(0.1):
            assert time.monotonic() < deadline, plain(self.output)[-3000:]
        os.close(self.master)
        return self.proc.wait(timeout=within)


def cells(line: str) -> list[str]:
    """The cells of one drawn table row (none for another line)."""
    return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]


def last_table(text: str) -> dict[str, list[str]]:
    """The rows of the last table drawn: service name -> cells."""
    start = text.rfind("\n", 0, text.rfind("SERVICE")) + 1
    rows: dict[str, list[str]] = {}
    for line in text[start:].splitlines()[1:]:
        row = cells(line)
        if len(row) == 9 and row[0]:
            rows[row[0]] = row
    return rows


def test_trisup_run_draws_a_live_table_in_a_terminal(tmp_path: Path) -> None:
    """In a terminal `trisup run` keeps a live table of the services; SIGTERM stops it."""
    config = tmp_path / "services.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [manager]
            name = "shop"

            [services.web]
            command = [{PY}, "-c", "import time; print('listening', flush=True); time.sleep(60)"]
            ready_pattern = "listening"

            [services.worker]
            command = [{PY}, "-c", "import sys; sys.exit('queue unreachable')"]
            restart_delay = 30
            """
        )
    )
    term = Terminal([sys.executable, "-m", "trisup", "run", str(config)], tmp_path)
    try:

        def settled(text: str) -> bool:
            rows = last_table(text)
            return (
                rows.get("web", [""] * 2)[1] == "running"
                and rows.get("worker", [""] * 2)[1] == "crashing"
            )

        term.wait_for(settled)
        text = plain(term.output)
        assert "trisup · shop · 2 services, 1 crashing, 1 running" in text
        header = text[text.rfind("\n", 0, text.rfind("SERVICE")) + 1 :].splitlines()[0]
        assert [h.strip() for h in re.split(r"[│┃]", header)[1:-1]] == [
            "SERVICE",
            "STATUS",
            "PHASE",
            "STARTS",
            "RESTARTS",
            "FAILS",
            "UPTIME",
            "DELAY",
            "LAST ERROR",
        ]
        worker = last_table(text)["worker"]
        error = "ProcessExited: exited with code 1; stderr: queue unreachable"
        assert worker == ["worker", "crashing", "backoff", "1", "0", "1", "-", "30s", error]
        assert "web | listening" in text  # process output printed above the table
        assert b"\x1b[" in term.output  # colours and cursor movement: a real live view
        term.proc.send_signal(signal.SIGTERM)
        assert term.finish() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait()
    final = last_table(plain(term.output))
    # a shutdown stops nothing by hand: web is idle; worker, stopped while backing off, error;
    # neither backs off any more: no delay
    assert final == {
        "web": ["web", "idle", "idle", "1", "0", "0", "-", "-", "-"],
        "worker": ["worker", "error", "idle", "1", "0", "1", "-", "-", error],
    }
    assert "received SIGTERM, shutting down gracefully" in plain(term.output)


async def test_live_view_in_process_redraws_on_events() -> None:
    """The view subscribes to every manager and redraws as statuses change."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    root = trisup.Manager("root")
    nested = trisup.Manager("nested")
    nested.add(trisup.new_service("inner", trio.sleep_forever))
    root.add(nested)

    async def crash() -> None:
        raise ValueError("nope")

    root.add(trisup.new_service("bad", crash), restart_delay=60)
    view = LiveView([("", root), ("nested/", nested)], console, title="test")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(view.run)
            await nursery.start(root.serve)
            await root.wait_status("bad", ServiceStatus.CRASHING)
            view.changed()
            while "crashing" not in out.getvalue():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    text = plain(out.getvalue().encode())
    assert "test · 3 services, 1 crashing, 2 running · up " in text
    rows = [cells(line) for line in text.splitlines()]
    assert ["bad", "crashing", "backoff", "1", "0", "1", "-", "1m0s", "ValueError: nope"] in rows
    running = ["nested/inner", "running", "running", "1", "0", "0"]
    inner = [row for row in rows if row[:6] == running][-1]
    assert inner[7:] == ["-", "-"]  # running: no delay, no error


def test_rich_table_and_log_handler() -> None:
    """The rich table shows each row; log lines name the service and keep brackets verbatim."""
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    row = row_from_dict({"name": "web", "status": "failed", "last_error": "[bold]x[/bold]"})
    console.print(rich_table([row], title="t"))
    handler = RichLogHandler(console)
    record = logging.makeLogRecord(
        {
            "msg": "[red]not markup[/red]",
            "levelno": logging.INFO,
            "service": "web",
            "stream": "stderr",
            "created": 0,
        }
    )
    handler.emit(record)
    warning = logging.makeLogRecord(
        {"msg": "careful", "manager": "app", "levelno": logging.WARNING, "created": 0}
    )
    handler.emit(warning)
    lines = out.getvalue().splitlines()
    assert ["web", "failed", "?", "0", "0", "0", "-", "-", "[bold]x[/bold]"] in map(cells, lines)
    assert re.fullmatch(r"\d\d:\d\d:\d\d web \| \[red\]not markup\[/red\]", lines[-2])
    assert re.fullmatch(r"\d\d:\d\d:\d\d app: careful", lines[-1])


def test_no_live_view_without_a_terminal() -> None:
    """Without a terminal (or with TERM=dumb) there is no live view: log lines instead."""
    assert make_live_view([], io.StringIO(), title="t") is None


def test_a_terminal_gets_a_live_view_and_its_log_handler() -> None:
    """On a terminal there is a live view; cli_logging routes records to it, then undoes it."""
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            view = make_live_view([], tty, title="t")
            assert isinstance(view, LiveView)
            log = logging.getLogger("trisup")
            before = (log.level, log.propagate, list(log.handlers))
            with cli_logging(tty, view):
                (handler,) = log.handlers
                assert isinstance(handler, RichLogHandler)
                assert log.level == logging.INFO
            assert (log.level, log.propagate, list(log.handlers)) == before
    finally:
        os.close(master)
