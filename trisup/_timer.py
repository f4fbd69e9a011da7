"""One task per manager that fires the healthy-reset deadlines of all services.

A run that reaches ``restart_window`` of uptime resets its service's backoff
while it is still running, so the status turns from ``CRASHING`` to ``RUNNING``
with no exit to trigger it. Rather than a task per service or per attempt, the
runners share one heap, and each runner has at most one entry in it: a new
attempt only moves the runner's planned deadline forward (no allocation), and
when the entry comes due it either fires or is pushed again at the deadline
that has moved on meanwhile. A service crashing every
0.1 s thus costs the heap nothing per restart: nothing allocated that lives
through the backoff wait, nothing for the collector to promote.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

__all__ = ["DeadlineTimer"]


class _Target(Protocol):
    def healthy(self, attempt: int) -> None: ...


class _Plan:
    """What is scheduled for one target: its latest deadline and its one heap entry."""

    __slots__ = ("attempt", "deadline", "entry", "entry_at")

    def __init__(self) -> None:
        self.deadline = math.inf  # when the latest scheduled attempt becomes healthy
        self.attempt = 0
        self.entry = -1  # the sequence number of the live heap entry
        self.entry_at = math.inf  # its deadline


_Entry = tuple[float, int, _Target]


class DeadlineTimer:
    """Calls ``target.healthy(attempt)`` at each target's latest scheduled deadline."""

    __slots__ = ("_heap", "_plans", "_scope", "_seq")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._plans: dict[_Target, _Plan] = {}
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    def schedule(self, deadline: float, target: _Target, attempt: int) -> None:
        """Fire ``target.healthy(attempt)`` at *deadline* (trio time).

        Replaces what was scheduled for *target* before: only the latest
        attempt of a service can become healthy.
        """
        plan = self._plans.get(target)
        if plan is None:
            plan = self._plans[target] = _Plan()
        plan.deadline = deadline
        plan.attempt = attempt
        if deadline < plan.entry_at:  # else the live entry comes due first and moves on
            self._push(deadline, target, plan)

    def _push(self, deadline: float, target: _Target, plan: _Plan) -> None:
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * len(self._plans):
            # entries superseded by an earlier deadline (a shorter restart_window)
            plans = self._plans
            self._heap = heap = [
                e for e in heap if (p := plans.get(e[2])) is not None and e[1] == p.entry
            ]
            heapq.heapify(heap)
        seq = next(self._seq)
        plan.entry = seq
        plan.entry_at = deadline
        heapq.heappush(heap, (deadline, seq, target))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def _due(self, now: float) -> None:
        heap = self._heap
        plans = self._plans
        while heap and heap[0][0] <= now:
            _, seq, target = heapq.heappop(heap)
            plan = plans.get(target)
            if plan is None or seq != plan.entry:
                continue  # superseded
            if plan.deadline <= now:
                del plans[target]
                target.healthy(plan.attempt)
            else:
                self._push(plan.deadline, target, plan)

    async def run(self) -> None:
        """Fire deadlines until cancelled."""
        while True:
            self._due(trio.current_time())
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

    def __len__(self) -> int:
        """The number of heap entries (live and superseded)."""
        return len(self._heap)
