"""Target 6: control verbs on one service among 10,000 versus among 10.

A manager serves *n* idle services; the verbs are applied to the one in the
middle, *k* times each, and the mean cost of a call is taken. The baseline
is the same verb on the same kind of service among 10. ``get_services_info``
for 10,000 services is measured per service, against an absolute bound.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from time import perf_counter

import trio
from baselines import Gate
from harness import Row, Samples, Target, interleaved, median, row

import trisup

__all__ = ["run"]


def _verbs(n: int, k: int, *, bulk: bool) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            gate = Gate(n)
            manager = trisup.Manager("bench")
            for i in range(n):
                manager.add(trisup.new_service(f"s{i}", gate.idle))
            name = f"s{n // 2}"
            out: dict[str, float] = {}
            async with trio.open_nursery() as nursery:
                await nursery.start(manager.serve)
                await gate.event.wait()
                gc.collect()
                stop = start = 0.0
                for _ in range(k):
                    t0 = perf_counter()
                    await manager.stop_service(name)
                    t1 = perf_counter()
                    await manager.start_service(name)
                    t2 = perf_counter()
                    stop += t1 - t0
                    start += t2 - t1
                out["stop_service"] = stop / k * 1e6
                out["start_service"] = start / k * 1e6
                t0 = perf_counter()
                for _ in range(k):
                    await manager.restart_service(name)
                out["restart_service"] = (perf_counter() - t0) / k * 1e6
                t0 = perf_counter()
                for _ in range(10 * k):
                    manager.get_service_info(name)
                out["get_service_info"] = (perf_counter() - t0) / (10 * k) * 1e6
                if bulk:
                    calls: list[float] = []
                    for _ in range(3):
                        t0 = perf_counter()
                        manager.get_services_info()
                        calls.append(perf_counter() - t0)
                    out["get_services_info"] = median(calls) / n * 1e6
                nursery.cancel_scope.cancel()
            return out

        return trio.run(main)

    return case


def run(*, reps: int, k: int) -> list[Row]:
    """Measure the verbs among 10,000 and among 10, interleaved."""
    m = interleaved(
        reps,
        {
            "10k": _verbs(10_000, k, bulk=True),
            "10": _verbs(10, k, bulk=False),
        },
    )
    big, small = m["10k"], m["10"]
    le15 = Target(op="<=", value=1.5)
    rows = [
        row(f"{verb} among 10,000 vs among 10", "µs", big[verb], small[verb], le15)
        for verb in ("stop_service", "start_service", "restart_service", "get_service_info")
    ]
    rows.append(
        row(
            "get_services_info() at 10,000, per service",
            "µs",
            big["get_services_info"],
            small["get_service_info"],
            Target(op="<", value=30.0, absolute=True),
        )
    )
    return rows
