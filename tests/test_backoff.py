"""Delay growth, jitter and the sliding window, as plain arithmetic."""

from __future__ import annotations

import random

from trisup._backoff import RestartWindow, jittered, next_delay


def test_next_delay_grows_and_caps() -> None:
    """Delays multiply and stop at the cap; fractional multipliers work."""
    assert next_delay(1.0, 2.0, 60.0) == 2.0
    assert next_delay(32.0, 2.0, 60.0) == 60.0
    assert next_delay(1.0, 1.5, 60.0) == 1.5
    assert next_delay(1.5, 1.5, 60.0) == 2.25


def test_jitter_bounds() -> None:
    """Jitter multiplies by a factor in [1, 1 + jitter]; zero jitter draws nothing."""
    rng = random.Random(1234)
    values = [jittered(2.0, 0.5, rng) for _ in range(2000)]
    assert all(2.0 <= v <= 3.0 for v in values)
    assert min(values) < 2.05
    assert max(values) > 2.95
    state = rng.getstate()
    assert jittered(2.0, 0.0, rng) == 2.0
    assert rng.getstate() == state


def test_window_slides() -> None:
    """Restarts leave the window once it has passed; the boundary is exclusive."""
    w = RestartWindow()
    for t in (1.0, 60.0, 106.0):
        w.record(t, 0)
    assert w.count(105.0, 100.0) == 2  # 1.0 left the window at 101
    assert w.oldest() == 60.0
    assert w.count(160.0, 100.0) == 1  # 60.0 leaves exactly at 160
    w.clear()
    assert w.count(0.0, 1.0) == 0
    assert w.oldest() is None


def test_window_capped_by_limit() -> None:
    """With a limit, the history never holds more than the limit."""
    w = RestartWindow()
    for t in range(1000):
        w.record(float(t), 5)
    assert len(w) == 5
    assert w.oldest() == 995.0
