"""The console as a real server on a loopback port: HTTP, event streams, shutdown."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import cast

import httpx
import pytest
import trio

import trisup
from trisup import ServiceStatus
from trisup import events as ev
from trisup._health import api_dict
from trisup.events import ServiceReady
from trisup.http import ConsoleService
from trisup.http import _sse as sse
from trisup.http._state import ShownPhases

S = ServiceStatus
PREFIX = "/debug/supervisor"
POST = {"X-Trisup-Token": "-"}


@asynccontextmanager
async def running(
    manager: trisup.Manager,
) -> AsyncGenerator[tuple[ConsoleService, httpx.AsyncClient]]:
    """Serve *manager* with a console on a free loopback port; yield it and a client."""
    console = ConsoleService(manager, bind="127.0.0.1:0")
    manager.add(console)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        (url,) = console.urls
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", url), url
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield console, client
        nursery.cancel_scope.cancel()


class EventStream:
    """A minimal server-sent-events client over a raw HTTP/1.1 connection (chunked)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._raw = b""
        self._body = b""
        self._ended = False
        self.status = 0
        self.headers: dict[str, str] = {}

    async def _more(self) -> bool:
        data = await self._stream.receive_some()
        self._raw += data
        return bool(data)

    async def _raw_line(self) -> bytes:
        while b"\r\n" not in self._raw:
            if not await self._more():
                raise EOFError
        line, _, self._raw = self._raw.partition(b"\r\n")
        return line

    async def head(self) -> None:
        """Read the status line and headers."""
        self.status = int((await self._raw_line()).split()[1])
        while line := await self._raw_line():
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()

    async def _chunk(self) -> bool:
        try:
            size = int(await self._raw_line(), 16)
        except EOFError:
            return False
        while len(self._raw) < size + 2:
            if not await self._more():
                return False
        self._body += self._raw[:size]
        self._raw = self._raw[size + 2 :]
        return size > 0

    async def line(self) -> str | None:
        """The next line of the body, or None at its end."""
        while b"\n" not in self._body:
            if self._ended or not await self._chunk():
                self._ended = True
                return None
        line, _, self._body = self._body.partition(b"\n")
        return line.decode()

    async def message(self) -> tuple[str, dict[str, object]] | None:
        """The next (event name, data), or None at the end of the stream."""
        name, data = "message", ""
        while (line := await self.line()) is not None:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and data:
                return name, json.loads(data)
        return None

    async def service(
        self, name: str, done: Callable[[dict[str, object]], bool]
    ) -> tuple[list[str], dict[str, object]]:
        """The shown phases *name*'s updates went through until one is *done*, and that one."""
        points: list[str] = []
        while True:
            data = await self.until("service", service=name)
            points += [p for _, p in cast("list[list[str]]", data["points"])]
            if done(data):
                return points, data

    async def until(self, kind: str, **fields: object) -> dict[str, object]:
        """The data of the next event of *kind* with these *fields*; the stream must not end."""
        while True:
            message = await self.message()
            assert message is not None, f"the stream ended before a {kind!r} event"
            name, data = message
            assert name == "message"
            if data["kind"] == kind and all(data[k] == v for k, v in fields.items()):
                return data


@asynccontextmanager
async def event_stream(console: ConsoleService, method: str = "GET") -> AsyncGenerator[EventStream]:
    """Open the console's event stream."""
    port = int(console.urls[0].rpartition(":")[2])
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        request = f"{method} {PREFIX}/api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        await stream.send_all(request.encode())
        events = EventStream(stream)
        await events.head()
        yield events


def _manager() -> trisup.Manager:
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    return m


async def test_serves_on_a_loopback_port() -> None:
    """Ready once listening; the API answers over TCP."""
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (console, client):
            host, _, port = console.urls[0].removeprefix("http://").rpartition(":")
            assert host == "127.0.0.1" and int(port) > 0
            assert console.url == f"{console.urls[0]}{PREFIX}/"
            response = await client.get(f"{PREFIX}/api/services")
            assert [s["name"] for s in response.json()] == ["worker", "console"]
            response = await client.post(f"{PREFIX}/api/service/worker/stop", headers=POST)
            assert response.json() == {"status": "ok", "message": "service stopped, name=worker"}
            assert m.get_service_info("worker").status is S.STOPPED
            page = await client.get(f"{PREFIX}/")
            assert page.status_code == 200
            assert "server" not in page.headers
    assert console.urls == []


async def test_event_stream() -> None:
    """The stream starts with a snapshot, then sends each service's events as one update."""
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (console, client), event_stream(console) as stream:
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
            first = await stream.message()
            assert first is not None
            name, snapshot = first
            assert name == "snapshot"
            assert snapshot["manager"] == {"name": "app", "state": "serving"}
            assert snapshot["token_required"] is False
            assert snapshot["self"] == {"group": "", "name": "console"}
            assert "phases" not in snapshot and "timelines" not in snapshot
            services = cast("list[dict[str, object]]", snapshot["services"])
            assert [(s["group"], s["name"], s["phase"], s["shown"]) for s in services] == [
                ("", "worker", "running", "running"),
                ("", "console", "running", "running"),
            ]
            await client.post(f"{PREFIX}/api/service/worker/stop", headers=POST)
            # an update per service and write: the shown phases its events went through
            # (the stop is requested: stopping; the service is held: stopped; its
            # instance exits: idle, shown stopped while held) and its latest info
            points, stopped = await stream.service(
                "worker", lambda d: cast("dict[str, object]", d["info"])["phase"] == "idle"
            )
            assert points == ["stopping", "stopped"]
            assert (stopped["group"], stopped["shown"]) == ("", "stopped")
            info = cast("dict[str, object]", stopped["info"])
            assert (info["status"], info["stopped"]) == ("stopped", True)
            assert isinstance(stopped["ts"], float) and isinstance(stopped["events"], int)
            assert stopped["message"] == "worker: phase stopping -> idle"
            await client.post(f"{PREFIX}/api/service/worker/start", headers=POST)
            points, started = await stream.service(
                "worker", lambda d: cast("dict[str, object]", d["info"])["phase"] == "running"
            )
            assert points[-1] == "running" and "stopped" not in points
            assert started["shown"] == "running"
            await m.delete("worker")
            removed = await stream.until("removed")
            assert (removed["service"], removed["shown"], removed["info"]) == (
                "worker",
                "removed",
                None,
            )


async def test_stream_heartbeat_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet stream sends comment pings; streams beyond the limit get 503."""
    monkeypatch.setattr(sse, "HEARTBEAT", 0.05)
    monkeypatch.setattr(sse, "MAX_STREAMS", 1)
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (console, client):
            async with event_stream(console) as stream:
                while await stream.line() != ": ping":
                    pass
                second = await client.get(f"{PREFIX}/api/events")
                assert second.status_code == 503
                assert second.json() == {"error": "too many event streams"}
            # the slot is free again once the server has seen the close
            while True:
                async with event_stream(console, "HEAD") as again:
                    if again.status == 200:
                        break
                await trio.sleep(0.01)


async def test_stopping_the_console_ends_streams_at_once() -> None:
    """A stopped console ends its event streams and does not wait out its grace."""
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (console, _), event_stream(console) as stream:
            first = await stream.message()
            assert first is not None and first[0] == "snapshot"
            start = trio.current_time()
            await m.stop_service("console")
            assert trio.current_time() - start < 1
            while await stream.line() is not None:
                pass  # the stream ends instead of hanging
            assert m.get_service_info("console").status is S.STOPPED


async def test_the_console_stops_itself() -> None:
    """A console told to stop itself answers first, then stops."""
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (_, client):
            response = await client.post(f"{PREFIX}/api/service/console/stop", headers=POST)
            assert response.json() == {"status": "ok", "message": "service stopped, name=console"}
            await m.wait_status("console", S.STOPPED)
            with pytest.raises(httpx.TransportError):
                await client.get(f"{PREFIX}/api/services")


async def test_chunked_body_over_the_limit() -> None:
    """A chunked POST body is read only up to the limit, then refused with 413."""
    m = _manager()
    with trio.fail_after(10):
        async with running(m) as (console, _):
            port = int(console.urls[0].rpartition(":")[2])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                chunk = b"200\r\n" + b"y" * 512 + b"\r\n"
                await stream.send_all(
                    b"POST " + PREFIX.encode() + b"/api/service/worker/reset HTTP/1.1\r\n"
                    b"Host: 127.0.0.1\r\nX-Trisup-Token: -\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunk * 3
                    + b"0\r\n\r\n"
                )
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive_some()
            assert answer.startswith(b"HTTP/1.1 413 ")


async def test_a_port_in_use_fails_the_console() -> None:
    """A console that cannot listen fails like any service and is restarted."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    m = _manager()
    console = ConsoleService(m, bind=f"127.0.0.1:{port}")
    m.add(console, restart_delay=0.25)
    try:
        with trio.fail_after(10):
            async with m.subscribe() as events, trio.open_nursery() as nursery:
                nursery.start_soon(m.serve)
                await m.wait_status("console", S.CRASHING)
                assert "in use" in m.get_service_info("console").metric.last_error
                holder.close()
                async for event in events:
                    if isinstance(event, ServiceReady) and event.service == "console":
                        break
                assert console.urls == [f"http://127.0.0.1:{port}"]
                await m.restart_service("console")  # the old socket is closed: same port
                async for event in events:
                    if isinstance(event, ServiceReady) and event.service == "console":
                        break
                assert console.urls == [f"http://127.0.0.1:{port}"]
                nursery.cancel_scope.cancel()
    finally:
        holder.close()


def _expected_points(events: list[tuple[str, ev.Event]], before: trisup.ServiceInfo) -> list[str]:
    """The shown phases *before*'s service goes through in *events*, repeats dropped."""
    name = before.name
    fold = ShownPhases()
    points = [fold.seed(before)]
    for path, event in events:
        if isinstance(event, ev.ServiceEvent) and event.service == name:
            now = fold.apply(event, None, path)
            if now is not None and now != points[-1]:
                points.append(now)
    return points[1:]


async def test_a_burst_is_one_update_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events within a tick arrive as one update per service: every shown phase they went
    through in order, the latest info; the stream ends at once when the client leaves."""
    monkeypatch.setattr(sse, "TICK", 1.0)
    monkeypatch.setattr(sse, "MAX_STREAMS", 1)
    m = _manager()
    m.add(trisup.new_service("other", trio.sleep_forever))
    with trio.fail_after(20):
        async with running(m) as (console, _):
            async with event_stream(console) as stream:
                first = await stream.message()
                assert first is not None and first[0] == "snapshot"
                worker_before = m.get_service_info("worker")
                other_before = m.get_service_info("other")
                async with m.subscribe_tree(max_buffer=10_000) as mine:
                    for _ in range(3):
                        await m.restart_service("worker")
                    await m.restart_service("other")
                    burst = mine.receive_all()
                mine_ = [e for _, e in burst if isinstance(e, ev.ServiceEvent)]
                count = sum(e.service == "worker" for e in mine_)
                updates: dict[str, dict[str, object]] = {}
                while set(updates) != {"worker", "other"}:
                    message = await stream.message()
                    assert message is not None and message[0] == "message"
                    data = message[1]
                    assert data["kind"] == "service" and data["service"] not in updates
                    updates[cast("str", data["service"])] = data
                worker = updates["worker"]
                points = [p for _, p in cast("list[list[str]]", worker["points"])]
                assert points == _expected_points(burst, worker_before)
                assert points == ["stopping", "running"] * 3  # (a sleeper starts at once)
                times = [t for t, _ in cast("list[list[float]]", worker["points"])]
                assert times == sorted(times)
                assert worker["events"] == count
                assert worker["shown"] == "running" and worker["group"] == ""
                info = cast("dict[str, object]", worker["info"])
                assert (info["start_count"], info["phase"]) == (4, "running")  # the latest
                last = next(e for e in reversed(mine_) if e.service == "worker")
                assert worker["message"] == last.message() == "service worker ready"
                other = updates["other"]
                assert [p for _, p in cast("list[list[str]]", other["points"])] == (
                    _expected_points(burst, other_before)
                )
            # gone mid-tick: the slot is free again well before the next tick would write
            start = trio.current_time()
            while True:
                async with event_stream(console, "HEAD") as again:
                    if again.status == 200:
                        break
                await trio.sleep(0.01)
            assert trio.current_time() - start < 0.9


async def test_updates_are_encoded_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of many services: infos read on the loop, `api_dict` and JSON in a thread."""
    monkeypatch.setattr(sse, "TICK", 0.5)
    m = trisup.Manager("app")
    names = [f"w{i}" for i in range(sse.THREAD_SERVICES + 2)]
    for name in names:
        m.add(trisup.new_service(name, trio.sleep_forever))
    converted: list[int] = []
    read: list[int] = []
    convert = api_dict

    def recorded(info: trisup.ServiceInfo) -> dict[str, object]:
        converted.append(threading.get_ident())
        return convert(info)

    take = m.get_service_info

    def reading(name: str) -> trisup.ServiceInfo:
        read.append(threading.get_ident())
        return take(name)

    monkeypatch.setattr("trisup.http._sse.api_dict", recorded)
    m.get_service_info = reading  # type: ignore[method-assign]
    with trio.fail_after(20):
        async with running(m) as (console, _), event_stream(console) as stream:
            first = await stream.message()
            assert first is not None and first[0] == "snapshot"
            converted.clear()
            read.clear()
            for name in names:
                await m.restart_service(name)
            seen: set[str] = set()
            while seen != set(names):
                data = await stream.until("service")
                seen.add(cast("str", data["service"]))
    loop = threading.get_ident()
    assert read and all(t == loop for t in read)
    assert len(converted) >= len(names) and all(t != loop for t in converted)
