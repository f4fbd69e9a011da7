"""Large bodies rendered without slowing the supervisor: shared snapshots, encoded off the loop.

``GET P/api/services`` answers from `SharedBody`: the body of one snapshot of every
service, shared by every request that waits for it. A request is answered at
once from the last body while it is fresh: no manager event since its snapshot
(`ConsoleState.generation`) and younger than `TICK`, so uptimes move. Otherwise
it waits for the next snapshot, taken after it arrived, so a verb's effect is
always in the next ``GET``; snapshots are at least `TICK` apart, so however many
clients ask, and however many events a crash loop sends, the supervisor's loop
takes at most one snapshot per tick.

The snapshot is taken on the Trio thread (`Manager.get_services_info`); only its
conversion and JSON encoding run in a worker thread (`off_loop`), from the frozen
`ServiceInfo` values, and only for bodies large enough to pay for the thread.
``/metrics`` collects on the loop and encodes its text in a worker thread too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar, final

import trio
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .._health import api_dict
from .._status import ServiceInfo
from ._json import json_bytes
from ._state import ConsoleState

__all__ = [
    "OFF_LOOP",
    "TICK",
    "Collected",
    "SharedBody",
    "metrics_body",
    "off_loop",
    "services_body",
]

TICK = 0.1
"""The longest a body is reused, and the shortest time between two snapshots, in seconds."""
OFF_LOOP = 64
"""From how many services on a body is encoded in a worker thread."""

_T = TypeVar("_T")


def services_body(infos: Iterable[ServiceInfo]) -> bytes:
    """The body of ``GET P/api/services``: `api_dict` of each info, as `json_bytes` writes it.

    Reads only the frozen infos, so it may run in a worker thread.
    """
    return json_bytes([api_dict(info) for info in infos])


async def off_loop(work: Callable[[], _T], *, large: bool) -> _T:
    """``work()``, in a worker thread when *large* (else here, on the loop).

    The thread is not abandoned on cancellation: the caller waits for it to
    finish, then sees its cancellation at its next checkpoint.
    """
    if not large:
        return work()
    return await trio.to_thread.run_sync(work)


@final
class _Render:
    """One snapshot and its body, awaited by every request that arrived before it was taken."""

    __slots__ = ("body", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.body: bytes | None = None  # None once done: its leader was cancelled first


@final
class SharedBody:
    """The ``GET P/api/services`` body, from at most one snapshot per `TICK` (see the module).

    The first request that finds no fresh body leads the next render: it waits
    until a tick has passed since the last snapshot, takes the snapshot, and
    encodes it; every request arriving meanwhile waits for the same render.
    Requests arriving after the snapshot wait for the next one. A leader
    cancelled before its snapshot hands the lead to one of those waiting.

    Without the console's event tracking (`ConsoleState.tracking` false: its
    app used on its own), every request renders its own snapshot.
    """

    __slots__ = ("_body", "_generation", "_next", "_state", "_taken", "_tick")

    def __init__(self, state: ConsoleState, *, tick: float = TICK) -> None:
        self._state = state
        self._tick = tick
        self._body: bytes | None = None
        self._generation = -1
        self._taken = -math.inf  # the Trio time of the last snapshot
        self._next: _Render | None = None

    async def get(self) -> bytes:
        """The body, as of a snapshot taken after this call began (or unchanged since)."""
        state = self._state
        if not state.tracking:
            infos = state.manager.get_services_info()
            return await off_loop(lambda: services_body(infos), large=len(infos) >= OFF_LOOP)
        state.sync()
        while True:
            body = self._body
            if (
                body is not None
                and state.generation == self._generation
                and trio.current_time() - self._taken < self._tick
            ):
                return body
            render = self._next
            if render is None:
                render = self._next = _Render()
                await self._lead(render)
            else:
                await render.done.wait()
            if render.body is not None:
                return render.body

    async def _lead(self, render: _Render) -> None:
        state = self._state
        try:
            # (bounded by a tick: a body of an earlier run has a clock of its own)
            await trio.sleep(min(self._tick, self._taken + self._tick - trio.current_time()))
            self._next = None  # who arrives from now on waits for the next snapshot
            state.sync()
            generation = state.generation
            infos = state.manager.get_services_info()
            taken = self._taken = trio.current_time()
            body = await off_loop(lambda: services_body(infos), large=len(infos) >= OFF_LOOP)
            if taken >= self._taken:  # no later snapshot was taken meanwhile
                self._body = body
                self._generation = generation
            render.body = body
        finally:
            if self._next is render:
                self._next = None
            render.done.set()


@final
class Collected(Collector):
    """Metric families collected already, for an encoder to write out (in a worker thread)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def metrics_body(registry: CollectorRegistry, encoder: Callable[[Collector], bytes]) -> bytes:
    """*registry*'s metrics: collected on the loop, written out in a worker thread."""
    families = list(registry.collect())
    samples = sum(len(f.samples) for f in families)
    return await off_loop(lambda: encoder(Collected(families)), large=samples >= 32 * OFF_LOOP)
