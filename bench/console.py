"""The console never slows the supervisor: a crash loop's restarts under HTTP load.

A manager serves 1,000 services: 999 idle and one that fails at once, restarted
after 1 µs with no limits, beside a `trisup.http.ConsoleService` on a free
loopback port (Hypercorn, real HTTP). Its restarts per second are counted over a
window with no HTTP client (the baseline) and with 32 clients looping on
``GET P/api/services``, in a process of their own (`http_clients`, keep-alive
`http.client` connections, each body read whole). The same clients on the same
1,000 idle services without the crash loop give the requests per second of
``/api/services``; the ceiling beside it is the same server (Hypercorn, Starlette,
Trio) answering every request with the same body, rendered once. The clients send
``Accept-Encoding: gzip``, as browsers and httpx do; a reference row has clients
that do not. Event streams: the same crash loop with `STREAMS` pages' event
streams (``GET P/api/events``) open, read as fast as they come by threads of a
separate process, against none; a reference row counts the snapshots each
stream received in the window (a stream resends one after falling behind).
Since the clients' process and other work on the machine take CPU
from the supervisor's process, a reference row gives the restarts per CPU-second
of the supervisor's process (`time.process_time`, its worker threads included).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from time import perf_counter, process_time
from typing import cast

import hypercorn.trio
import trio
from harness import Row, Samples, Target, interleaved, row
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import trisup
from trisup.http import ConsoleService
from trisup.http._render import Body, encode

__all__ = ["run"]

CLIENTS = 32
STREAMS = 8
SERVICES = 1_000
_SCRIPT = str(Path(__file__).with_name("http_clients.py"))
_QUIET = logging.getLogger("bench.console.fixed")  # Hypercorn's "Running on ..." line
_QUIET.setLevel(logging.WARNING)


class _Counter:
    """A service body that fails at once and counts its entries."""

    def __init__(self) -> None:
        self.n = 0

    async def __call__(self) -> None:
        self.n += 1
        raise RuntimeError("boom")


class _Lines:
    """Lines read from a process's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise RuntimeError("the clients' process ended early")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


async def _window(
    duration: float, clients: trio.Process | None, lines: _Lines | None, probe: _Counter | None
) -> Samples:
    """Restarts and requests per second over *duration* seconds."""
    if clients is not None and lines is not None:
        assert clients.stdin is not None
        await clients.stdin.send_all(b"mark\n")
        await lines.line()  # the responses before the window
    n0, t0, c0 = (probe.n if probe else 0), perf_counter(), process_time()
    await trio.sleep(duration)
    n1, t1, c1 = (probe.n if probe else 0), perf_counter(), process_time()
    out = {
        "restarts": (n1 - n0) / (t1 - t0),
        "per_cpu": (n1 - n0) / (c1 - c0),
        "requests": 0.0,
    }
    if clients is not None and lines is not None:
        assert clients.stdin is not None
        await clients.stdin.send_all(b"mark\n")
        count, seconds = (await lines.line()).split()
        out["requests"] = int(count) / float(seconds)
    return out


async def _with_clients(
    url: str,
    duration: float,
    threads: int,
    probe: _Counter | None,
    *,
    gzip: bool,
    stream: bool = False,
) -> Samples:
    if not threads:
        await trio.sleep(0.3)  # warm-up, as with clients
        return await _window(duration, None, None, probe)
    mode = "stream" if stream else "gzip" if gzip else "identity"
    command = [sys.executable, _SCRIPT, url, str(threads), mode]
    async with trio.open_nursery() as nursery:
        run = partial(
            trio.run_process, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, check=False
        )
        clients: trio.Process = await nursery.start(run)
        assert clients.stdout is not None and clients.stdin is not None
        lines = _Lines(clients.stdout)
        if await lines.line() != "ready":
            raise RuntimeError("the clients did not start")
        await trio.sleep(0.3)  # warm-up
        out = await _window(duration, clients, lines, probe)
        await clients.stdin.aclose()
    return out


def _console(
    *, threads: int, crash: bool, duration: float, gzip: bool = True, stream: bool = False
) -> Callable[[], Samples]:
    def case() -> Samples:
        async def main() -> Samples:
            manager = trisup.Manager("bench")
            probe = _Counter() if crash else None
            for i in range(SERVICES - (1 if crash else 0)):
                manager.add(trisup.new_service(f"idle-{i}", trio.sleep_forever))
            if probe is not None:
                manager.add(
                    trisup.new_service("crasher", probe),
                    restart_delay=1e-6,
                    max_restart_delay=1e-6,
                    backoff_multiplier=1.0,
                    max_restarts=0,
                    max_restarts_in_window=0,
                )
            console = ConsoleService(manager, bind="127.0.0.1:0")
            manager.add(console)
            async with trio.open_nursery() as nursery:
                await nursery.start(manager.serve)
                await manager.wait_status(console.name, trisup.ServiceStatus.RUNNING)
                assert console.url is not None
                url = console.url + ("api/events" if stream else "api/services")
                out = await _with_clients(url, duration, threads, probe, gzip=gzip, stream=stream)
                nursery.cancel_scope.cancel()
            return out

        return trio.run(main)

    return case


def _fixed(body: Body, *, threads: int, duration: float) -> Callable[[], Samples]:
    """The same clients on the same server answering *body*, rendered once: the ceiling."""

    async def fixed(request: Request) -> Response:
        return body.response(request.headers.get("accept-encoding", ""))

    app = Starlette(routes=[Route("/", fixed)])

    def case() -> Samples:
        async def main() -> Samples:
            config = Config()
            config.bind = ["127.0.0.1:0"]
            config.accesslog = None
            config.errorlog = _QUIET
            async with trio.open_nursery() as nursery:
                urls: list[str] = await nursery.start(
                    lambda task_status: hypercorn.trio.serve(  # pyright: ignore
                        cast(ASGIFramework, app),
                        config,
                        task_status=task_status,
                    )
                )
                out = await _with_clients(urls[0] + "/", duration, threads, None, gzip=True)
                nursery.cancel_scope.cancel()
            return out

        return trio.run(main)

    return case


def _body() -> Body:
    """The body of ``/api/services`` at `SERVICES` idle services and the console."""

    async def main() -> Body:
        manager = trisup.Manager("bench")
        for i in range(SERVICES):
            manager.add(trisup.new_service(f"idle-{i}", trio.sleep_forever))
        manager.add(ConsoleService(manager, bind="127.0.0.1:0"))
        body = encode(manager.get_services_info())
        return body

    return trio.run(main)


def run(*, reps: int, duration: float) -> list[Row]:
    """Measure the crash loop with and without clients, and the request rate."""
    body = _body()
    m = interleaved(
        reps,
        {
            "calm": _console(threads=0, crash=True, duration=duration),
            "load": _console(threads=CLIENTS, crash=True, duration=duration),
            "idle": _console(threads=CLIENTS, crash=False, duration=duration),
            "load, no gzip": _console(threads=CLIENTS, crash=True, duration=duration, gzip=False),
            "fixed": _fixed(body, threads=CLIENTS, duration=duration),
            "streams": _console(threads=STREAMS, crash=True, duration=duration, stream=True),
        },
    )
    calm, load, idle, fixed = m["calm"], m["load"], m["idle"], m["fixed"]
    plain, streams = m["load, no gzip"], m["streams"]
    return [
        row(
            f"console: crash loop, {CLIENTS} clients on /api/services vs none",
            "restarts/s",
            load["restarts"],
            calm["restarts"],
            Target(op=">=", value=0.8),
        ),
        row(
            f"console: /api/services at 1,000 services, {CLIENTS} clients, vs fixed body",
            "requests/s",
            idle["requests"],
            fixed["requests"],
            Target(op=">=", value=500.0, absolute=True),
        ),
        row(
            "(ref) console: /api/services in the crash loop vs fixed body",
            "requests/s",
            load["requests"],
            fixed["requests"],
            None,
        ),
        row(
            "(ref) console: crash loop per CPU-second of the supervisor, 32 clients vs none",
            "restarts/CPU-s",
            load["per_cpu"],
            calm["per_cpu"],
            None,
        ),
        row(
            "(ref) console: crash loop, clients without gzip, vs none",
            "restarts/s",
            plain["restarts"],
            calm["restarts"],
            None,
        ),
        row(
            f"console: crash loop, {STREAMS} event streams vs none",
            "restarts/s",
            streams["restarts"],
            calm["restarts"],
            Target(op=">=", value=0.8),
        ),
        row(
            f"(ref) console: snapshots per event stream in the crash loop, {STREAMS} streams",
            "snapshots/s",
            streams["requests"] / STREAMS,
            0.0,
            None,
        ),
    ]
