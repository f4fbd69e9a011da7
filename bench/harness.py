"""Rows, targets, statistics and the interleaved repetition loop of the suite."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Row",
    "Target",
    "interleaved",
    "median",
    "percentile",
    "row",
]

Samples = Mapping[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A target: ``ratio <= 3``, ``ratio >= 0.5`` or an absolute ``trisup < 30``."""

    op: Literal["<=", ">=", "<"]
    value: float
    absolute: bool = False

    def met(self, trisup: float, ratio: float) -> bool:
        """Whether the measured figures meet the target."""
        x = trisup if self.absolute else ratio
        if self.op == "<=":
            return x <= self.value
        if self.op == ">=":
            return x >= self.value
        return x < self.value

    def describe(self, unit: str) -> str:
        """The target as the table and the JSON state it."""
        if self.absolute:
            return f"trisup {self.op} {self.value:g} {unit}"
        return f"ratio {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of the results: trisup, its baseline and the ratio of the two."""

    name: str
    unit: str
    trisup: float
    baseline: float
    ratio: float
    target: str | None
    ok: bool | None

    def to_json(self) -> dict[str, object]:
        """The JSON object: name, unit, trisup, baseline, ratio, target, ok."""
        return {
            "name": self.name,
            "unit": self.unit,
            "trisup": round(self.trisup, 6),
            "baseline": round(self.baseline, 6),
            "ratio": round(self.ratio, 4),
            "target": self.target,
            "ok": self.ok,
        }


def row(name: str, unit: str, trisup: float, baseline: float, target: Target | None) -> Row:
    """Build a row; a row without a target is for reference only (``ok`` is null)."""
    ratio = trisup / baseline if baseline else float("inf")
    if target is None:
        return Row(
            name=name,
            unit=unit,
            trisup=trisup,
            baseline=baseline,
            ratio=ratio,
            target=None,
            ok=None,
        )
    return Row(
        name=name,
        unit=unit,
        trisup=trisup,
        baseline=baseline,
        ratio=ratio,
        target=target.describe(unit),
        ok=target.met(trisup, ratio),
    )


def median(values: Sequence[float]) -> float:
    """The median (of the repetitions)."""
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100), nearest rank on the sorted values."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def interleaved(
    reps: int, cases: Mapping[str, Callable[[], Samples]]
) -> dict[str, dict[str, float]]:
    """Run every case *reps* times, interleaved, and return the median of each figure.

    Each repetition runs every case once, in registration order on even
    repetitions and in reverse order on odd ones, so that drift of the machine
    weighs on every case alike. ``gc.collect()`` runs before each measurement.
    """
    names = list(cases)
    runs: dict[str, list[Samples]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            runs[name].append(cases[name]())
    gc.collect()
    result: dict[str, dict[str, float]] = {}
    for name, samples in runs.items():
        keys = samples[0].keys()
        result[name] = {key: median([s[key] for s in samples]) for key in keys}
    return result
