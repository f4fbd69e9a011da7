"""The command line: TOML loading and its errors, ``check``, ``run``, ``status``, log lines.

``trisup run`` is exercised both in-process (`supervise`, signalled with
``os.kill`` once its signal receiver is installed) and as a real subprocess.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import types
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import trio

import trisup
from trisup import ExitStatus, RestartPolicy, ServiceStatus
from trisup.__main__ import main
from trisup._cli import Supervised, check_command, supervise
from trisup._control import status_table
from trisup._health import api_dict
from trisup._report import (
    ERROR_WIDTH,
    LogfmtHandler,
    Row,
    logfmt,
    plain_table,
    row_from_dict,
    rows_of,
)
from trisup._tomlconfig import ConfigError, Plan, build, load_config, parse_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")

PY = json.dumps(sys.executable)
S = ServiceStatus


def write(tmp_path: Path, text: str, name: str = "services.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def parse(text: str, base_dir: Path | None = None) -> Plan:
    return parse_config(textwrap.dedent(text), file="f.toml", base_dir=base_dir or Path.cwd())


# ------------------------------------------------------------------ loading


GOOD = f"""
[manager]
name = "app"
stop_timeout = 20

[services.db]
command = [{PY}, "-c", "import time; time.sleep(60)"]
env = {{ PGPORT = "5433" }}
stop_timeout = 4
restart_policy = "on_failure"
start_timeout = "None"

[services.web]
command = "python3 -m http.server 8000"
cwd = "site"
ready_pattern = "Serving"
stop_signal = "INT"
kill_after = 2.5
restart_delay = 0.5
max_restarts = 3
fatal_exit_codes = [2]
depends_on = ["db"]
start_timeout = 5
critical = false
"""


def test_a_valid_file_builds_the_manager(tmp_path: Path) -> None:
    """Every section and key reaches the Manager, ServiceConfig and ProcessService."""
    (tmp_path / "site").mkdir()
    plan = load_config(write(tmp_path, GOOD))
    assert plan.warnings == ()
    manager, processes = build(plan)
    assert (manager.name, manager.stop_timeout) == ("app", 20.0)
    assert [p.name for p in processes] == ["db", "web"] == [s.name for s in manager.services()]
    db, web = processes
    assert db.env == {"PGPORT": "5433"}
    assert db.cwd == str(tmp_path)  # the file's directory by default
    assert db.kill_after == 3.0  # derived from stop_timeout 4
    assert web.argv == ("python3", "-m", "http.server", "8000")
    assert web.cwd == str(tmp_path / "site")
    assert web.ready_pattern is not None and web.ready_pattern.pattern == "Serving"
    assert (web.stop_signal, web.kill_after) == (signal.SIGINT, 2.5)
    assert web.fatal_exit_codes == {2}
    db_config, web_config = plan.services[0].config, plan.services[1].config
    assert db_config.restart_policy is RestartPolicy.ON_FAILURE
    assert db_config.stop_timeout == 4.0
    assert (db_config.start_timeout, db_config.critical) == (None, True)
    assert (web_config.restart_delay, web_config.max_restarts) == (0.5, 3)
    assert (web_config.start_timeout, web_config.critical) == (5.0, False)
    assert plan.services[1].depends_on == ("db",)


def test_repairs_are_applied_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Out-of-range values get the seed's repair when the file is loaded, as add() does."""
    caplog.set_level(logging.WARNING, logger="trisup")
    plan = parse(f"[services.x]\ncommand = [{PY}]\nrestart_delay = -1\nstart_timeout = 0\n")
    assert plan.services[0].config.restart_delay == 1.0
    assert plan.services[0].config.start_timeout == 60.0
    build(plan)
    repairs = [r for r in caplog.records if getattr(r, "event", None) == "config_repaired"]
    assert [(r.__dict__["field"], r.__dict__["used"]) for r in repairs] == [
        ("restart_delay", 1.0),
        ("start_timeout", 60.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[manger]\n",
            "f.toml: manger: unknown key (expected [manager], [services.NAME] or [http])",
        ),
        ("services = 1\n", "f.toml: [services]: must be a table, not an integer"),
        ("[services]\n", "f.toml: [services]: no services: add a [services.NAME] table"),
        ("[services]\nweb = 1\n", "f.toml: [services.web]: must be a table, not an integer"),
        (
            "[services.web]\nready_after = 1\n",
            "f.toml: [services.web]: missing key 'command' (the program and its arguments)",
        ),
        (
            "[services.web]\ncommand = ['x']\nrestart_dealy = 1\n",
            "f.toml: [services.web] restart_dealy: unknown key",
        ),
        (
            "[services.web]\ncommand = ['x']\nmax_restarts = '3'\n",
            "f.toml: [services.web] max_restarts: must be an int, not str",
        ),
        (
            "[services.web]\ncommand = ['x']\nrestart_delay = true\n",
            "f.toml: [services.web] restart_delay: must be a number of seconds, not bool",
        ),
        (
            "[services.web]\ncommand = ['x']\nrestart_delay = nan\n",
            "f.toml: [services.web] restart_delay: must be finite, not nan",
        ),
        (
            "[services.web]\ncommand = ['x']\nauto_start = 1\n",
            "f.toml: [services.web] auto_start: must be a bool, not int",
        ),
        (
            "[services.web]\ncommand = ['x']\nstart_timeout = true\n",
            'f.toml: [services.web] start_timeout: must be a number of seconds or "none", not bool',
        ),
        (
            "[services.web]\ncommand = ['x']\nstart_timeout = [60]\n",
            'f.toml: [services.web] start_timeout: must be a number of seconds or "none", not list',
        ),
        (
            "[services.web]\ncommand = ['x']\nstart_timeout = 'forever'\n",
            "f.toml: [services.web] start_timeout: must be a number of seconds or"
            " \"none\", not 'forever'",
        ),
        (
            "[services.web]\ncommand = ['x']\nstart_timeout = inf\n",
            "f.toml: [services.web] start_timeout: must be finite, not inf",
        ),
        (
            "[services.web]\ncommand = ['x']\ncritical = 'yes'\n",
            "f.toml: [services.web] critical: must be a bool, not str",
        ),
        (
            "[services.web]\ncommand = ['x']\nrestart_policy = 'sometimes'\n",
            "f.toml: [services.web] restart_policy: must be one of 'always', 'on_failure', 'never',"
            " not 'sometimes'",
        ),
        (
            "[services.web]\ncommand = ['x', 1]\n",
            "f.toml: [services.web] command[1]: must be a string, not an integer",
        ),
        ("[services.web]\ncommand = []\n", "f.toml: [services.web] command: must name a program"),
        (
            "[services.web]\ncommand = 'x \"y'\n",
            "f.toml: [services.web] command: cannot split the command line: No closing quotation",
        ),
        (
            "[services.web]\ncommand = 3\n",
            "f.toml: [services.web] command: must be an array of strings or a string,"
            " not an integer",
        ),
        (
            "[services.web]\ncommand = ['x']\nargv = ['y']\n",
            "f.toml: [services.web] argv: give either command or argv, not both",
        ),
        (
            "[services.web]\ncommand = ['x']\nenv = { PORT = 8000 }\n",
            "f.toml: [services.web.env] PORT: must be a string, not an integer",
        ),
        (
            "[services.web]\ncommand = ['x']\nenv = 'PORT=1'\n",
            "f.toml: [services.web] env: must be a table, not a string",
        ),
        (
            "[services.web]\ncommand = ['x']\ncwd = 'nowhere'\n",
            "f.toml: [services.web] cwd: no such directory: {base}/nowhere",
        ),
        (
            "[services.web]\ncommand = ['x']\ncwd = 1\n",
            "f.toml: [services.web] cwd: must be a string, not an integer",
        ),
        (
            "[services.web]\ncommand = ['x']\nready_pattern = '('\n",
            "f.toml: [services.web] ready_pattern: is not a valid regular expression: missing ),"
            " unterminated subpattern at position 0",
        ),
        (
            "[services.web]\ncommand = ['x']\nready_after = -1\n",
            "f.toml: [services.web] ready_after: must be positive and finite, not -1",
        ),
        (
            "[services.web]\ncommand = ['x']\nready_after = 1\nready_pattern = 'x'\n",
            "f.toml: [services.web]: ready_pattern and ready_after cannot be combined; choose one",
        ),
        (
            "[services.web]\ncommand = ['x']\nstop_signal = 'SIGFOO'\n",
            "f.toml: [services.web] stop_signal: unknown signal 'SIGFOO'",
        ),
        (
            "[services.web]\ncommand = ['x']\nstop_signal = 999\n",
            "f.toml: [services.web] stop_signal: must be a signal number, not 999",
        ),
        (
            "[services.web]\ncommand = ['x']\nfatal_exit_codes = [3]\n",
            "f.toml: [services.web] fatal_exit_codes: must be exit codes from 1 to 255"
            " other than 3 and 4, not 3",
        ),
        (
            "[services.web]\ncommand = ['x']\noutput_lines = 'many'\n",
            "f.toml: [services.web] output_lines: must be an int, not str",
        ),
        (
            "[services.web]\ncommand = ['x']\ndepends_on = ['db']\n",
            "f.toml: [services.web] depends_on: no service named 'db' in this file",
        ),
        (
            "[services.web]\ncommand = ['x']\ndepends_on = ['web']\n",
            "f.toml: [services.web] depends_on: a service cannot depend on itself",
        ),
        (
            "[services.web]\ncommand = ['x']\ndepends_on = 'db'\n",
            "f.toml: [services.web] depends_on: must be an array of names, not a string",
        ),
        (
            "[services.a]\ncommand = ['x']\ndepends_on = ['b']\n"
            "[services.b]\ncommand = ['x']\ndepends_on = ['a']\n",
            "f.toml: [services.b] depends_on: a cycle: a -> b -> a",
        ),
        (
            "[manager]\nstop_timeout = -1\n[services.web]\ncommand = ['x']\n",
            "f.toml: [manager] stop_timeout: must be positive and finite, not -1",
        ),
        (
            "[manager]\nbogus = 1\n[services.web]\ncommand = ['x']\n",
            "f.toml: [manager] bogus: unknown key"
            " (expected name, stop_timeout, strategy, intensity, period, stop_order, socket)",
        ),
        (
            "[http]\nbind = 'localhost'\n[services.web]\ncommand = ['x']\n",
            "f.toml: [http] bind: must be HOST:PORT, not 'localhost'",
        ),
        (
            "[http]\nprefix = 'debug'\n[services.web]\ncommand = ['x']\n",
            "f.toml: [http] prefix: must start with '/', not 'debug'",
        ),
        (
            "[http]\ntoken = ''\n[services.web]\ncommand = ['x']\n",
            "f.toml: [http] token: must not be empty",
        ),
        (
            "[http]\nport = 80\n[services.web]\ncommand = ['x']\n",
            "f.toml: [http] port: unknown key (expected bind, prefix, token)",
        ),
        (
            "[http]\nbind = 80\n[services.web]\ncommand = ['x']\n",
            "f.toml: [http] bind: must be a string, not an integer",
        ),
    ],
)
def test_errors_name_file_table_and_key(text: str, message: str, tmp_path: Path) -> None:
    """Every invalid file is rejected with the file, the table and the key named."""
    with pytest.raises(ConfigError) as caught:
        parse(text, base_dir=tmp_path)
    assert str(caught.value) == message.replace("{base}", str(tmp_path))


def test_invalid_toml_names_the_file() -> None:
    """A file that is not TOML is rejected with the file named and tomllib's reason."""
    with pytest.raises(tomllib.TOMLDecodeError) as reason:
        tomllib.loads("[services.web\n")
    with pytest.raises(ConfigError) as caught:
        parse("[services.web\n")
    assert str(caught.value) == f"f.toml: invalid TOML: {reason.value}"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    """A missing file and a file that is not UTF-8 are configuration errors too."""
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read it: No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(bad)


def test_warnings_for_a_missing_program_and_a_late_kill() -> None:
    """A program not on PATH and kill_after >= stop_timeout are warnings, not errors."""
    plan = parse(
        "[services.x]\ncommand = ['no-such-program-here']\nkill_after = 12\n"
        "[services.y]\ncommand = ['./missing.sh']\n"
    )
    assert plan.warnings == (
        "[services.x] kill_after=12 is not below stop_timeout=10: a stop may give up before"
        " SIGKILL is sent",
        "[services.x] program 'no-such-program-here' not found",
        "[services.y] program './missing.sh' not found",
    )


# ------------------------------------------------------------------ [http]


def test_http_section_needs_the_console(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without trisup.http, a file with [http] is a configuration error (exit 1)."""
    monkeypatch.setitem(sys.modules, "trisup.http", None)
    path = write(tmp_path, f"[http]\nbind = '127.0.0.1:0'\n[services.x]\ncommand = [{PY}]\n")
    err = io.StringIO()
    assert check_command(str(path), out=io.StringIO(), err=err) == 1
    # one line; the middle is Python's own ImportError message
    head = f"trisup: {path}: [http]: the HTTP console is not installed ("
    assert err.getvalue().startswith(head)
    assert err.getvalue().endswith("); pip install '.[http]' in a checkout of trisup\n")
    assert err.getvalue().count("\n") == 1


def test_http_section_is_passed_to_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The [http] options reach ConsoleService(manager, ...), added as a service."""
    made: list[tuple[trisup.Manager, dict[str, str]]] = []

    class ConsoleService:
        name = "console"

        def __init__(self, manager: trisup.Manager, **options: str) -> None:
            if options.get("bind") == "0.0.0.0:80":
                raise ValueError("binding elsewhere than loopback needs a token")
            made.append((manager, options))

        async def serve(self) -> None:
            await trio.sleep_forever()

    module = types.ModuleType("trisup.http")
    module.ConsoleService = ConsoleService  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trisup.http", module)
    plan = parse(
        f"[http]\nbind = '127.0.0.1:8080'\nprefix = '/debug'\ntoken = 's3cret'\n"
        f"[services.x]\ncommand = [{PY}]\n"
    )
    manager, _ = build(plan)
    assert made == [(manager, {"bind": "127.0.0.1:8080", "prefix": "/debug", "token": "s3cret"})]
    assert manager.has("console")
    refused = parse(f"[http]\nbind = '0.0.0.0:80'\n[services.x]\ncommand = [{PY}]\n")
    with pytest.raises(ConfigError, match=r"\[http\]: binding elsewhere than loopback"):
        build(refused)
    module.ConsoleService = None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"trisup\.http has no ConsoleService"):
        build(plan)


# ------------------------------------------------------------------- check

AT_ONCE = "  if it fails at once: "
SCHEDULES = [
    (
        "",
        AT_ONCE + "starts at t=0s, 1s, 3s, 7s, 15s, 31s; failed at t=31s"
        " (5 restarts within restart_window=300s)",
    ),
    ("max_restarts = 1", "starts at t=0s, 1s; failed at t=1s (max_restarts=1 reached)"),
    (
        "restart_delay = 0.5\nmax_restart_delay = 2\nmax_restarts_in_window = 0",
        AT_ONCE
        + "starts at t=0s, 500ms, 1.5s, 3.5s, 5.5s, ...; restarts for ever (delay up to 2s)",
    ),
    (
        "max_restarts_in_window = 3\nrestart_window = 10\n"
        "backoff_multiplier = 1\nrestart_delay = 4",
        AT_ONCE
        + "starts at t=0s, 4s, 8s, 12s; failed at t=12s (3 restarts within restart_window=10s)",
    ),
    (  # two restarts within any 10 s, never three
        "max_restarts_in_window = 3\nrestart_window = 10\n"
        "backoff_multiplier = 1\nrestart_delay = 5",
        AT_ONCE + "starts at t=0s, 5s, 10s, 15s, 20s, ...; restarts for ever (delay up to 5s)",
    ),
    (  # played out past the 4 starts listed, until it gives up
        "max_restarts = 20\nmax_restarts_in_window = 0",
        AT_ONCE + "starts at t=0s, 1s, 3s, 7s, ..., 15m3s (21 starts); failed at t=15m3s"
        " (max_restarts=20 reached)",
    ),
    (  # gives up after a million restarts: more than a preview plays out
        "max_restarts_in_window = 1000000\nrestart_window = 1e9",
        AT_ONCE + "starts at t=0s, 1s, 3s, 7s, 15s, ...; still restarting after 10000 failures"
        " (not played further)",
    ),
    ("restart_policy = 'never'", "  if it fails: never restarted; failed at t=0s"),
]


@pytest.mark.parametrize(("settings", "expected"), SCHEDULES)
def test_check_prints_the_restart_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: str, expected: str
) -> None:
    """`trisup check` plays a schedule out until it gives up, or says it restarts for ever."""
    path = write(tmp_path, f"[services.svc]\ncommand = [{PY}, '-c', 'pass']\n{settings}\n")
    assert main(["check", str(path), "--failures", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: valid; manager 'trisup', 1 service\n")
    assert expected in out


def test_check_describes_each_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`trisup check` shows the command, readiness, stop and restart settings of each service."""
    (tmp_path / "site").mkdir()
    path = write(tmp_path, GOOD)
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines() == [
        f"{path}: valid; manager 'app', 2 services",
        "shutdown: dependents first, others together (stop_order 'dependencies')",
        "",
        f"db: {sys.executable} -c 'import time; time.sleep(60)'",
        f"  cwd {tmp_path}; env PGPORT",
        "  ready at spawn; stop: SIGTERM, SIGKILL after 3s",
        "  policy on_failure; delay 1s x2 up to 1m0s; stop_timeout 4s",
        "  gives up after 5 restarts within 5m0s",
        AT_ONCE + "starts at t=0s, 1s, 3s, 7s, 15s, 31s; failed at t=31s"
        " (5 restarts within restart_window=300s)",
        "",
        "web: python3 -m http.server 8000",
        "  depends on db",
        f"  cwd {tmp_path / 'site'}",
        "  ready when a line matches 'Serving'; stop: SIGINT, SIGKILL after 2.5s",
        "  fatal exit codes: 2",
        "  policy always; delay 500ms x2 up to 1m0s; stop_timeout 10s",
        "  gives up after 5 restarts within 5m0s or 3 restarts in all (max_restarts)",
        AT_ONCE + "starts at t=0s, 500ms, 1.5s, 3.5s; failed at t=3.5s (max_restarts=3 reached)",
    ]


def test_check_reports_errors_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file exits 1 with the error on stderr; warnings go to stderr too."""
    bad = write(tmp_path, "[services.web]\ncommand = ['x']\nmax_restarts = 'no'\n")
    assert main(["check", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"trisup: {bad}: [services.web] max_restarts: must be an int, not str\n"
    odd = write(tmp_path, "[services.web]\ncommand = ['no-such-program-here']\n", "odd.toml")
    assert main(["check", str(odd)]) == 0
    assert capsys.readouterr().err == (
        "trisup: warning: [services.web] program 'no-such-program-here' not found\n"
    )


def test_run_with_an_invalid_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trisup run` of an invalid file prints the error and exits 1 without serving."""
    assert main(["run", str(tmp_path / "nope.toml")]) == 1
    assert capsys.readouterr() == (
        "",
        f"trisup: {tmp_path / 'nope.toml'}: cannot read it: No such file or directory\n",
    )


# -------------------------------------------------------- run, in-process


def _ready_program(extra: str = "") -> list[str]:
    code = f"import signal, time\n{extra}\nprint('ready', flush=True)\ntime.sleep(60)"
    return [sys.executable, "-c", code]


async def test_supervise_stops_gracefully_on_sigterm() -> None:
    """The first SIGTERM shuts the tree down gracefully; the exit status is SUCCESS."""
    svc = trisup.ProcessService("svc", _ready_program(), ready_pattern="ready")
    manager = trisup.Manager("app")
    manager.add(svc)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            results: list[object] = []

            async def run(*, task_status: trio.TaskStatus[None]) -> None:
                results.append(await supervise(manager, [svc], task_status=task_status))

            await nursery.start(run)
            pid = svc.pid
            os.kill(os.getpid(), signal.SIGTERM)
    (result,) = results
    assert result == Supervised(ExitStatus.SUCCESS, "SIGTERM")
    assert svc.returncode == -signal.SIGTERM and pid is not None and svc.pid is None


async def test_a_second_signal_kills_every_process_at_once() -> None:
    """A second SIGINT skips the grace period of a process that ignores the first signal."""
    svc = trisup.ProcessService(
        "stubborn",
        _ready_program("signal.signal(signal.SIGTERM, lambda *_: print('ignored', flush=True))"),
        ready_pattern="ready",
        kill_after=30,
    )
    manager = trisup.Manager("app")
    manager.add(svc, stop_timeout=40)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervise, manager, [svc])
            began = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)
            while ("stdout", "ignored") not in svc.output_tail():
                await trio.sleep(0.01)
            assert svc.returncode is None  # in its grace period
            os.kill(os.getpid(), signal.SIGINT)
    assert time.monotonic() - began < 5
    assert svc.returncode == -signal.SIGKILL


async def test_supervise_returns_the_status_of_a_fatal_error() -> None:
    """A fatal exit code ends supervise with that ExitStatus; another error gives ERROR."""
    svc = trisup.ProcessService(
        "job", [sys.executable, "-c", "raise SystemExit(2)"], fatal_exit_codes=[2]
    )
    manager = trisup.Manager("app")
    manager.add(svc)
    with trio.fail_after(10):
        result = await supervise(manager, [svc])
    assert result == Supervised(ExitStatus.NO_UPGRADE_AVAILABLE, None)

    broken = trisup.Manager("broken")

    @broken.before_start
    def fail() -> None:
        raise RuntimeError("cannot start")

    with trio.fail_after(10):
        assert (await supervise(broken)).status is ExitStatus.ERROR


async def test_supervise_ends_after_its_duration() -> None:
    """With a duration, supervise shuts down gracefully when it has passed."""
    manager = trisup.Manager("app")
    manager.add(trisup.new_service("idle", trio.sleep_forever))
    with trio.fail_after(10):
        result = await supervise(manager, duration=0.2)
    assert result == Supervised(ExitStatus.SUCCESS, None)


# ------------------------------------------------------- run, subprocess


@contextlib.contextmanager
def _run(path: Path, *args: str) -> Generator[subprocess.Popen[str]]:
    """`trisup run` as a subprocess, killed after a minute and at the end if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trisup", "run", str(path), *args],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # a blocking read of its output must end
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _wait_for(proc: subprocess.Popen[str], pattern: str) -> list[str]:
    """Read stdout lines until one matches *pattern*; return the lines read."""
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"never saw {pattern!r} in:\n{''.join(lines)}")


def test_trisup_run_exits_0_after_sigterm(tmp_path: Path) -> None:
    """`trisup run` logs one logfmt line per event and exits 0 after SIGTERM, child gone."""
    path = write(
        tmp_path,
        f"""
        [manager]
        name = "app"

        [services.worker]
        command = [{PY}, "-c", "import os,time;print('pid',os.getpid(),flush=True);time.sleep(9)"]
        ready_pattern = "pid"
        """,
    )
    with _run(path) as proc:
        head = _wait_for(proc, r"service=worker old=starting new=running event=status")
        pid = next(int(m.group(1)) for line in head if (m := re.search(r'msg="pid (\d+)"', line)))
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    text = "".join(head) + stdout
    assert re.search(r"level=warning manager=app event=signal signal=SIGTERM msg=\"received", text)
    assert "event=manager_stopped" in text
    assert all(line.startswith("ts=") for line in text.splitlines())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_trisup_run_exits_with_the_fatal_status(tmp_path: Path) -> None:
    """A fatal exit code of a process becomes the exit status of `trisup run`; its line says why."""
    code = "import sys; print('FATAL: schema 7 needs an upgrade', file=sys.stderr); sys.exit(2)"
    path = write(
        tmp_path,
        f"""
        [services.upgrader]
        command = [{PY}, "-c", "{code}"]
        fatal_exit_codes = [2]
        """,
    )
    with _run(path, "--no-live") as proc:
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == int(ExitStatus.NO_UPGRADE_AVAILABLE), stderr
    (line,) = [line for line in stdout.splitlines() if " event=fatal " in line]
    assert line.endswith(
        " ended by a fatal error: ProcessExited: exited with code 2; stderr: FATAL: schema 7"
        ' needs an upgrade (exit status 2)"'
    )


def test_trisup_run_exits_1_on_a_configuration_error(tmp_path: Path) -> None:
    """An invalid file makes `trisup run` exit 1 with the error on stderr."""
    path = write(tmp_path, "[services.web]\ncommand = ['x']\nrestart_policy = 'sometimes'\n")
    with _run(path) as proc:
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stdout == ""
    assert stderr == (
        f"trisup: {path}: [services.web] restart_policy: must be one of 'always', 'on_failure',"
        " 'never', not 'sometimes'\n"
    )


# ------------------------------------------------------------------ status


class _Api(http.server.BaseHTTPRequestHandler):
    body = b"[]"
    status = 200
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    """A local HTTP server answering GET .../api/services with _Api.body."""

    class Handler(_Api):
        seen: ClassVar[list[tuple[str, str | None]]] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/debug", Handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _infos() -> list[dict[str, object]]:
    manager = trisup.Manager()
    manager.add(trisup.new_service("web", trio.sleep_forever))

    async def crash() -> None:
        raise ConnectionError("db down")

    manager.add(trisup.new_service("worker", crash), restart_delay=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        await manager.wait_status("worker", S.CRASHING)
        await manager.wait_status("web", S.RUNNING)
        infos = [api_dict(info) for info in manager.get_services_info()]
        nursery.cancel_scope.cancel()
    return infos


def test_status_prints_the_table_of_a_running_instance(
    api: tuple[str, type[_Api]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trisup status --url` GETs URL/api/services and prints the service table."""
    url, handler = api
    handler.body = json.dumps(trio.run(_infos)).encode()
    monkeypatch.setenv("TRISUP_TOKEN", "from-env")
    assert main(["status", "--url", url + "/"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "SERVICE",
        "STATUS",
        "PHASE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST",
        "ERROR",
    ]
    assert out[1].split()[:4] == ["web", "running", "running", "-"]
    assert out[1].split()[5:] == ["0", "-"]
    assert out[2].split() == [
        "worker",
        "crashing",
        "backoff",
        "-",
        "-",
        "0",
        "ConnectionError:",
        "db",
        "down",
    ]
    assert main(["status", "--url", url, "--token", "s3cret"]) == 0
    assert handler.seen == [
        ("/debug/api/services", "Bearer from-env"),
        ("/debug/api/services", "Bearer s3cret"),
    ]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b"{}", "{url}/api/services: HTTP 404 Not Found"),
        (200, b"not json", "{url}/api/services: HTTP 200, not JSON"),
        (200, b"{}", "{url}/api/services did not return an array of objects"),
        (200, b"[1]", "{url}/api/services did not return an array of objects"),
    ],
)
def test_status_reports_a_bad_answer(
    api: tuple[str, type[_Api]],
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: bytes,
    message: str,
) -> None:
    """An HTTP error or an unexpected body is reported on stderr with exit 1."""
    url, handler = api
    handler.status, handler.body = status, body
    assert main(["status", "--url", url]) == 1
    assert capsys.readouterr().err == "trisup: " + message.replace("{url}", url) + "\n"


def test_status_reports_an_unreachable_or_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    """A refused connection or a URL that is not http(s) exits 1 with a message."""
    with socket_closed_port() as port:
        assert main(["status", "--url", f"http://127.0.0.1:{port}", "--timeout", "5"]) == 1
    assert "Connection refused" in capsys.readouterr().err
    assert main(["status", "--url", "file:///etc/passwd"]) == 1
    assert capsys.readouterr().err == ("trisup: file:///etc/passwd: not an http(s) URL\n")


class socket_closed_port:  # used like a function
    """A local port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


# ------------------------------------------------------ table and log lines


def test_plain_table_and_rows() -> None:
    """Rows come from to_dict() objects; the plain table aligns numbers to the right."""
    row = row_from_dict(
        {
            "name": "web",
            "status": "crashing",
            "phase": "backoff",
            "stopped": False,
            "start_count": 12,
            "restart_count": 11,
            "consec_failures": 3,
            "current_uptime": 90_500_000_000,
            "current_delay": "4s",
            "last_error": "exited with code 1;\nstderr: boom",
            "last_error_type": "ProcessExited",
        },
        "app/",
    )
    assert row == Row(
        name="app/web",
        status="crashing",
        phase="backoff",
        starts=12,
        restarts=11,
        fails=3,
        uptime=90.5,
        delay="4s",
        error="ProcessExited: exited with code 1; stderr: boom",
    )
    empty = row_from_dict({"start_count": True})
    assert (empty.name, empty.phase, empty.starts, empty.delay) == ("?", "?", 0, "")
    held = row_from_dict({"name": "w", "status": "stopped", "phase": "stopping", "stopped": True})
    assert (held.status, held.phase) == ("stopped", "stopped")  # one word while held
    assert plain_table([row, held], max_error=16) == (
        "SERVICE  STATUS    PHASE    STARTS  RESTARTS  FAILS  UPTIME  DELAY  LAST ERROR\n"
        "app/web  crashing  backoff      12        11      3   1m30s     4s  ProcessExited: …\n"
        "w        stopped   stopped       0         0      0       -      -  -\n"
    )


def test_logfmt_lines() -> None:
    """A record becomes one key=value line: time, level, extra fields, quoted message."""
    record = logging.makeLogRecord(
        {
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": 'said "%s"',
            "args": ("hi there",),
            "created": 0.25,
            "service": "web",
            "ready": True,
            "uptime": 1.0 / 3,
            "error": None,
            "empty": "",
        }
    )
    assert logfmt(record) == (
        "ts=1970-01-01T00:00:00.250Z level=warning service=web ready=true uptime=0.333333 "
        'empty="" msg="said \\"hi there\\""'
    )
    out = io.StringIO()
    handler = LogfmtHandler(out)
    handler.emit(record)
    assert out.getvalue() == logfmt(record) + "\n"


def test_trisup_run_in_process_until_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main(["run", ...]) serves until SIGTERM, printing logfmt lines, and returns 0."""
    marker = tmp_path / "started"
    touch = "import pathlib,sys,time; pathlib.Path(sys.argv[1]).touch(); time.sleep(9)"
    path = write(
        tmp_path,
        f"""
        [services.worker]
        command = [{PY}, "-c", "{touch}", {json.dumps(str(marker))}]
        """,
    )

    done = threading.Event()

    def signal_once_started() -> None:
        while not done.wait(0.01):
            if marker.exists():  # serving: the signal receiver is installed before any spawn
                os.kill(os.getpid(), signal.SIGTERM)
                return

    killer = threading.Thread(target=signal_once_started)
    killer.start()
    try:
        assert main(["run", str(path), "--no-live"]) == 0
    finally:
        done.set()
        killer.join()
    out = capsys.readouterr().out
    assert "service=worker event=spawned" in out
    assert "event=signal signal=SIGTERM" in out
    assert logging.getLogger("trisup").handlers == []


async def test_the_delay_shows_only_while_backing_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """DELAY is empty ("-") for a service that is not backing off: running, failed, done, held."""

    async def crash() -> None:
        raise ConnectionError("db down")

    async def done() -> None:
        await trio.sleep(0.5)

    m = trisup.Manager("app")
    m.add(trisup.new_service("web", trio.sleep_forever))
    m.add(trisup.new_service("worker", crash), restart_delay=4)
    m.add(trisup.new_service("doomed", crash), restart_policy=RestartPolicy.NEVER)
    m.add(trisup.new_service("job", done), restart_policy=RestartPolicy.ON_FAILURE)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await m.wait_status("job", ServiceStatus.COMPLETED)
        rows = rows_of([("", m)])
        nursery.cancel_scope.cancel()
    assert trio.current_time() == 0.5
    assert [(r.name, r.phase, r.delay, r.cells()[7]) for r in rows] == [
        ("web", "running", "", "-"),
        ("worker", "backoff", "4s", "4s"),
        ("doomed", "failed", "", "-"),
        ("job", "completed", "", "-"),
        ("manual", "stopped", "", "-"),
    ]
    assert all(info.current_delay > 0 for info in m.get_services_info())  # the seed keeps it
    assert [r.error for r in rows] == [
        "",
        "ConnectionError: db down",
        "ConnectionError: db down",
        "",
        "",
    ]


def test_the_status_table_keeps_room_for_the_type_and_the_stderr_lines() -> None:
    """LAST ERROR holds ERROR_WIDTH characters: the type, the exit and the stderr after them."""
    message = "exited with code 1; stderr: " + " | ".join(["x" * 50] * 4)
    row = row_from_dict(
        {"name": "db", "phase": "failed", "last_error": message, "last_error_type": "ProcessExited"}
    )
    cell = status_table([row]).splitlines()[1].split("  ")[-1]
    assert cell == ("ProcessExited: " + message)[: ERROR_WIDTH - 1] + "…"
    assert len(cell) == ERROR_WIDTH == 120
