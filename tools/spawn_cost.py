"""The cost of a spawn: `trio.lowlevel.open_process` against trisup's contained spawn.

Each case starts ``/bin/true`` (stdin from /dev/null, stdout and stderr piped, its
own session) and waits for it, N times in a row; the median and 90th percentile of
one spawn-and-wait are printed. ``--ballast MB`` grows the supervisor first, since
a fork (which ``preexec_fn`` needs, where ``vfork`` is used otherwise) copies the
page tables. Run: ``python tools/spawn_cost.py [--ballast 300] [-n 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable

import trio

from trisup._credentials import Credentials
from trisup._spawn import contained, spawn

ARGV = ["/bin/true"]


async def _trio() -> None:
    process = await trio.lowlevel.open_process(
        ARGV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    await process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()


async def _trisup() -> None:
    child = await spawn(ARGV, cwd=None, env=None, credentials=Credentials())
    await child.wait()
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            await stream.aclose()


async def _measure(name: str, case: Callable[[], Awaitable[None]], n: int) -> None:
    times: list[float] = []
    for _ in range(n):
        began = time.perf_counter()
        await case()
        times.append(time.perf_counter() - began)
    times.sort()
    p50, p90 = statistics.median(times) * 1e3, times[int(n * 0.9)] * 1e3
    print(f"{name:44s} p50 {p50:6.3f} ms   p90 {p90:6.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ballast", type=int, default=0, metavar="MB")
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    ballast = bytearray(args.ballast * 2**20)
    for i in range(0, len(ballast), 4096):  # touch every page
        ballast[i] = 1
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * 4096 // 2**20
    print(f"supervisor RSS {rss} MB; parent-death signal: {contained}")

    async def run() -> None:
        for _ in range(2):  # the first round warms up
            await _measure("trio.lowlevel.open_process (before)", _trio, args.n)
            await _measure("trisup._spawn.spawn (after)", _trisup, args.n)

    trio.run(run)


if __name__ == "__main__":
    main()
