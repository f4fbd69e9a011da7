"""Child processes: a chatty child's throughput, and process restart latency.

Chatty child: a Python child writes 100-byte lines through its buffered stdout as
fast as it can for a few seconds and reports its own rate. Under trisup it is a
`ProcessService` with a ``stdout_logfile`` (default rotation, 50 MiB, 10 backups);
the baseline is the same child with stdout redirected to a plain file (no reader in
between). trisup's cost is the supervising process's CPU time (``getrusage`` of
itself, the log writer thread included) per GB written; its baseline is a raw Trio
loop copying the pipe to a file with ``os.write`` in the event loop.

Restart latency: a child (``sh -c 'echo up; exit 1'``) prints one line and exits at
once; the time from one child's line to the next child's line is the death of a child
to the first output line of the next, plus the child's own exit. trisup runs it under
a `Manager` with ``restart_delay`` 1 µs (0 is repaired to 1 s; no limits); the
baseline is a raw loop of ``trio.lowlevel.open_process``, reading the line, then to
the end, and waiting.
"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import trio
from harness import Row, Samples, Target, interleaved, percentile, row

import trisup
from trisup.process import ProcessService

__all__ = ["run"]

CHATTY = textwrap.dedent(
    """
    import sys, time
    line = b"x" * 99 + b"\\n"
    write = sys.stdout.buffer.write
    duration = float(sys.argv[1])
    n = 0
    began = time.perf_counter()
    end = began + duration
    while True:
        for _ in range(1000):
            write(line)
        n += 1000
        if time.perf_counter() >= end:
            break
    sys.stdout.flush()
    elapsed = time.perf_counter() - began
    with open(sys.argv[2], "w") as report:
        report.write(f"{n * 100 / elapsed} {n * 100}")
    """
)
ECHO = ["sh", "-c", "echo up; exit 1"]
GB = 1e9


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _chatty_argv(duration: float, report: Path) -> list[str]:
    return [sys.executable, "-c", CHATTY, str(duration), str(report)]


def _chatty_trisup(duration: float, *, records: bool = False) -> Callable[[], Samples]:
    def case() -> Samples:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "rate")
            log = Path(tmp, "chatty.log")
            argv = _chatty_argv(duration, report)
            if records:  # the slow path: a record per line, formatted to a file
                service = ProcessService("chatty", argv, log_output=True)
                handler = logging.FileHandler(log)
                handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
                logger = logging.getLogger("trisup.process.chatty")
                logger.addHandler(handler)
                logger.setLevel(logging.INFO)
            else:
                service = ProcessService("chatty", argv, stdout_logfile=log)

            async def main() -> None:
                manager = trisup.Manager("bench")
                manager.add(service, restart_policy=trisup.RestartPolicy.NEVER)
                async with trio.open_nursery() as nursery:
                    await nursery.start(manager.serve)
                    await manager.wait_status("chatty", trisup.ServiceStatus.COMPLETED)
                    nursery.cancel_scope.cancel()

            cpu = _cpu()
            trio.run(main)
            cpu = _cpu() - cpu
            if records:
                logger.removeHandler(handler)
                handler.close()
            rate, written = map(float, report.read_text().split())
            return {"mbps": rate / 1e6, "cpu_per_gb": cpu / (written / GB)}

    return case


def _chatty_raw(duration: float) -> Callable[[], Samples]:
    def case() -> Samples:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "rate")
            log = Path(tmp, "chatty.log")

            async def main() -> None:
                process = await trio.lowlevel.open_process(
                    _chatty_argv(duration, report), stdout=subprocess.PIPE
                )
                assert process.stdout is not None
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                try:
                    while chunk := await process.stdout.receive_some(65536):
                        os.write(fd, chunk)
                finally:
                    os.close(fd)
                await process.wait()

            cpu = _cpu()
            trio.run(main)
            cpu = _cpu() - cpu
            rate, written = map(float, report.read_text().split())
            return {"mbps": rate / 1e6, "cpu_per_gb": cpu / (written / GB)}

    return case


def _chatty_file(duration: float) -> Callable[[], Samples]:
    def case() -> Samples:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "rate")
            with open(Path(tmp, "chatty.log"), "wb") as out:
                subprocess.run(_chatty_argv(duration, report), stdout=out, check=True)
            return {"mbps": float(report.read_text().split()[0]) / 1e6}

    return case


def _restart_trisup(warmup: int, count: int) -> Callable[[], Samples]:
    def case() -> Samples:
        service = ProcessService("echo", ECHO)
        times: list[float] = []

        async def main() -> None:
            manager = trisup.Manager("bench")
            manager.add(
                service,
                restart_delay=1e-6,  # 0 is repaired to 1 s: the smallest delay there is
                max_restart_delay=1e-6,
                backoff_multiplier=1.0,
                max_restarts=0,
                max_restarts_in_window=0,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(manager.serve)
                seen = 0
                while len(times) < warmup + count + 1:
                    await service.wait_output(seen)
                    times.append(perf_counter())
                    seen = service.output_count
                nursery.cancel_scope.cancel()

        trio.run(main)
        return _latencies(times[warmup:])

    return case


def _restart_raw(warmup: int, count: int) -> Callable[[], Samples]:
    def case() -> Samples:
        times: list[float] = []

        async def main() -> None:
            while len(times) < warmup + count + 1:
                process = await trio.lowlevel.open_process(
                    ECHO,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    start_new_session=True,
                )
                assert process.stdout is not None
                async with process.stdout:
                    if await process.stdout.receive_some():
                        times.append(perf_counter())
                    while await process.stdout.receive_some():
                        pass
                await process.wait()

        trio.run(main)
        return _latencies(times[warmup:])

    return case


def _latencies(times: list[float]) -> Samples:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {"p50": percentile(gaps, 50) * 1e3, "p99": percentile(gaps, 99) * 1e3}


def run(*, reps: int, duration: float, count: int) -> list[Row]:
    """The chatty child and the restart latency rows."""
    chatty = interleaved(
        reps,
        {
            "trisup": _chatty_trisup(duration),
            "raw": _chatty_raw(duration),
            "file": _chatty_file(duration),
            "records": _chatty_trisup(duration, records=True),
        },
    )
    restarts = interleaved(
        reps, {"trisup": _restart_trisup(20, count), "raw": _restart_raw(20, count)}
    )
    t, raw, file = chatty["trisup"], chatty["raw"], chatty["file"]
    rt, rb = restarts["trisup"], restarts["raw"]
    return [
        row(
            "chatty child: MB/s written through a log file, vs to a file itself",
            "MB/s",
            t["mbps"],
            file["mbps"],
            Target(op=">=", value=45, absolute=True),
        ),
        row(
            "chatty child: supervisor CPU per GB, vs a raw Trio pipe-to-file loop",
            "CPU-s/GB",
            t["cpu_per_gb"],
            raw["cpu_per_gb"],
            Target(op="<=", value=10, absolute=True),
        ),
        row("(ref) chatty child under the raw loop", "MB/s", raw["mbps"], file["mbps"], None),
        row(
            "(ref) chatty child with log_output, a record per line",
            "MB/s",
            chatty["records"]["mbps"],
            file["mbps"],
            None,
        ),
        row(
            "(ref) CPU per GB with log_output, vs the raw loop",
            "CPU-s/GB",
            chatty["records"]["cpu_per_gb"],
            raw["cpu_per_gb"],
            None,
        ),
        row(
            "process restart latency p50, vs a raw open_process loop",
            "ms",
            rt["p50"],
            rb["p50"],
            Target(op="<=", value=1.3),
        ),
        row("process restart latency p99, vs the raw loop", "ms", rt["p99"], rb["p99"], None),
    ]
