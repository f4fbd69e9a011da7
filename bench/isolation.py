"""Target 7: isolation of steady services from a crash storm.

One manager serves a ticker (a service that wakes every 10 ms on an absolute
schedule and records how late each wake-up is), an idle service that is
stopped and started again every 20 ms (the stop is timed), and, in the storm
case, 1,000 services that fail at once and are restarted every 0.1 s: 10,000
restarts per second in all. Measurement begins after a warm-up that covers
the first restart rounds.

The stop is compared with the same manager without the crashers. The ticker's
lateness has an absolute target; beside it stands the same ticker and storm
under the minimal supervisor (with a 0.1 s delay between attempts), which is
what Trio and the interpreter's collector cost without trisup. A reference row
repeats the storm with ``gc.freeze()`` called once startup is done.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from time import perf_counter

import trio
from baselines import Gate, MiniSupervisor
from harness import Row, Samples, Target, interleaved, median, percentile, row

import trisup

__all__ = ["run"]

TICK = 0.01
CRASH_DELAY = 0.1
STOP_EVERY = 0.02


def _case(
    crashers: int, duration: float, warmup: float, *, mini: bool = False, freeze: bool = False
) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            lateness: list[float] = []
            measuring = False
            crashes = 0

            async def ticker() -> None:
                deadline = trio.current_time()
                while True:
                    deadline += TICK
                    await trio.sleep_until(deadline)
                    if measuring:
                        lateness.append(trio.current_time() - deadline)

            async def crasher() -> None:
                nonlocal crashes
                crashes += 1
                raise RuntimeError("boom")

            gate = Gate(1)
            stops: list[float] = []
            async with trio.open_nursery() as nursery:
                manager: trisup.Manager | None = None
                if mini:
                    supervisor = MiniSupervisor(delay=CRASH_DELAY)
                    supervisor.add("ticker", ticker)
                    supervisor.add("target", gate.idle)
                    for i in range(crashers):
                        supervisor.add(f"crasher{i}", crasher)
                    await nursery.start(supervisor.serve)
                else:
                    manager = trisup.Manager("bench")
                    manager.add(trisup.new_service("ticker", ticker))
                    manager.add(trisup.new_service("target", gate.idle))
                    for i in range(crashers):
                        manager.add(
                            trisup.new_service(f"crasher{i}", crasher),
                            restart_delay=CRASH_DELAY,
                            max_restart_delay=CRASH_DELAY,
                            backoff_multiplier=1.0,
                            max_restarts=0,
                            max_restarts_in_window=0,
                        )
                    await nursery.start(manager.serve)
                await gate.event.wait()
                if freeze:
                    gc.freeze()
                await trio.sleep(warmup)
                measuring = True
                first_crash = crashes
                began = trio.current_time()
                end = began + duration
                while trio.current_time() < end:
                    await trio.sleep(STOP_EVERY)
                    if manager is not None:
                        t0 = perf_counter()
                        await manager.stop_service("target")
                        stops.append(perf_counter() - t0)
                        await manager.start_service("target")
                measuring = False
                rate = (crashes - first_crash) / (trio.current_time() - began)
                nursery.cancel_scope.cancel()
            if freeze:
                gc.unfreeze()
            return {
                "p50": percentile(lateness, 50) * 1e3,
                "p99": percentile(lateness, 99) * 1e3,
                "stop": median(stops) * 1e6 if stops else 0.0,
                "rate": rate,
            }

        return trio.run(main)

    return case


def run(*, reps: int, duration: float) -> list[Row]:
    """Measure the ticker and a stop with and without the storm, interleaved."""
    warmup = 0.3
    m = interleaved(
        reps,
        {
            "storm": _case(1_000, duration, warmup),
            "calm": _case(0, duration, warmup),
            "mini-storm": _case(1_000, duration, warmup, mini=True),
            "storm-frozen": _case(1_000, duration, warmup, freeze=True),
        },
    )
    storm, calm, mini, frozen = m["storm"], m["calm"], m["mini-storm"], m["storm-frozen"]
    return [
        row(
            "(ref) isolation: crasher restarts/s, trisup vs minimal",
            "restarts/s",
            storm["rate"],
            mini["rate"],
            None,
        ),
        row(
            "(ref) isolation: ticker lateness p50, storm vs calm",
            "ms",
            storm["p50"],
            calm["p50"],
            None,
        ),
        row(
            "isolation: ticker lateness p99, storm, vs minimal",
            "ms",
            storm["p99"],
            mini["p99"],
            Target(op="<", value=10.0, absolute=True),
        ),
        row(
            "(ref) isolation: p99 with gc.freeze() after startup",
            "ms",
            frozen["p99"],
            mini["p99"],
            None,
        ),
        row(
            "isolation: stop of an unrelated service, storm vs calm",
            "µs",
            storm["stop"],
            calm["stop"],
            Target(op="<=", value=3.0),
        ),
    ]
