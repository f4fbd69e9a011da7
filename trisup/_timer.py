"""One task per manager that fires the healthy-reset deadlines of all services.

A run that reaches ``restart_window`` of uptime resets its service's backoff
while it is still running, so the status turns from ``CRASHING`` to ``RUNNING``
with no exit to trigger it. Rather than a task per service or per attempt, the
runners push ``(deadline, attempt)`` entries into one heap; stale entries (the
attempt ended) are dropped lazily and compacted when they outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Protocol

import trio

__all__ = ["DeadlineTimer"]


class _Target(Protocol):
    def healthy(self, attempt: int) -> None: ...

    def attempt_alive(self, attempt: int) -> bool: ...


_Entry = tuple[float, int, _Target, int]


class DeadlineTimer:
    """Calls ``target.healthy(attempt)`` at each scheduled deadline."""

    __slots__ = ("_heap", "_scope", "_seq", "_size_hint")

    def __init__(self, size_hint: Callable[[], int]) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._size_hint = size_hint

    def schedule(self, deadline: float, target: _Target, attempt: int) -> None:
        """Fire ``target.healthy(attempt)`` at *deadline* (trio time)."""
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * self._size_hint():
            self._heap = heap = [e for e in heap if e[2].attempt_alive(e[3])]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, next(self._seq), target, attempt))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    async def run(self) -> None:
        """Fire deadlines until cancelled."""
        while True:
            heap = self._heap
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, target, attempt = heapq.heappop(heap)
                target.healthy(attempt)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
