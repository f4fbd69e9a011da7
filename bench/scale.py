"""Targets 3, 4 and 5: start, ordered shutdown and memory of many idle services.

Start is timed from ``nursery.start(manager.serve)`` until every service has
entered its body (plain services are spawned in one batch, so ``serve``
reports ready before they have all run); the services are registered
beforehand. Shutdown is timed from the cancellation of the enclosing nursery
until it has exited: trisup runs its ordered shutdown sequence (services
stopped one by one, in reverse start order), the plain tasks are cancelled
all at once. Memory is what ``tracemalloc`` sees allocated by building the
supervisor, registering the services and starting them, per service, once
all are idle.

A reference row repeats trisup's start with the cyclic collector paused: the
full collections that allocating 10,000 services' state sets off (none happen
at 1,000) are CPython's, and plain tasks pay them too.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from time import perf_counter

import trio
import trio.testing
from baselines import Gate, MiniSupervisor, OrderedTasks
from harness import Row, Samples, Target, interleaved, row

import trisup

__all__ = ["run"]


def _trisup_start_stop(n: int, *, collector: bool = True) -> Callable[[], Samples]:
    """Time trisup's start and shutdown; without *collector*, the start runs with gc paused."""

    def case() -> Samples:
        async def main() -> Samples:
            gate = Gate(n)
            manager = trisup.Manager("bench")
            for i in range(n):
                manager.add(trisup.new_service(f"s{i}", gate.idle))
            gc.collect()
            async with trio.open_nursery() as nursery:
                if not collector:
                    gc.disable()
                t0 = perf_counter()
                await nursery.start(manager.serve)
                await gate.event.wait()
                t1 = perf_counter()
                gc.enable()
                nursery.cancel_scope.cancel()
            t2 = perf_counter()
            return {"start": (t1 - t0) * 1e3, "stop": (t2 - t1) * 1e3}

        return trio.run(main)

    return case


def _plain_start_stop(n: int) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            gate = Gate(n)
            gc.collect()
            async with trio.open_nursery() as nursery:
                t0 = perf_counter()
                for _ in range(n):
                    nursery.start_soon(gate.idle)
                await gate.event.wait()
                t1 = perf_counter()
                nursery.cancel_scope.cancel()
            t2 = perf_counter()
            return {"start": (t1 - t0) * 1e3, "stop": (t2 - t1) * 1e3}

        return trio.run(main)

    return case


def _ordered_start_stop(n: int) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            gate = Gate(n)
            tasks = OrderedTasks(gate.idle)
            gc.collect()
            async with trio.open_nursery() as nursery:
                t0 = perf_counter()
                tasks.spawn(nursery, n)
                await gate.event.wait()
                t1 = perf_counter()
                await tasks.shutdown()
            t2 = perf_counter()
            return {"start": (t1 - t0) * 1e3, "stop": (t2 - t1) * 1e3}

        return trio.run(main)

    return case


def _memory(n: int, kind: str) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            gate = Gate(n)
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                async with trio.open_nursery() as nursery:
                    if kind == "trisup":
                        manager = trisup.Manager("bench")
                        for i in range(n):
                            manager.add(trisup.new_service(f"s{i}", gate.idle))
                        await nursery.start(manager.serve)
                    elif kind == "mini":
                        supervisor = MiniSupervisor()
                        for i in range(n):
                            supervisor.add(f"s{i}", gate.idle)
                        await nursery.start(supervisor.serve)
                    else:
                        for _ in range(n):
                            nursery.start_soon(gate.idle)
                    await gate.event.wait()
                    await trio.testing.wait_all_tasks_blocked()
                    gc.collect()
                    after = tracemalloc.get_traced_memory()[0]
                    nursery.cancel_scope.cancel()
            finally:
                tracemalloc.stop()
            return {"bytes": (after - before) / n}

        return trio.run(main)

    return case


def run(*, reps: int, mem_reps: int) -> list[Row]:
    """Measure start, shutdown and memory at 1,000 and 10,000 services, interleaved.

    ``tracemalloc`` figures hardly vary between runs, so memory may use fewer
    repetitions (*mem_reps*) than the timings.
    """
    big, small = 10_000, 1_000
    m = interleaved(
        reps,
        {
            "trisup-1k": _trisup_start_stop(small),
            "plain-1k": _plain_start_stop(small),
            "trisup-10k": _trisup_start_stop(big),
            "plain-10k": _plain_start_stop(big),
            "ordered-10k": _ordered_start_stop(big),
            "trisup-1k-nogc": _trisup_start_stop(small, collector=False),
            "trisup-10k-nogc": _trisup_start_stop(big, collector=False),
        },
    )
    mem = interleaved(
        mem_reps,
        {
            "trisup-1k": _memory(small, "trisup"),
            "mini-1k": _memory(small, "mini"),
            "trisup-10k": _memory(big, "trisup"),
            "mini-10k": _memory(big, "mini"),
            "plain-10k": _memory(big, "plain"),
        },
    )
    t1k, p1k, t10k, p10k, o10k = (
        m["trisup-1k"],
        m["plain-1k"],
        m["trisup-10k"],
        m["plain-10k"],
        m["ordered-10k"],
    )
    le3, le25, le2, le13 = (
        Target(op="<=", value=3.0),
        Target(op="<=", value=2.5),
        Target(op="<=", value=2.0),
        Target(op="<=", value=1.3),
    )

    def per(ms: float, count: int) -> float:
        return ms * 1e3 / count

    kb = 1 / 1024
    return [
        row("start 1,000 services vs plain tasks", "ms", t1k["start"], p1k["start"], le3),
        row("start 10,000 services vs plain tasks", "ms", t10k["start"], p10k["start"], le3),
        row("shutdown 1,000 vs cancelling plain tasks", "ms", t1k["stop"], p1k["stop"], le25),
        row("shutdown 10,000 vs cancelling plain tasks", "ms", t10k["stop"], p10k["stop"], le25),
        row(
            "(ref) ordered raw-Trio shutdown 10,000 vs plain",
            "ms",
            o10k["stop"],
            p10k["stop"],
            None,
        ),
        row(
            "memory per idle service at 10,000 vs minimal",
            "KB",
            mem["trisup-10k"]["bytes"] * kb,
            mem["mini-10k"]["bytes"] * kb,
            le2,
        ),
        row(
            "(ref) memory per idle plain task at 10,000",
            "KB",
            mem["plain-10k"]["bytes"] * kb,
            mem["mini-10k"]["bytes"] * kb,
            None,
        ),
        row(
            "scaling: start per service, 10,000 vs 1,000",
            "µs",
            per(t10k["start"], big),
            per(t1k["start"], small),
            le13,
        ),
        row(
            "scaling: shutdown per service, 10,000 vs 1,000",
            "µs",
            per(t10k["stop"], big),
            per(t1k["stop"], small),
            le13,
        ),
        row(
            "scaling: memory per service, 10,000 vs 1,000",
            "KB",
            mem["trisup-10k"]["bytes"] * kb,
            mem["trisup-1k"]["bytes"] * kb,
            le13,
        ),
        row(
            "(ref) scaling: start per service, collector paused",
            "µs",
            per(m["trisup-10k-nogc"]["start"], big),
            per(m["trisup-1k-nogc"]["start"], small),
            None,
        ),
        row(
            "(ref) scaling: plain start per task, 10,000 vs 1,000",
            "µs",
            per(p10k["start"], big),
            per(p1k["start"], small),
            None,
        ),
        row(
            "(ref) scaling: plain cancel per task, 10,000 vs 1,000",
            "µs",
            per(p10k["stop"], big),
            per(p1k["stop"], small),
            None,
        ),
    ]
