"""The Trio clock, where there is one (the sync API runs outside ``trio.run`` too)."""

from __future__ import annotations

import trio

__all__ = ["trio_now"]


def trio_now() -> float | None:
    """``trio.current_time()``, or ``None`` outside ``trio.run``."""
    try:
        return trio.current_time()
    except RuntimeError:
        return None
