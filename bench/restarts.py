"""Targets 1 and 2: restart throughput and crash-to-restart latency.

One service fails at once, over and over. trisup runs it with ``restart_delay``
1 µs and no limits (no growth of the delay, no restart budget, no window
limit); the minimal supervisor restarts it after a ``trio.sleep(0)``. The
service body itself records the time from each crash to the next entry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator
from contextlib import contextmanager
from time import perf_counter

import trio
from baselines import MiniSupervisor
from harness import Row, Samples, Target, interleaved, percentile, row

import trisup

__all__ = ["run"]


class CrashProbe:
    """A service body that fails at once and times every restart it sees."""

    def __init__(self, warmup: int, count: int) -> None:
        self.warmup = warmup
        self.count = count
        self.n = 0
        self.crashed_at = 0.0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []
        self.done = trio.Event()

    async def __call__(self) -> None:
        now = perf_counter()
        self.n += 1
        n = self.n
        if n > self.warmup:
            self.latencies.append(now - self.crashed_at)
            if n == self.warmup + self.count:
                self.last = now
                self.done.set()
        elif n == self.warmup:
            self.first = now
        self.crashed_at = perf_counter()
        raise RuntimeError("boom")

    def samples(self) -> dict[str, float]:
        """Restarts per second, and the latency percentiles in µs."""
        return {
            "rate": self.count / (self.last - self.first),
            "p50": percentile(self.latencies, 50) * 1e6,
            "p99": percentile(self.latencies, 99) * 1e6,
        }


@contextmanager
def real_handler() -> Generator[None]:
    """A formatting handler writing to ``os.devnull``, on the root logger, default levels."""
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)


def _trisup(warmup: int, count: int, *, handler: bool) -> Callable[[], Samples]:
    def case() -> Samples:
        probe: CrashProbe | None = None

        async def main() -> None:
            nonlocal probe
            probe = CrashProbe(warmup, count)
            manager = trisup.Manager("bench")
            manager.add(
                trisup.new_service("crasher", probe),
                restart_delay=1e-6,
                max_restart_delay=1e-6,
                backoff_multiplier=1.0,
                max_restarts=0,
                max_restarts_in_window=0,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(manager.serve)
                await probe.done.wait()
                nursery.cancel_scope.cancel()

        if handler:
            with real_handler():
                trio.run(main)
        else:
            trio.run(main)
        assert probe is not None
        return probe.samples()

    return case


def _mini(warmup: int, count: int) -> Callable[[], Samples]:
    def case() -> Samples:
        probe: CrashProbe | None = None

        async def main() -> None:
            nonlocal probe
            probe = CrashProbe(warmup, count)
            supervisor = MiniSupervisor()
            supervisor.add("crasher", probe)
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.serve)
                await probe.done.wait()
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert probe is not None
        return probe.samples()

    return case


def run(*, reps: int, count: int) -> list[Row]:
    """Measure restart throughput and latency, trisup and the minimal supervisor interleaved."""
    warmup = 200
    m = interleaved(
        reps,
        {
            "trisup": _trisup(warmup, count, handler=False),
            "trisup+log": _trisup(warmup, count, handler=True),
            "mini": _mini(warmup, count),
        },
    )
    t, tl, b = m["trisup"], m["trisup+log"], m["mini"]
    return [
        row(
            "restart throughput",
            "restarts/s",
            t["rate"],
            b["rate"],
            Target(op=">=", value=0.5),
        ),
        row(
            "restart throughput, logging handler",
            "restarts/s",
            tl["rate"],
            b["rate"],
            Target(op=">=", value=0.25),
        ),
        row("crash-to-restart p50", "µs", t["p50"], b["p50"], Target(op="<=", value=2.0)),
        row("crash-to-restart p99", "µs", t["p99"], b["p99"], Target(op="<=", value=3.0)),
    ]
