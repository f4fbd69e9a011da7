"""Large bodies rendered without slowing the supervisor: shared snapshots, encoded off the loop.

``GET P/api/services`` answers from `SharedBody` (and the event stream's
snapshots come from another `Shared`): the body of one snapshot of every
service, shared by every request that waits for it. A request is answered at
once from the last body while it is fresh: no manager event since its snapshot
(`ConsoleState.generation`) and younger than its life (`TICK`, so uptimes move,
or longer when rendering is expensive: `BUDGET`). Otherwise it waits for the next
snapshot, taken after it arrived, so a verb's effect is always in the next
``GET``; snapshots are at least a life apart, so however many clients ask, and
however many events a crash loop sends, rendering takes at most `BUDGET` of the
time.

The snapshot is taken on the Trio thread (`Manager.get_services_info`); only its
conversion, JSON encoding and gzip copy run in a worker thread (`off_loop`), from
the frozen `ServiceInfo` values (`api_dict` must stay a pure function of the info),
and only for bodies large enough to pay for the thread.
``/metrics`` reads the services' info on the loop, and collects and writes out its
text in a worker thread (`metrics_body`).
"""

from __future__ import annotations

import gzip
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar, final

import trio
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.responses import Response

from .._health import api_dict
from .._status import ServiceInfo
from ._json import json_bytes
from ._state import ConsoleState

__all__ = [
    "BUDGET",
    "GZIP_MIN",
    "OFF_LOOP",
    "TICK",
    "Body",
    "Shared",
    "SharedBody",
    "accepts_gzip",
    "encode",
    "metrics_body",
    "off_loop",
    "pinned",
    "services_body",
]

TICK = 0.1
"""The shortest life of a body, and the shortest time between two snapshots, in seconds."""
BUDGET = 0.05
"""The share of the time rendering may take: a render that cost *c* seconds of CPU
(the snapshot on the loop's thread, the encoding in its worker thread) is kept, and
the next snapshot waits, for at least *c* / `BUDGET` seconds."""
OFF_LOOP = 64
"""From how many services on a body is encoded in a worker thread."""
GZIP_MIN = 4096
"""From how many bytes on a body is also kept gzip-compressed."""

_T = TypeVar("_T")
_S = TypeVar("_S")


@final
@dataclass(frozen=True, slots=True)
class Body:
    """A rendered body, and its gzip encoding when it is large (`GZIP_MIN`)."""

    identity: bytes
    gzip: bytes | None

    def response(self, accept_encoding: str) -> Response:
        """The JSON response: gzip-encoded for a client that accepts it."""
        headers = {"Vary": "Accept-Encoding"}
        if self.gzip is not None and accepts_gzip(accept_encoding):
            headers["Content-Encoding"] = "gzip"
            return Response(self.gzip, media_type="application/json", headers=headers)
        return Response(self.identity, media_type="application/json", headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts ``gzip`` (named, with a q above 0)."""
    for item in accept_encoding.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() != "gzip":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def services_body(infos: Iterable[ServiceInfo]) -> bytes:
    """The body of ``GET P/api/services``: `api_dict` of each info, as `json_bytes` writes it.

    Reads only the frozen infos, so it may run in a worker thread.
    """
    return json_bytes([api_dict(info) for info in infos])


def encode(infos: list[ServiceInfo]) -> Body:
    """The `Body` of *infos* (gzip-compressed too from `GZIP_MIN` bytes)."""
    identity = services_body(infos)
    packed = gzip.compress(identity, 1, mtime=0) if len(identity) >= GZIP_MIN else None
    return Body(identity, packed)


async def off_loop(work: Callable[[], _T], *, large: bool) -> _T:
    """``work()``, in a worker thread when *large* (else here, on the loop).

    The thread is not abandoned on cancellation: the caller waits for it to
    finish, then sees its cancellation at its next checkpoint.
    """
    if not large:
        return work()
    return await trio.to_thread.run_sync(work)


@final
class _Render(Generic[_T]):
    """One snapshot and its rendering, awaited by every caller that arrived before it was taken."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: _T | None = None  # None once done: its leader was cancelled first


class Shared(Generic[_S, _T]):
    """A rendering of one snapshot (*_S*, taken on the loop), shared by many callers.

    A rendering is reused while no manager event has come since its snapshot and
    it is younger than its life: `TICK`, or longer when rendering is expensive
    (`BUDGET`). The first caller that finds no fresh one leads the next render:
    it waits until that life has passed since the last snapshot, takes the
    snapshot (`take`, on the loop), and renders it (`render`, in a worker thread
    when `large`); every caller arriving meanwhile waits for the same render, and
    those arriving after the snapshot for the next one. A leader cancelled
    before its snapshot hands the lead to one of those waiting.

    Without the console's event tracking (`ConsoleState.tracking` false: its
    app used on its own), every call renders its own snapshot.
    """

    __slots__ = ("_generation", "_life", "_next", "_result", "_state", "_taken", "_tick")

    def __init__(self, state: ConsoleState, *, tick: float = TICK) -> None:
        self._state = state
        self._tick = tick
        self._life = tick  # of the last rendering, at least a tick (see BUDGET)
        self._result: _T | None = None
        self._generation = -1
        self._taken = -math.inf  # the Trio time of the last snapshot
        self._next: _Render[_T] | None = None

    def take(self) -> _S:
        """The snapshot, on the loop (the Trio thread)."""
        raise NotImplementedError

    def large(self, taken: _S) -> bool:
        """Whether rendering *taken* is worth a worker thread."""
        raise NotImplementedError

    def render(self, taken: _S) -> _T:
        """The rendering of *taken*: reads only the snapshot, so it may run in a worker thread."""
        raise NotImplementedError

    async def _rendered(self, taken: _S) -> tuple[_T, float]:
        def work() -> tuple[_T, float]:
            began = time.thread_time()
            out = self.render(taken)
            return out, time.thread_time() - began

        return await off_loop(work, large=self.large(taken))

    async def get(self) -> _T:
        """The rendering, of a snapshot taken after this call began (or unchanged since)."""
        state = self._state
        if not state.tracking:
            fresh, _ = await self._rendered(self.take())
            return fresh
        state.sync()
        while True:
            result = self._result
            if (
                result is not None
                and state.generation == self._generation
                and trio.current_time() - self._taken < self._life
            ):
                return result
            render = self._next
            if render is None:
                render = self._next = _Render[_T]()
                await self._lead(render)
            else:
                await render.done.wait()
            if render.result is not None:
                return render.result

    async def _lead(self, render: _Render[_T]) -> None:
        state = self._state
        try:
            # (at most one life: a rendering of an earlier run has a clock of its own)
            wait = self._taken + self._life - trio.current_time()
            await trio.sleep(max(0.0, min(self._life, wait)))
            self._next = None  # who arrives from now on waits for the next snapshot
            began = time.thread_time()
            state.sync()
            generation = state.generation
            taken = self.take()
            at = self._taken = trio.current_time()
            cost = time.thread_time() - began
            result, rendering = await self._rendered(taken)
            if at >= self._taken:  # no later snapshot was taken meanwhile
                self._result = result
                self._generation = generation
                self._life = max(self._tick, (cost + rendering) / BUDGET)
            render.result = result
        finally:
            if self._next is render:
                self._next = None
            render.done.set()


@final
class SharedBody(Shared[list[ServiceInfo], Body]):
    """The ``GET P/api/services`` body, from one snapshot shared by many requests (`Shared`)."""

    __slots__ = ()

    def take(self) -> list[ServiceInfo]:
        return self._state.manager.get_services_info()

    def large(self, taken: list[ServiceInfo]) -> bool:
        return len(taken) >= OFF_LOOP

    def render(self, taken: list[ServiceInfo]) -> Body:
        return encode(taken)


_PINNED = threading.local()


def pinned(state: ConsoleState) -> tuple[list[ServiceInfo], str] | None:
    """The snapshot `metrics_body` took for *state*'s console, in the thread it collects in."""
    snapshot: tuple[ConsoleState, list[ServiceInfo], str] | None = getattr(
        _PINNED, "snapshot", None
    )
    if snapshot is None or snapshot[0] is not state:
        return None
    return snapshot[1], snapshot[2]


async def metrics_body(
    state: ConsoleState, registry: CollectorRegistry, encoder: Callable[[Collector], bytes]
) -> bytes:
    """*registry*'s metrics, written by *encoder*.

    The services' info and the manager's state are read here, on the loop; with
    many services, the registry is collected (the console's collector from that
    snapshot, see `pinned`) and written out in a worker thread, as
    ``prometheus_client``'s own server collects in its threads.
    """
    infos = state.manager.get_services_info()
    current = state.current_state()

    def work() -> bytes:
        _PINNED.snapshot = (state, infos, current)
        try:
            return encoder(registry)
        finally:
            _PINNED.snapshot = None

    return await off_loop(work, large=len(infos) >= OFF_LOOP)
