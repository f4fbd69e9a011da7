"""Nested managers as groups: the tree's events, the stream's snapshot and ?group= routes."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import cast

import pytest
import trio
import trio.testing
from asgi_console import serving

import trisup
from trisup import events as ev
from trisup.http import ConsoleService
from trisup.http import _sse as sse
from trisup.http._state import ShownPhases

API = "/debug/supervisor/api"
POST = {"X-Trisup-Token": "-"}
Data = dict[str, object]


def _tree() -> tuple[trisup.Manager, trisup.Manager]:
    """app: db, jobs (a, sub (deep)); the console is added last by `serving`."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("db", trio.sleep_forever))
    jobs = trisup.Manager("jobs")
    jobs.add(trisup.new_service("a", trio.sleep_forever))
    sub = trisup.Manager("sub")
    sub.add(trisup.new_service("deep", trio.sleep_forever))
    jobs.add(sub)
    m.add(jobs)
    return m, jobs


class Stream:
    """``GET P/api/events`` called on the console's ASGI app; its messages as they come.

    ``blocked`` makes the app's ``send`` wait, as a client that stopped reading.
    """

    def __init__(self) -> None:
        self._body = b""
        self._more = trio.Event()
        self.blocked = False
        self._unblocked = trio.Event()
        self._gone = trio.Event()

    async def run(self, app: object, *, task_status: trio.TaskStatus[None]) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"{API}/events",
            "raw_path": f"{API}/events".encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8080")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }

        async def receive() -> Data:
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Data) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
                task_status.started()
                return
            while self.blocked:
                await self._unblocked.wait()
            self._body += cast("bytes", message.get("body", b""))
            self._more.set()

        await app(scope, receive, send)  # type: ignore[operator]  # an ASGI app

    def unblock(self) -> None:
        self.blocked = False
        self._unblocked.set()
        self._unblocked = trio.Event()

    def close(self) -> None:
        self._gone.set()

    async def message(self) -> tuple[str, Data]:
        """The next (event name, data)."""
        while b"\n\n" not in self._body:
            self._more = trio.Event()
            await self._more.wait()
        block, _, self._body = self._body.partition(b"\n\n")
        name, data = "message", None
        for line in block.decode().split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is None:  # retry: or a ping
            return await self.message()
        return name, data

    async def until(self, kind: str, **fields: object) -> Data:
        """The data of the next event of *kind* with these *fields*."""
        while True:
            name, data = await self.message()
            wanted = name == "message" and data["kind"] == kind
            if wanted and all(data[k] == v for k, v in fields.items()):
                return data


@asynccontextmanager
async def stream_of(console: ConsoleService) -> AsyncGenerator[Stream]:
    stream = Stream()
    async with trio.open_nursery() as nursery:
        await nursery.start(stream.run, console.app)
        yield stream
        stream.close()


def _rows(snapshot: Data) -> list[tuple[object, object, object]]:
    services = cast("list[Data]", snapshot["services"])
    return [(s["group"], s["name"], s["shown"]) for s in services]


async def test_manager_subscribe_tree_tags_each_event_with_its_group() -> None:
    """subscribe_tree follows nested managers, added and removed ones too, by path."""
    m, jobs = _tree()
    other = trisup.Manager("jobs")  # the same manager name elsewhere: told apart by path
    other.add(trisup.new_service("x", trio.sleep_forever))
    m.add(trisup.new_service("app", trio.sleep_forever))
    assert list(m.groups()) == ["", "jobs", "jobs/sub"]
    async with m.subscribe_tree() as tree:
        assert list(tree.sources()) == ["", "jobs", "jobs/sub"]
        assert tree.source("jobs") is jobs
        jobs.add(other, depends_on=["a"])
        other.add(trisup.new_service("y", trio.sleep_forever))
        seen: list[tuple[str, str, str]] = []
        while (item := tree.receive_nowait()) is not None:
            path, event = item
            assert isinstance(event, ev.ServiceAdded)
            seen.append((path, event.manager, event.service))
        assert seen == [("jobs", "jobs", "jobs"), ("jobs/jobs", "jobs", "y")]
        assert tree.source("jobs/jobs") is other
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await jobs.delete("jobs")  # a nested manager that never served
            nursery.cancel_scope.cancel()
        assert tree.source("jobs/jobs") is None
        order: list[tuple[str, ev.Event]] = []
        while (item := tree.receive_nowait()) is not None:
            order.append(item)
        assert {path for path, _ in order} == {"", "jobs", "jobs/sub", "jobs/jobs"}
        removed = next(
            i
            for i, (path, e) in enumerate(order)
            if path == "jobs" and isinstance(e, ev.ServiceRemoved) and e.service == "jobs"
        )
        assert all(path != "jobs/jobs" for path, _ in order[removed:])  # detached at once
    assert m.get_service_info("app").depends_on == ()
    assert jobs.get_service_info("sub").depends_on == ()


async def test_snapshot_and_events_name_each_group(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot lists every group's services; updates carry their group; the tree
    is followed as nested managers come and go."""
    monkeypatch.setattr(sse, "MAX_BUFFER", 256)
    m, jobs = _tree()
    with trio.fail_after(30):
        async with serving(m) as (console, client), stream_of(console) as stream:
            name, snap = await stream.message()
            assert name == "snapshot"
            assert set(snap) == {
                "manager",
                "now",
                "history",
                "token_required",
                "self",
                "services",
            }
            assert snap["manager"] == {"name": "app", "state": "serving"}
            assert snap["self"] == {"group": "", "name": "console"}
            assert _rows(snap) == [
                ("", "db", "running"),
                ("", "jobs", "running"),
                ("", "console", "running"),
                ("jobs", "a", "running"),
                ("jobs", "sub", "running"),
                ("jobs/sub", "deep", "running"),
            ]
            deep = cast("list[Data]", snap["services"])[-1]
            assert deep["depends_on"] == [] and deep["phase"] == "running"
            assert [p for _, p in cast("list[list[object]]", deep["timeline"])][-1] == "running"
            stop = await client.post(f"{API}/service/deep/stop?group=jobs/sub", headers=POST)
            assert stop.json() == {"status": "ok", "message": "service stopped, name=deep"}
            held = await stream.until("service", service="deep", shown="stopped")
            assert held["group"] == "jobs/sub"
            assert cast("Data", held["info"])["name"] == "deep"
            # a group added while serving: followed from its ServiceAdded on
            late = trisup.Manager("late")
            late.add(trisup.new_service("x", trio.sleep_forever))
            m.add(late)
            added = await stream.until("service", service="late")
            assert added["group"] == "" and cast("Data", added["info"])["name"] == "late"
            started = await stream.until("manager_started", group="late")
            assert started["manager"] == "late"
            while True:
                running = await stream.until("service", group="late", service="x")
                if cast("Data", running["info"])["status"] == "running":
                    break
            info = await client.get(f"{API}/service/x?group=late")
            assert info.json()["phase"] == "running"
            # and forgotten once removed
            await m.delete("late")
            removed = await stream.until("removed", service="late")
            assert (removed["group"], removed["shown"], removed["info"]) == ("", "removed", None)
            gone = await client.get(f"{API}/service/x?group=late")
            assert (gone.status_code, gone.json()) == (404, {"error": "group not found: late"})
            # a slow client loses only its own events, then gets a snapshot of the tree
            stream.blocked = True
            for _ in range(300):  # 4 events each: more than the stream's buffer holds (256)
                await jobs.restart_service("a")
            stream.unblock()
            while (await stream.message())[0] != "snapshot":
                pass
            assert stream.blocked is False
            resync = (await client.get(f"{API}/services")).json()
            assert [s["name"] for s in resync] == ["db", "jobs", "console"]


async def test_group_routes(autojump_clock: trio.testing.MockClock) -> None:
    """Reads and actions take ?group=; an unknown group is a 404 that names it."""
    m, jobs = _tree()
    async with serving(m) as (_, client):
        restart = await client.post(f"{API}/service/a/restart?group=jobs", headers=POST)
        assert restart.json() == {"status": "ok", "message": "service restarted, name=a"}
        assert jobs.get_service_info("a").metric.start_count == 2
        assert m.get_service_info("db").metric.start_count == 1
        deep = await client.get(f"{API}/service/deep", params={"group": "jobs/sub"})
        assert deep.json()["name"] == "deep"
        root = await client.get(f"{API}/service/db?group=")
        assert root.json()["name"] == "db"
        missing = await client.get(f"{API}/service/db?group=jobs")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": "service not found, name=db"},
        )
        for method, path in (
            ("GET", "a"),
            ("GET", "a/details"),
            ("GET", "a/output"),
            ("POST", "a/stop"),
        ):
            answer = await client.request(
                method, f"{API}/service/{path}?group=jobs/nope", headers=POST
            )
            assert (answer.status_code, answer.json()) == (
                404,
                {"error": "group not found: jobs/nope"},
            ), path
        assert jobs.get_service_info("a").stopped is False
        not_a_process = await client.get(f"{API}/service/a/output?group=jobs")
        assert not_a_process.json() == {"error": "service a is not a process: it has no output"}
        wrong = await client.get(f"{API}/service/a/stop?group=jobs")
        assert wrong.status_code == 405


def test_groups_lists_a_manager_once() -> None:
    """Manager.groups walks the tree breadth first and lists a manager nested in itself once."""
    m, jobs = _tree()
    jobs.add(m)  # a cycle: never served, but it must not make the walk endless
    assert m.groups() == {"": m, "jobs": jobs, "jobs/sub": m.groups()["jobs/sub"]}
    assert list(jobs.groups("x")) == ["x", "x/sub", "x/app"]


async def test_a_slow_reader_within_the_buffer_loses_nothing() -> None:
    """A client that stops reading for a while, within the stream's buffer, then gets
    every shown phase it missed, in order, in one update per service; no snapshot."""
    m, jobs = _tree()
    with trio.fail_after(30):
        async with serving(m) as (console, _), stream_of(console) as stream:
            name, _snap = await stream.message()
            assert name == "snapshot"
            stream.blocked = True
            before = jobs.get_service_info("a")
            async with m.subscribe_tree(max_buffer=10_000) as mine:
                for _ in range(100):  # about 400 events, over several ticks
                    await jobs.restart_service("a")
                    await trio.sleep(0.002)
                burst = mine.receive_all()
            stream.unblock()
            fold = ShownPhases()
            expected = [fold.seed(before, "jobs")]
            for path, event in burst:
                if isinstance(event, ev.ServiceEvent) and (path, event.service) == ("jobs", "a"):
                    now = fold.apply(event, None, path)
                    if now is not None and now != expected[-1]:
                        expected.append(now)
            points: list[str] = []
            while points != expected[1:]:
                kind, data = await stream.message()
                assert kind == "message", "no resync for a reader within the buffer"
                if data["kind"] == "service" and (data["group"], data["service"]) == ("jobs", "a"):
                    points += [p for _, p in cast("list[list[str]]", data["points"])]
                    assert points == expected[1 : len(points) + 1]
            assert len(points) == 200
