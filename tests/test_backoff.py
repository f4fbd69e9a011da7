"""Delay growth, jitter and the sliding window, as plain arithmetic."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trisup._backoff import (
    RestartWindow,
    Schedule,
    give_up_reason,
    jittered,
    next_delay,
    preview,
)


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


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, None),
        ({"restart_count": 2, "max_restarts": 3}, None),
        ({"restart_count": 3, "max_restarts": 3}, "max_restarts=3 reached"),
        ({"restart_count": 9, "max_restarts": 0}, None),  # 0: unlimited
        ({"in_window": 4}, None),
        ({"in_window": 5}, "5 restarts within restart_window=300s"),
        ({"in_window": 7, "max_restarts_in_window": 0}, None),  # 0: no window limit
        (
            {"in_window": 2, "max_restarts_in_window": 2, "restart_window": 0.5},
            "2 restarts within restart_window=0.5s",
        ),
        (  # the budget is checked first
            {"restart_count": 1, "max_restarts": 1, "in_window": 5},
            "max_restarts=1 reached",
        ),
    ],
)
def test_give_up_reason(counts: dict[str, float], expected: str | None) -> None:
    """The restart path's limits, in order, with the runner's wording."""
    arguments: dict[str, float] = {
        "restart_count": 0,
        "max_restarts": 0,
        "in_window": 0,
        "max_restarts_in_window": 5,
        "restart_window": 300.0,
        **counts,
    }
    assert give_up_reason(**arguments) == expected  # type: ignore[arg-type]  # table of numbers


_EXACT_DELAYS = st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0])


@given(
    restart_delay=_EXACT_DELAYS,
    cap=_EXACT_DELAYS,
    multiplier=st.sampled_from([1.0, 1.5, 2.0, 4.0]),
    max_restarts=st.sampled_from([0, 0, 0, 3, 20]),
    window=st.integers(min_value=1, max_value=40).map(float),
    in_window=st.integers(min_value=0, max_value=6),
)
def test_preview_decides_give_up_or_for_ever(
    restart_delay: float,
    cap: float,
    multiplier: float,
    max_restarts: int,
    window: float,
    in_window: int,
) -> None:
    """A preview that says "for ever" never gives up later; one that gives up says why."""

    def play(failures: int) -> Schedule:
        return preview(
            failures=failures,
            restart_delay=restart_delay,
            max_restart_delay=max(cap, restart_delay),
            backoff_multiplier=multiplier,
            max_restarts=max_restarts,
            restart_window=window,
            max_restarts_in_window=in_window,
            jitter=0.0,
        )

    short, long = play(60), play(2000)
    if short.forever:
        assert short.failed_at is None
        assert long.forever and long.failed_at is None
    if short.failed_at is not None:
        assert long == short
        assert short.reason is not None
        assert short.starts[-1] == short.failed_at
    else:
        assert short.starts == long.starts[: len(short.starts)]
    # Growth stops within a few restarts here, so every preview is decided by then.
    assert long.forever or long.failed_at is not None
    assert long.forever == (long.failed_at is None)


@given(
    restart_delay=_EXACT_DELAYS,
    multiplier=st.sampled_from([1.0, 2.0]),
    max_restarts=st.sampled_from([0, 3, 8]),
    window=st.integers(min_value=1, max_value=40).map(float),
    in_window=st.integers(min_value=0, max_value=6),
    done=st.integers(min_value=0, max_value=10),
)
def test_preview_from_a_state_continues_the_fresh_one(
    restart_delay: float,
    multiplier: float,
    max_restarts: int,
    window: float,
    in_window: int,
    done: int,
) -> None:
    """A preview started from the state after *done* restarts is the rest of the fresh one."""
    rules = {
        "restart_delay": restart_delay,
        "max_restart_delay": 64.0,
        "backoff_multiplier": multiplier,
        "max_restarts": max_restarts,
        "restart_window": window,
        "max_restarts_in_window": in_window,
        "jitter": 0.0,
    }
    fresh = preview(failures=12, **rules)  # type: ignore[arg-type]  # the values above
    done = min(done, len(fresh.delays))
    later = preview(
        failures=12 - done,
        now=fresh.starts[done],
        restarts=done,
        window_times=[t for t in fresh.starts[1 : done + 1] if t > fresh.starts[done] - window],
        delay=min(restart_delay * multiplier**done, 64.0),
        **rules,  # type: ignore[arg-type]  # the values above
    )
    assert later.starts == fresh.starts[done:]
    assert (later.failed_at, later.reason) == (fresh.failed_at, fresh.reason)
