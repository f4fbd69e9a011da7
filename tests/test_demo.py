"""The ``trisup`` command line and its ``demo`` command.

The demo runs in real time with real child processes, so it is exercised as a
real subprocess (``python -m trisup``, from a directory outside the repository
so that the installed package is imported); argument handling is also tested
in-process.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import trisup
from trisup.__main__ import main
from trisup._demo import DEMO_CONFIG, demo_config, run_demo
from trisup._tomlconfig import parse_config

ROOT_SERVICES = ("steady", "flaky", "reloader", "ticker", "doomed", "backend")
NESTED_SERVICES = ("cache", "migrate")


def _trisup(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trisup", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _tables(stdout: str) -> dict[str, dict[str, list[str]]]:
    """The final tables: manager name -> service name -> the row's cells."""
    _, _, tail = stdout.partition("final service info")
    tail, _, _ = tail.partition("\nprocesses\n")
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in tail.splitlines():
        heading = re.match(r"^(\S+) \((root manager|nested in \S+)\)$", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
        elif current is not None and line.startswith("  ") and "SERVICE" not in line:
            cells = line.split()
            current[cells[0]] = cells
    return tables


def _events(stdout: str, **fields: str) -> list[str]:
    """The logfmt lines that have every ``key=value`` of *fields*."""
    return [
        line
        for line in stdout.splitlines()
        if line.startswith("ts=") and all(f" {k}={v} " in f" {line} " for k, v in fields.items())
    ]


def test_demo_supervises_processes_and_prints_the_final_tables(tmp_path: Path) -> None:
    """`trisup demo --duration 5`: processes crash, back off and relaunch; tables follow."""
    began = time.monotonic()
    result = _trisup(tmp_path, "demo", "--duration", "5")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert 5 <= elapsed < 30
    out = result.stdout

    assert _events(out, service="steady", event="output", stream="stdout")
    assert _events(out, service="steady", old="starting", new="running", event="status")
    flaky = _events(out, service="flaky", outcome="failure", event="exited")
    assert flaky and "error_type=ProcessExited" in flaky[0]
    text = "ProcessExited: exited with code 1; stderr: RuntimeError: lost the connection"
    assert text in flaky[0]
    assert _events(out, service="flaky", delay="0.5", event="backing_off")
    assert _events(out, service="reloader", event="relaunch", returncode="3")
    assert not _events(out, service="reloader", event="exited", outcome="failure")
    assert _events(out, service="doomed", event="failed")
    assert "(the duration ran out)" in out

    tables = _tables(out)
    assert list(tables) == ["demo", "backend"]
    assert tuple(tables["demo"]) == ROOT_SERVICES
    assert tuple(tables["backend"]) == NESTED_SERVICES
    doomed = tables["demo"]["doomed"]
    assert doomed[1:7] == ["failed", "failed", "failed", "3", "2", "3"]
    assert (doomed[7], doomed[8]) == ("1.5s", "-")  # three runs of 0.5s; failed: no delay
    assert " ".join(doomed[9:]) == "ConnectionRefusedError: db.internal:5432 refused the connection"
    assert int(tables["demo"]["flaky"][5]) >= 1
    assert tables["backend"]["migrate"][2:4] == ["completed", "completed"]
    relaunches = re.search(r"reloader\s+last exit: [^;]+; relaunches: (\d+);", out)
    assert relaunches is not None and int(relaunches.group(1)) >= 1
    # each relaunch (exit 3, a RestartNow) is a start the manager counts; no restart
    reloader = tables["demo"]["reloader"]
    assert reloader[4:7] == [str(int(relaunches.group(1)) + 1), "0", "0"]
    assert "trisup demo --print-config > demo.toml" in out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_ends_gracefully_on_sigint(tmp_path: Path) -> None:
    """SIGINT shuts the demo tree down, prints the tables and exits with 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trisup", "demo", "--duration", "50"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # the demo ends by itself after 50 s anyway
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "service=steady old=starting new=running" in line:
                break
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - began < 30
    assert "received SIGINT, shutting down gracefully" in stdout
    assert "(stopped by SIGINT)" in stdout
    tables = _tables(stdout)
    assert tuple(tables["demo"]) == ROOT_SERVICES
    assert tuple(tables["backend"]) == NESTED_SERVICES
    assert re.search(r"steady\s+last exit: killed by SIGTERM;", stdout)


def test_print_config_is_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    """`trisup demo --print-config` prints the processes' TOML, valid for `trisup run`."""
    assert main(["demo", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert text == DEMO_CONFIG
    plan = parse_config(text, file="demo.toml", base_dir=Path.cwd())
    assert [s.name for s in plan.services] == ["steady", "flaky", "reloader"]
    assert plan.services[0].process["argv"][0] == "python3"  # type: ignore[index]
    custom = parse_config(demo_config("/opt/py"), file="demo.toml", base_dir=Path.cwd())
    assert all(s.process["argv"][0] == "/opt/py" for s in custom.services)  # type: ignore[index]


@pytest.mark.parametrize("value", ["-1", "abc", "0", "nan", "inf"])
def test_demo_rejects_a_bad_duration(tmp_path: Path, value: str) -> None:
    """A duration that is not a positive finite number is a usage error (exit 2)."""
    result = _trisup(tmp_path, "demo", "--duration", value)
    assert result.returncode == 2
    reason = (
        f"not a number of seconds: {value!r}"
        if value == "abc"
        else f"must be a positive, finite number of seconds, not {value!r}"
    )
    last = result.stderr.splitlines()[-1]
    assert last == f"trisup demo: error: argument --duration: {reason}"
    assert result.stdout == ""


def test_version(tmp_path: Path) -> None:
    """`--version` prints the package version."""
    result = _trisup(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"trisup {trisup.__version__}"


@pytest.mark.parametrize("argv", [[], ["--help"]])
def test_no_command_prints_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """With no command, or with `--help`, main prints the usage and the commands."""
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trisup")
    for command in ("run", "check", "status", "demo"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), command


def test_demo_help_names_duration(capsys: pytest.CaptureFixture[str]) -> None:
    """`trisup demo --help` documents --duration and its default."""
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # whatever the terminal width
    assert "--duration SECONDS how long to run" in out
    assert "(default: 20)" in out
    assert "--no-live" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["demo", "--duration", "-0.5"],
            "argument --duration: must be a positive, finite number of seconds, not '-0.5'",
        ),
        (
            ["check", "f.toml", "--failures", "0"],
            "argument --failures: must be at least 1, not '0'",
        ),
        (["check", "f.toml", "--failures", "x"], "argument --failures: not an integer: 'x'"),
        (["tail"], "the following arguments are required: NAME"),
        (["run"], "the following arguments are required: FILE"),
    ],
)
def test_usage_errors_return_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, a usage error is returned as 2 rather than raised."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: trisup {argv[0]} ")
    assert err.splitlines()[-1] == f"trisup {argv[0]}: error: {message}"


def test_run_demo_in_process() -> None:
    """run_demo serves the tree for its duration and reports on the given stream."""
    out = io.StringIO()
    assert run_demo(1.0, live=False, out=out) == 0
    text = out.getvalue()
    assert "(the duration ran out)" in text
    assert tuple(_tables(text)["demo"]) == ROOT_SERVICES
    assert "event=manager_started" in text
