"""The log lines an operator reads: what a clean stop, a no_restart and a shutdown say."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus as S
from trisup._report import logfmt

PY = json.dumps(sys.executable)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool]]:
    """(level, message, has a traceback) of every trisup record."""
    return [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name.startswith("trisup")
        and r.__dict__.get("event") not in ("status", "phase", "added")
    ]


async def test_a_clean_stop_carries_no_error(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop ends the attempt with no error text, also for a service with its own nursery."""
    caplog.set_level(logging.DEBUG, logger="trisup")

    async def two_tasks() -> None:
        async with trio.open_nursery() as n:
            n.start_soon(trio.sleep_forever)
            n.start_soon(trio.sleep_forever)

    m = trisup.Manager("app")
    m.add(trisup.new_service("a", trio.sleep_forever))
    m.add(trisup.new_service("b", two_tasks))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.stop_service("a")
        n.cancel_scope.cancel()
    exited = [r for r in caplog.records if r.__dict__.get("event") == "exited"]
    assert [(r.getMessage(), r.__dict__["error"]) for r in exited] == [
        ("service a exited (stopped)", None),
        ("service b exited (stopped)", None),
    ]


async def test_no_restart_logs_without_a_traceback(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A bare no_restart() is asked for: logged at INFO, no traceback; a caused one names it."""
    caplog.set_level(logging.INFO, logger="trisup")

    async def done() -> None:
        raise trisup.no_restart()

    async def broken() -> None:
        raise trisup.no_restart(OSError("disk /data is read-only"))

    m = trisup.Manager("app")
    m.add(trisup.new_service("done", done))
    m.add(trisup.new_service("broken", broken))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.wait_status("done", S.COMPLETED)
        await m.wait_status("broken", S.FAILED)
        n.cancel_scope.cancel()
    assert sorted(line for line in lines(caplog) if "service" in line[1]) == [
        (
            "ERROR",
            "service broken failed permanently: not restarted (no_restart):"
            " OSError: disk /data is read-only",
            False,
        ),
        ("INFO", "service done exited (no_restart): do not restart", False),
        (  # a failure, not retried: its cause's traceback is worth reading
            "WARNING",
            "service broken exited (no_restart_failure): OSError: disk /data is read-only",
            True,
        ),
    ]


async def test_a_fatal_error_names_its_cause(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ "failed permanently" says what the fatal error was, with its type."""
    caplog.set_level(logging.ERROR, logger="trisup")

    async def fatal() -> None:
        raise trisup.FatalError(ValueError("bad licence key"))

    m = trisup.Manager("app")
    m.add(trisup.new_service("f", fatal))
    with pytest.raises(trisup.FatalError):
        await m.serve()
    failed = [r.getMessage() for r in caplog.records if r.__dict__.get("event") == "failed"]
    assert failed == ["service f failed permanently: fatal error: ValueError: bad licence key"]


async def test_no_backoff_and_no_stop_line_in_a_shutdown(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in the shutdown says no "restarting in"; a service that never ran no "stopped"."""
    caplog.set_level(logging.INFO, logger="trisup")
    m = trisup.Manager("app", stop_timeout=10)  # the position order: one by one

    async def crashes_at_1_5() -> None:  # started at 0.5, once db's start timed out
        await trio.sleep(1)
        raise RuntimeError("lost the queue")

    async def slow_to_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.move_on_after(1, shield=True):
                await trio.sleep(1)

    async def never_ready(*, task_status: trio.TaskStatus[None]) -> None:
        await trio.sleep_forever()

    m.add(trisup.new_service("db", never_ready), start_timeout=0.5, restart_delay=4)
    m.add(trisup.new_service("web", trio.sleep_forever), depends_on=["db"])
    m.add(trisup.new_service("worker", crashes_at_1_5), restart_delay=4)
    m.add(trisup.new_service("slow", slow_to_stop))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await trio.sleep_until(1)
        caplog.clear()
        n.cancel_scope.cancel()  # slow stops first, from 1 to 2: worker crashes meanwhile
    assert [message for _, message, _ in lines(caplog)] == [
        "manager app stopping",
        "service worker exited (failure): RuntimeError: lost the queue",
        "service slow stopped",
        "service worker stopped",
        "service db stopped",
        "manager app stopped",
    ]


def test_trisup_run_log_text(tmp_path: Path) -> None:
    """A real `trisup run --no-live` with a console: no banner, no error on a clean stop.

    (Under `trisup run` the console is not a service: it has no exit line.)
    """
    path = tmp_path / "services.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [manager]
            name = "app"

            [http]
            bind = "127.0.0.1:0"

            [services.db]
            command = [{PY}, "-c", "import time; print('booting', flush=True); time.sleep(60)"]
            ready_pattern = "never says it"
            start_timeout = 0.5
            restart_delay = 30

            [services.web]
            command = [{PY}, "-c", "import time; time.sleep(60)"]
            depends_on = ["db"]

            [services.steady]
            command = [{PY}, "-c", "import time; print('up', flush=True); time.sleep(60)"]
            ready_pattern = "up"
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "trisup", "run", "--no-live", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        head: list[str] = []
        for line in proc.stdout:
            head.append(line)
            if 'msg="service steady ready"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(head) + out
    assert proc.returncode == 0, err
    assert "CTRL + C" not in text and "Running on" not in text
    exited = [line for line in text.splitlines() if "outcome=stopped" in line]
    assert sorted(line.split("service=")[1].split()[0] for line in exited) == ["steady"]
    assert all("error=" not in line and 'exited (stopped)"' in line for line in exited)
    assert "service web stopped" not in text
    assert 'msg="service steady stopped"' in text


async def test_a_failure_line_names_the_error_type(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure's line reads "TYPE: message"; its extra holds error and error_type apart."""
    caplog.set_level(logging.WARNING, logger="trisup")

    async def no_credentials() -> None:
        raise FileNotFoundError("/etc/shop/credentials.json")

    m = trisup.Manager("app")
    m.add(trisup.new_service("shop", no_credentials), restart_delay=4)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.wait_status("shop", S.CRASHING)
        n.cancel_scope.cancel()
    (record,) = [r for r in caplog.records if r.__dict__.get("event") == "exited"]
    assert record.getMessage() == (
        "service shop exited (failure): FileNotFoundError: /etc/shop/credentials.json"
    )
    assert (record.__dict__["error"], record.__dict__["error_type"]) == (
        "/etc/shop/credentials.json",
        "FileNotFoundError",
    )
    line = logfmt(record)
    assert " error=/etc/shop/credentials.json error_type=FileNotFoundError " in line
    assert line.endswith(
        ' msg="service shop exited (failure): FileNotFoundError: /etc/shop/credentials.json"'
    )
