"""Large bodies rendered without slowing the supervisor: shared snapshots, encoded off the loop.

``GET P/api/services`` answers from `SharedBody`: the body of one snapshot of every
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
from typing import TypeVar, final

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


def encode(infos: list[ServiceInfo]) -> tuple[Body, float]:
    """The `Body` of *infos*, and the CPU time its encoding took in this thread."""
    began = time.thread_time()
    identity = services_body(infos)
    packed = gzip.compress(identity, 1, mtime=0) if len(identity) >= GZIP_MIN else None
    return Body(identity, packed), time.thread_time() - began


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
        self.body: Body | None = None  # None once done: its leader was cancelled first


@final
class SharedBody:
    """The ``GET P/api/services`` body, from one snapshot shared by many requests.

    A body is reused while no manager event has come since its snapshot and it
    is younger than its life: `TICK`, or longer when rendering is expensive
    (`BUDGET`). The first request that finds no fresh body leads the next
    render: it waits until that life has passed since the last snapshot, takes
    the snapshot, and encodes it; every request arriving meanwhile waits for
    the same render, and those arriving after the snapshot for the next one.
    A leader cancelled before its snapshot hands the lead to one of those waiting.

    Without the console's event tracking (`ConsoleState.tracking` false: its
    app used on its own), every request renders its own snapshot.
    """

    __slots__ = ("_body", "_generation", "_life", "_next", "_state", "_taken", "_tick")

    def __init__(self, state: ConsoleState, *, tick: float = TICK) -> None:
        self._state = state
        self._tick = tick
        self._life = tick  # of the last body, at least a tick (see BUDGET)
        self._body: Body | None = None
        self._generation = -1
        self._taken = -math.inf  # the Trio time of the last snapshot
        self._next: _Render | None = None

    async def get(self) -> Body:
        """The body, as of a snapshot taken after this call began (or unchanged since)."""
        state = self._state
        if not state.tracking:
            infos = state.manager.get_services_info()
            fresh, _ = await off_loop(lambda: encode(infos), large=len(infos) >= OFF_LOOP)
            return fresh
        state.sync()
        while True:
            body = self._body
            if (
                body is not None
                and state.generation == self._generation
                and trio.current_time() - self._taken < self._life
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
            # (at most one life: a body of an earlier run has a clock of its own)
            wait = self._taken + self._life - trio.current_time()
            await trio.sleep(max(0.0, min(self._life, wait)))
            self._next = None  # who arrives from now on waits for the next snapshot
            began = time.thread_time()
            state.sync()
            generation = state.generation
            infos = state.manager.get_services_info()
            taken = self._taken = trio.current_time()
            cost = time.thread_time() - began
            body, encoding = await off_loop(lambda: encode(infos), large=len(infos) >= OFF_LOOP)
            if taken >= self._taken:  # no later snapshot was taken meanwhile
                self._body = body
                self._generation = generation
                self._life = max(self._tick, (cost + encoding) / BUDGET)
            render.body = body
        finally:
            if self._next is render:
                self._next = None
            render.done.set()


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
