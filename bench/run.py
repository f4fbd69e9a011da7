"""Run the trisup benchmark suite: ``python bench/run.py [--quick] [--json FILE]``.

Every benchmark measures trisup and its baseline in the same process,
interleaved, and reports the median of several repetitions and the ratio
trisup / baseline beside its target. Rows marked ``(ref)`` are for reference
and have no target. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import console
import control
import isolation
import processes
import restarts
import scale
import trio
from harness import Row

import trisup

GROUPS = ("restarts", "scale", "control", "isolation", "processes", "console")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _load() -> str:
    """The 1-minute load average: other work on the machine skews the timings."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def table(rows: Sequence[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| benchmark | unit | trisup | baseline | ratio | target | ok |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    for r in rows:
        ok = "" if r.ok is None else ("ok" if r.ok else "FAIL")
        lines.append(
            f"| {r.name} | {r.unit} | {_fmt(r.trisup)} | {_fmt(r.baseline)} "
            f"| {r.ratio:.2f} | {r.target or ''} | {ok} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run the benchmarks, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description="Run the trisup benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repetitions")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--only", metavar="GROUP", action="append", choices=GROUPS, help="run only these groups"
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    groups: list[str] = args.only or list(GROUPS)
    # Intentional failures log once at WARNING; keep them off stderr.
    logging.getLogger("trisup").addHandler(logging.NullHandler())

    reps = 3 if quick else 5
    runners: dict[str, Callable[[], list[Row]]] = {
        "restarts": lambda: restarts.run(reps=reps + 2, count=5_000 if quick else 20_000),
        "scale": lambda: scale.run(reps=reps, mem_reps=1 if quick else 3),
        "control": lambda: control.run(reps=reps, k=100 if quick else 300),
        "isolation": lambda: isolation.run(reps=3, duration=1.0 if quick else 3.0),
        "processes": lambda: processes.run(
            reps=3, duration=1.0 if quick else 3.0, count=200 if quick else 1_000
        ),
        "console": lambda: console.run(reps=reps, duration=1.0 if quick else 2.0),
    }
    print(
        f"trisup {trisup.__version__}, trio {trio.__version__}, "
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{'quick' if quick else 'full'} run, load average {_load()}",
        file=sys.stderr,
    )
    began = time.perf_counter()
    cpu = time.process_time()
    rows: list[Row] = []
    for group in groups:
        t0 = time.perf_counter()
        rows.extend(runners[group]())
        print(f"  {group}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(
        f"  total: {time.perf_counter() - began:.1f} s "
        f"(CPU {time.process_time() - cpu:.1f} s), load average {_load()}",
        file=sys.stderr,
    )
    print(table(rows))
    if args.json is not None:
        args.json.write_text(
            json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False) + "\n"
        )
    missed = [r.name for r in rows if r.ok is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
