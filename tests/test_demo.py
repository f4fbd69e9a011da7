"""The ``trisup`` command line and its ``demo`` command.

The demo runs in real time, so it is exercised as a real subprocess (``python
-m trisup``, from a directory outside the repository so that the installed
package is imported); argument handling is also tested in-process.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trisup
from trisup.__main__ import main
from trisup._demo import Narrator

ROOT_SERVICES = ("ticker", "flaky", "doomed", "api", "backend")
NESTED_SERVICES = ("cache", "migrate")
STATUS_LINE = re.compile(r"^\s*\d+\.\d+s\s+(\S+)\s+(\S+) -> (\w+)(?:: (.*))?$", re.MULTILINE)


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
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in tail.splitlines():
        heading = re.match(r"^(\S+) \((root manager|nested in \S+)\)$", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
        elif current is not None and line.startswith("  ") and not line.strip().startswith("NAME"):
            cells = line.split()
            current[cells[0]] = cells
    return tables


def test_demo_runs_narrates_and_prints_the_final_tables(tmp_path: Path) -> None:
    """`trisup demo --duration 5` narrates status changes, then tabulates every service."""
    began = time.monotonic()
    result = _trisup(tmp_path, "demo", "--duration", "5")
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert 5 <= elapsed < 30

    changes = STATUS_LINE.findall(result.stdout)
    flaky = [(old, new, error) for who, old, new, error in changes if who == "flaky"]
    assert ("idle", "running", "") in flaky
    assert any(error == "simulated crash #1" for _, _, error in flaky)
    assert re.search(r"flaky\s+restarting in 0\.5s", result.stdout)
    assert re.search(r"doomed\s+gave up: max_restarts=2 reached", result.stdout)
    api = [(old, new) for who, old, new, _ in changes if who == "api"]
    assert ("starting", "running") in api
    assert "the duration ran out" in result.stdout

    tables = _tables(result.stdout)
    assert list(tables) == ["demo", "backend"]
    assert tuple(tables["demo"]) == ROOT_SERVICES
    assert tuple(tables["backend"]) == NESTED_SERVICES
    doomed = tables["demo"]["doomed"]
    assert doomed[1:7] == ["failed", "failed", "3", "2", "3", "3"]
    assert doomed[8] == "2s"  # current delay: 0.5s doubled twice
    assert tables["backend"]["migrate"][2] == "completed"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_demo_ends_gracefully_on_sigint(tmp_path: Path) -> None:
    """SIGINT shuts the demo tree down, prints the tables and exits with 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "trisup", "demo", "--duration", "50"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        head: list[str] = []
        for line in proc.stdout:
            head.append(line)
            if re.search(r"\bdemo\s+serving$", line):
                break
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - began < 30
    assert "received SIGINT, shutting down" in stdout
    assert "interrupted by a signal" in stdout
    tables = _tables(stdout)
    assert tuple(tables["demo"]) == ROOT_SERVICES
    assert tuple(tables["backend"]) == NESTED_SERVICES


@pytest.mark.parametrize("value", ["-1", "abc", "0", "nan", "inf"])
def test_demo_rejects_a_bad_duration(tmp_path: Path, value: str) -> None:
    """A duration that is not a positive finite number is a usage error (exit 2)."""
    result = _trisup(tmp_path, "demo", "--duration", value)
    assert result.returncode == 2
    assert "--duration" in result.stderr
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
    assert "demo" in out


def test_demo_help_names_duration(capsys: pytest.CaptureFixture[str]) -> None:
    """`trisup demo --help` documents --duration and its default."""
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # whatever the terminal width
    assert "--duration SECONDS how long to run" in out
    assert "(default: 20)" in out


def test_main_returns_2_for_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    """In-process, a usage error is returned as 2 rather than raised."""
    assert main(["demo", "--duration", "-0.5"]) == 2
    assert "argument --duration: must be a positive, finite number" in capsys.readouterr().err


def test_narrator_folds_failures_into_status_and_backoff_lines() -> None:
    """A failure is appended to the status change it causes, or else to the backoff line."""

    def record(**extra: object) -> logging.LogRecord:
        return logging.makeLogRecord({"levelno": logging.DEBUG, **extra})

    narrator = Narrator(io.StringIO(), width=6)
    crash = record(event="exited", service="flaky", error="boom")
    assert narrator.describe(crash) is None
    change = record(event="status", service="flaky", old="running", new="crashing")
    assert narrator.describe(change) == ("flaky", "running -> crashing: boom")
    backoff = record(event="backing_off", service="flaky", delay=0.5)
    assert narrator.describe(backoff) == ("flaky", "restarting in 0.5s")
    narrator.describe(crash)  # crashing again: no status change follows
    assert narrator.describe(backoff) == ("flaky", "crashed again: boom; restarting in 0.5s")
    assert narrator.describe(record(event="added", service="flaky")) is None
    assert narrator.describe(record(event="manager_started", manager="demo")) == (
        "demo",
        "serving",
    )
