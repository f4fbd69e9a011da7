"""One task per manager for the deadlines of all services: backoff waits and healthy resets.

A runner waiting out its backoff parks its task here (``sleep_until``) rather
than in a cancel scope with a deadline: when the wait ends, the timer task
reschedules it, with no scope, no deadline registered in Trio's run loop and no
``Cancelled`` raised through its frames. A thousand services that fail together
come due in one pass, and each restart costs a heap push and a reschedule. A
stop still reaches a parked runner at once: its cancel scope's cancellation
aborts the park.

A run that reaches ``restart_window`` of uptime resets its service's backoff
while it is still running, so the status turns from ``CRASHING`` to ``RUNNING``
with no exit to trigger it. Each service has at most one healthy-reset entry in
the heap: a new attempt only moves the service's planned deadline (no
allocation), and the entry, when it comes due, either fires or is pushed again
at the deadline that has moved on meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio
from trio.lowlevel import Task

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


_Entry = tuple[float, int, "_Target | Task"]


class DeadlineTimer:
    """Wakes parked tasks, and calls ``target.healthy(attempt)`` at each target's deadline."""

    __slots__ = ("_heap", "_parked", "_plans", "_scope", "_seq")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._plans: dict[_Target, _Plan] = {}
        self._parked: dict[Task, int] = {}  # a parked task -> the sequence of its entry
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None

    async def sleep_until(self, deadline: float) -> None:
        """Park the calling task until *deadline*, a `wake`, or a cancellation.

        Only while the timer task runs (`run`): nothing else wakes the task.
        """
        task = trio.lowlevel.current_task()
        seq = self._push(deadline, task)
        self._parked[task] = seq
        parked = self._parked

        def abort(_: object) -> trio.lowlevel.Abort:
            if parked.get(task) == seq:
                del parked[task]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self, task: Task) -> bool:
        """End the park of *task* now; whether it was parked."""
        if self._parked.pop(task, None) is None:
            return False
        trio.lowlevel.reschedule(task)
        return True

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
            self._plan(deadline, target, plan)

    def _plan(self, deadline: float, target: _Target, plan: _Plan) -> None:
        plan.entry = self._push(deadline, target)
        plan.entry_at = deadline

    def _live(self, entry: _Entry) -> bool:
        _, seq, obj = entry
        if type(obj) is Task:
            return self._parked.get(obj) == seq
        plan = self._plans.get(obj)  # pyright: ignore[reportArgumentType]
        return plan is not None and plan.entry == seq

    def _push(self, deadline: float, obj: _Target | Task) -> int:
        heap = self._heap
        if len(heap) > 64 and len(heap) > 2 * (len(self._plans) + len(self._parked)):
            # entries of aborted parks and of superseded plans
            self._heap = heap = [e for e in heap if self._live(e)]
            heapq.heapify(heap)
        seq = next(self._seq)
        heapq.heappush(heap, (deadline, seq, obj))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        return seq

    def _due(self, now: float) -> None:
        heap = self._heap
        plans = self._plans
        parked = self._parked
        while heap and heap[0][0] <= now:
            _, seq, obj = heapq.heappop(heap)
            if type(obj) is Task:
                if parked.get(obj) == seq:
                    del parked[obj]
                    trio.lowlevel.reschedule(obj)
                continue
            target: _Target = obj  # pyright: ignore[reportAssignmentType]
            plan = plans.get(target)
            if plan is None or seq != plan.entry:
                continue  # superseded
            if plan.deadline <= now:
                del plans[target]
                target.healthy(plan.attempt)
            else:
                self._plan(plan.deadline, target, plan)

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
