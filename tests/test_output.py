"""Child output: log files rotated by size, written off the loop; the CLI's queued log lines."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

import trisup
from trisup import RestartPolicy, ServiceConfig, ServiceStatus
from trisup._cli import describe_plan
from trisup._logfile import LogFile, RotatingFile, byte_size
from trisup._logqueue import QueuedLogfmtHandler
from trisup._tomlconfig import ConfigError, load_config
from trisup.process import ProcessService

LIMIT = 15  # seconds; every test body is bounded by this
ONCE = ServiceConfig(restart_policy=RestartPolicy.NEVER)
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and pipes")


def py(code: str, *args: str) -> list[str]:
    """The argv of a small Python program."""
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def numbered(first: int, last: int, width: int = 100) -> bytes:
    """Lines ``first`` to ``last``, each *width* bytes with its newline."""
    return b"".join(f"{n:0{width - 1}d}\n".encode() for n in range(first, last + 1))


def chain(path: Path, backups: int) -> bytes:
    """The kept files' contents, oldest first: path.N … path.1, path."""
    parts = [Path(f"{path}.{n}") for n in range(backups, 0, -1)] + [path]
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def serve_once(svc: ProcessService) -> trisup.ServiceInfo:
    """Serve *svc* until its child has ended (it is not restarted)."""
    m = trisup.Manager("test")
    m.add_with_config(svc, ONCE)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status(svc.name, ServiceStatus.COMPLETED, ServiceStatus.FAILED)
            info = m.get_service_info(svc.name)
            nursery.cancel_scope.cancel()
    return info


# ----------------------------------------------------------------- rotation


@pytest.mark.parametrize("batch", [1, 3, 7, 100])
def test_rotation_keeps_sizes_names_backups_and_every_kept_line(tmp_path: Path, batch: int) -> None:
    """Files stay within maxbytes at line ends; name, name.1 … name.3 hold the last lines."""
    path = tmp_path / "web.log"
    log = RotatingFile(str(path), maxbytes=1000, backups=3)
    data = numbered(1, 100)
    lines = data.splitlines(keepends=True)
    for i in range(0, len(lines), batch):
        log.write(b"".join(lines[i : i + batch]))
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "web.log",
        "web.log.1",
        "web.log.2",
        "web.log.3",
    ]
    for p in tmp_path.iterdir():
        assert p.stat().st_size == 1000  # ten whole lines each
    assert chain(path, 3) == numbered(61, 100)


def test_rotation_with_lines_that_do_not_divide_the_size(tmp_path: Path) -> None:
    """With 300-byte lines and 1000 bytes a file holds three lines; no line is split."""
    path = tmp_path / "w.log"
    log = RotatingFile(str(path), maxbytes=1000, backups=2)
    log.write(numbered(1, 10, width=300))
    log.close()
    assert [Path(f"{path}{s}").stat().st_size for s in ("", ".1", ".2")] == [300, 900, 900]
    assert chain(path, 2) == numbered(4, 10, width=300)


def test_a_line_longer_than_maxbytes_stays_whole_in_a_file_of_its_own(tmp_path: Path) -> None:
    """A single line over maxbytes is written whole; the next lines go to a new file."""
    path = tmp_path / "w.log"
    log = RotatingFile(str(path), maxbytes=100, backups=5)
    log.write(b"a" * 49 + b"\n" + b"b" * 499 + b"\n" + b"c" * 9 + b"\n")
    log.close()
    assert Path(f"{path}.2").read_bytes() == b"a" * 49 + b"\n"
    assert Path(f"{path}.1").read_bytes() == b"b" * 499 + b"\n"
    assert path.read_bytes() == b"c" * 9 + b"\n"


def test_no_backups_truncates_and_zero_maxbytes_never_rotates(tmp_path: Path) -> None:
    """backups=0 starts the file again; maxbytes=0 lets it grow; an existing file is appended."""
    truncated = tmp_path / "t.log"
    log = RotatingFile(str(truncated), maxbytes=1000, backups=0)
    log.write(numbered(1, 25))
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["t.log"]
    assert truncated.read_bytes() == numbered(21, 25)
    grows = tmp_path / "g.log"
    grows.write_bytes(numbered(1, 5))
    log = RotatingFile(str(grows), maxbytes=0, backups=3)
    assert log.size == 500
    log.write(numbered(6, 100))
    log.close()
    assert grows.read_bytes() == numbered(1, 100)
    assert not Path(f"{grows}.1").exists()


def test_byte_sizes() -> None:
    """Sizes are ints or strings with a 1024-based unit; anything else names the key."""
    assert byte_size("k", "50MB") == 50 * 1024 * 1024
    assert byte_size("k", "512 KiB") == 512 * 1024
    assert byte_size("k", "1g") == 1024**3
    assert byte_size("k", "0") == 0
    assert byte_size("k", 1234) == 1234
    with pytest.raises(ValueError, match='k must be a number of bytes or a size like "50MB"'):
        byte_size("k", "50 parsecs")
    with pytest.raises(ValueError, match="k must not be negative, not -1"):
        byte_size("k", -1)
    with pytest.raises(TypeError, match="k must be an int or a size string, not float"):
        byte_size("k", 1.5)


# -------------------------------------------------------------- processes

BOTH_STREAMS = """
    import sys
    for i in range(3):
        sys.stdout.write(f"out {i}\\n"); sys.stdout.flush()
        sys.stderr.write(f"err {i}\\n"); sys.stderr.flush()
    sys.stdout.write("no newline at the end")
"""


@posix_only
async def test_stdout_and_stderr_to_separate_files(tmp_path: Path) -> None:
    """Each stream's bytes go, as written, to its own file; the ring still has them."""
    svc = ProcessService(
        "two",
        py(BOTH_STREAMS),
        stdout_logfile=tmp_path / "out.log",
        stderr_logfile=tmp_path / "err.log",
    )
    await serve_once(svc)
    assert (tmp_path / "out.log").read_bytes() == b"out 0\nout 1\nout 2\nno newline at the end"
    assert (tmp_path / "err.log").read_bytes() == b"err 0\nerr 1\nerr 2\n"
    assert sorted(svc.output_tail()) == sorted(
        [("stdout", f"out {i}") for i in range(3)]
        + [("stderr", f"err {i}") for i in range(3)]
        + [("stdout", "no newline at the end")]
    )
    assert svc.output_count == 7


@posix_only
async def test_one_logfile_for_both_streams(tmp_path: Path) -> None:
    """logfile takes both streams, whole lines, each stream in its own order; appended to."""
    log = tmp_path / "both.log"
    log.write_bytes(b"before\n")
    svc = ProcessService("two", py(BOTH_STREAMS), logfile=log)
    await serve_once(svc)
    lines = log.read_bytes().split(b"\n")
    assert lines[0] == b"before"
    assert sorted(lines[1:]) == sorted(
        [f"out {i}".encode() for i in range(3)]
        + [f"err {i}".encode() for i in range(3)]
        + [b"no newline at the end"]
    )
    assert [x for x in lines if x.startswith(b"err")] == [b"err 0", b"err 1", b"err 2"]
    assert [x for x in lines if x.startswith(b"out")] == [b"out 0", b"out 1", b"out 2"]


@posix_only
async def test_a_chatty_child_rotates_and_loses_nothing(tmp_path: Path) -> None:
    """50,000 lines through a 64 KiB log with 20 backups: the kept files hold the last ones."""
    program = """
        import sys
        w = sys.stdout.buffer.write
        for n in range(1, 50001):
            w(b"%099d\\n" % n)
    """
    log = tmp_path / "c.log"
    svc = ProcessService(
        "chatty", py(program), stdout_logfile=log, logfile_maxbytes="64KB", logfile_backups=20
    )
    await serve_once(svc)
    assert svc.output_count == 50_000
    assert svc.output_tail()[-1] == ("stdout", f"{50000:099d}")
    check_rotated(tmp_path, log)


def check_rotated(tmp_path: Path, log: Path) -> None:
    """c.log and 20 backups of 655 whole lines each hold the last lines up to 50,000."""
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["c.log", *[f"c.log.{n}" for n in range(1, 21)]])
    for n in range(1, 21):
        assert Path(f"{log}.{n}").stat().st_size == 65500
    kept = chain(log, 20)
    first = 50_000 - len(kept) // 100 + 1
    assert kept == numbered(first, 50_000)
    assert len(kept) == 20 * 65500 + log.stat().st_size


@posix_only
async def test_a_stalled_log_file_holds_the_child_back_and_loses_nothing(tmp_path: Path) -> None:
    """Past the pending limit the pipe is left unread; once the file moves, all arrives."""
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    program = """
        import sys
        w = sys.stdout.buffer.write
        for n in range(1, 30001):
            w(b"%099d\\n" % n)
        sys.stdout.flush()
        open(sys.argv[1], "w").close()
    """
    done = tmp_path / "done"
    svc = ProcessService("slow", py(program, str(done)), stdout_logfile=fifo)
    m = trisup.Manager("test")
    m.add_with_config(svc, ONCE)
    received = bytearray()
    try:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                await nursery.start(m.serve)
                await trio.sleep(1)  # the FIFO (64 KiB) and the 1 MiB queue fill up
                assert not done.exists()  # 3 MB: the child is held back
                assert svc.output_count < 30_000
                while m.get_service_info("slow").status is not ServiceStatus.COMPLETED:
                    try:
                        received += os.read(reader, 1 << 20)
                    except BlockingIOError:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        while chunk := os.read(reader, 1 << 20):  # written and closed before serve returned
            received += chunk
    finally:
        os.close(reader)
    assert done.exists()
    assert bytes(received) == numbered(1, 30_000)


@posix_only
@pytest.mark.parametrize("log_output", [False, True])
async def test_log_output_makes_one_record_per_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, log_output: bool
) -> None:
    """With log_output each line is a record on trisup.process.NAME; without, none is."""
    caplog.set_level(logging.INFO, logger="trisup.process.two")
    svc = ProcessService("two", py(BOTH_STREAMS), log_output=log_output)
    await serve_once(svc)
    output = [
        (r.__dict__["stream"], r.getMessage()) for r in caplog.records if "stream" in r.__dict__
    ]
    if not log_output:
        assert output == []
        return
    assert [x for x in output if x[0] == "stdout"] == [
        *[("stdout", f"out {i}") for i in range(3)],
        ("stdout", "no newline at the end"),
    ]
    assert [x for x in output if x[0] == "stderr"] == [("stderr", f"err {i}") for i in range(3)]


def test_bad_log_options_name_the_option(tmp_path: Path) -> None:
    """logfile with a per-stream file, and bad sizes or counts, are errors naming the key."""
    with pytest.raises(ValueError, match="logfile cannot be combined with stdout_logfile"):
        ProcessService("x", ["true"], logfile="a.log", stderr_logfile="b.log")
    with pytest.raises(ValueError, match="logfile_maxbytes must be a number of bytes"):
        ProcessService("x", ["true"], logfile="a.log", logfile_maxbytes="lots")
    with pytest.raises(TypeError, match="logfile_backups must be an int, not str"):
        ProcessService("x", ["true"], logfile="a.log", logfile_backups="3")  # type: ignore[arg-type]  # the check under test
    with pytest.raises(TypeError, match="stdout_logfile must be a path, not int"):
        ProcessService("x", ["true"], stdout_logfile=3)  # type: ignore[arg-type]  # the check under test
    with pytest.raises(TypeError, match="log_output must be a bool, not int"):
        ProcessService("x", ["true"], log_output=1)  # type: ignore[arg-type]  # the check under test


def test_toml_log_keys(tmp_path: Path) -> None:
    """Paths are relative to the file; log_output defaults to on only without a log file."""
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "s.toml"
    conf.write_text(
        "[services.a]\ncommand = 'true'\nstdout_logfile = 'logs/a.log'\n"
        "logfile_maxbytes = '1MB'\nlogfile_backups = 2\n"
        "[services.b]\ncommand = 'true'\n"
        "[services.c]\ncommand = 'true'\nlogfile = 'nowhere/c.log'\nlog_output = true\n"
    )
    plan = load_config(conf)
    a, b, c = plan.services
    assert a.process["stdout_logfile"] == str(tmp_path / "logs" / "a.log")
    assert (a.process["log_output"], b.process["log_output"], c.process["log_output"]) == (
        False,
        True,
        True,
    )
    assert plan.warnings == (f"[services.c] logfile: no such directory: {tmp_path / 'nowhere'}",)
    conf.write_text("[services.a]\ncommand = 'true'\nlogfile_backups = -1\n")
    with pytest.raises(ConfigError, match=r"\[services.a\] logfile_backups: must not be negative"):
        load_config(conf)
    conf.write_text("[services.a]\ncommand = 'true'\nlogfile = 'x'\nstdout_logfile = 'y'\n")
    with pytest.raises(ConfigError, match=r"\[services.a\]: logfile cannot be combined"):
        load_config(conf)


def test_check_says_where_the_output_goes(tmp_path: Path) -> None:
    """trisup check names each log file and its rotation; without one it adds nothing."""
    conf = tmp_path / "s.toml"
    conf.write_text(
        "[services.a]\ncommand = 'true'\nlogfile = 'a.log'\nlogfile_maxbytes = '1KB'\n"
        "[services.b]\ncommand = 'true'\nstdout_logfile = 'o.log'\nstderr_logfile = 'e.log'\n"
        "logfile_maxbytes = 0\nlog_output = true\n"
        "[services.c]\ncommand = 'true'\n"
    )
    text = describe_plan(load_config(conf))
    assert [line.strip() for line in text.splitlines() if "output:" in line] == [
        f"output: stdout and stderr to {tmp_path / 'a.log'} (rotated at 1,024 bytes, 10 kept)",
        f"output: stdout to {tmp_path / 'o.log'}, stderr to {tmp_path / 'e.log'}"
        " (never rotated); each line also logged",
    ]


async def test_log_file_write_errors_are_counted(tmp_path: Path) -> None:
    """A file that cannot be written loses its batch, counted in ``lost``, logged once."""
    path = tmp_path / "gone" / "x.log"
    log = LogFile(str(path))
    with pytest.raises(FileNotFoundError):
        await log.open()
    await log.write(b"one\n")
    await log.flush()
    assert (log.lost, log.pending) == (4, 0)


# ------------------------------------------------------- the CLI's log lines


def record(n: int) -> logging.LogRecord:
    """A record whose logfmt line carries *n*."""
    return logging.makeLogRecord({"msg": "line %d", "args": (n,), "levelname": "INFO"})


@posix_only
def test_a_stalled_stream_drops_and_counts_lines() -> None:
    """A full queue drops lines and counts them; the writer reports them once it catches up."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with os.fdopen(write_end, "w") as stream:
        handler = QueuedLogfmtHandler(stream, capacity=100)
        began = time.monotonic()
        for n in range(5000):  # the pipe fills, then the queue: emit never waits
            handler.emit(record(n))
        assert time.monotonic() - began < 1
        assert handler.dropped > 0
        dropped = handler.dropped
        received = bytearray()
        deadline = time.monotonic() + LIMIT
        while b"log lines dropped" not in received:
            assert time.monotonic() < deadline
            try:
                received += os.read(read_end, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
        handler.close()
        while True:
            try:
                chunk = os.read(read_end, 1 << 16)
            except BlockingIOError:
                break
            received += chunk
    os.close(read_end)
    lines = received.decode().splitlines()
    shown = [line for line in lines if 'msg="line ' in line]
    assert len(shown) + dropped == 5000
    notices = [line for line in lines if "event=log_dropped" in line]
    counts = [int(n.split("dropped=")[1].split()[0]) for n in notices]
    assert sum(counts[:-1]) == counts[-1] == dropped  # reported as it caught up, then in all
    assert notices[-1].endswith(f'msg="trisup: {dropped} log lines dropped in all"')


@posix_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timing on Linux")
def test_a_stalled_cli_stdout_does_not_delay_restarts(tmp_path: Path) -> None:
    """trisup run --no-live with stdout a pipe nobody reads: restarts keep their cadence."""
    stamps = tmp_path / "stamps"
    line = "x" * 99
    child = tmp_path / "child.sh"  # a shell and date start in a millisecond or two
    child.write_text(
        f'echo "start $(date +%s.%N)" >> "$1"\n'
        f"yes {line} | head -n 3000\n"  # 300 KB: the pipe and the queue fill at once
        f'echo "exit $(date +%s.%N)" >> "$1"\n'
        "exit 1\n"
    )
    conf = tmp_path / "s.toml"
    conf.write_text(
        "[services.crasher]\n"
        f"command = {json.dumps(['sh', str(child), str(stamps)])}\n"
        "restart_delay = 0.2\nbackoff_multiplier = 1.0\n"
        "max_restarts = 0\nmax_restarts_in_window = 0\n"
    )
    assert load_config(conf).services[0].process["log_output"] is True
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trisup", "run", "--no-live", str(conf)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        try:
            deadline = time.monotonic() + LIMIT
            while stamps.read_text().count("exit") < 10 if stamps.exists() else True:
                assert proc.poll() is None
                assert time.monotonic() < deadline, "the restarts stalled"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    events = [line.split() for line in stamps.read_text().splitlines()]
    exits = [float(t) for kind, t in events if kind == "exit"]
    starts = [float(t) for kind, t in events if kind == "start"]
    gaps = [start - exit for exit, start in zip(exits, starts[1:], strict=False)]
    assert len(gaps) >= 9
    assert all(0.2 <= gap <= 0.25 for gap in gaps), gaps
    [notice] = (tmp_path / "stderr").read_text().splitlines()  # once, at exit
    assert re.search(r'msg="trisup: \d+ log lines dropped in all"$', notice)
