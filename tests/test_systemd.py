"""sd_notify against a real unix datagram socket: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus
from trisup.systemd import NotifyService, watchdog_interval

S = ServiceStatus
Received = list[tuple[float, str]]


async def _ready_after(t: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom")


@asynccontextmanager
async def notify_socket(monkeypatch: pytest.MonkeyPatch, address: str) -> AsyncGenerator[Received]:
    """Listen on *address* as $NOTIFY_SOCKET; collect (time, datagram) until the block ends."""
    received: Received = []
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind("\0" + address[1:] if address.startswith("@") else address)

        async def collect() -> None:
            while True:
                data = await sock.recv(4096)
                received.append((trio.current_time(), data.decode()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            yield received
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()


def _manager(notify_first: bool = True) -> trisup.Manager:
    m = trisup.Manager("app")
    if notify_first:
        m.add(NotifyService(m))
    m.add(trisup.new_service("warm", _ready_after, 2))
    m.add(trisup.new_service("worker", trio.sleep_forever))
    if not notify_first:
        m.add(NotifyService(m))
    return m


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("notify_first", [True, False])
async def test_ready_status_and_stopping(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    notify_first: bool,
) -> None:
    """READY=1 once the whole tree is ready, STATUS= summaries, STOPPING=1 at shutdown."""
    m = _manager(notify_first)
    async with notify_socket(monkeypatch, str(tmp_path / "notify")) as received:
        with trio.move_on_after(5):
            await m.serve()
    ready = [(t, text) for t, text in received if text.startswith("READY=1")]
    assert ready == [(2, "READY=1\nSTATUS=app: 3 services, 3 running")]
    assert received[-1] == (5, "STOPPING=1\nSTATUS=stopping")
    summaries = [(t, text) for t, text in received if text.startswith("STATUS=")]
    assert len(received) == len(summaries) + len(ready) + 1  # nothing else (no WATCHDOG)
    if notify_first:  # a summary at once, then at most one a second while the others start
        # warm's spawn (it shows starting) and the first summary share a batch: either order
        assert summaries[0] in (
            (0, "STATUS=app: 3 services, 1 running, 2 idle"),
            (0, "STATUS=app: 3 services, 1 running, 1 starting, 1 idle"),
        )
        assert [t for t, _ in summaries[1:]] in ([], [1], [1, 2], [2])
        assert summaries[-1][1] in (
            "STATUS=app: 3 services, 1 running, 1 starting, 1 idle",
            "STATUS=app: 3 services, 2 running, 1 starting",
            "STATUS=app: 3 services, 2 running, 1 idle",
        )
    else:
        assert summaries == []


async def test_ready_waits_out_a_backoff_but_not_a_held_service(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A service in backoff is not ready; one stopped by hand does not count."""
    tries: list[float] = []

    async def fails_once() -> None:
        tries.append(trio.current_time())
        if len(tries) == 1:
            raise ValueError("first try")
        await trio.sleep_forever()

    m = trisup.Manager("app")
    m.add(NotifyService(m))
    m.add(trisup.new_service("retry", fails_once), restart_delay=1.5)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    async with notify_socket(monkeypatch, str(tmp_path / "notify")) as received:
        with trio.move_on_after(3):
            await m.serve()
    assert tries == [0, 1.5]
    ready = [(t, text) for t, text in received if text.startswith("READY=1")]
    assert ready == [(1.5, "READY=1\nSTATUS=app: 3 services, 2 running, 1 stopped")]
    backoff = [t for t, text in received if text.endswith("1 running, 1 backoff, 1 stopped")]
    # retry's first failure and the first summary share t=0: Trio orders them at random,
    # so the backoff shows in the first summary or in the next one, a second later
    assert backoff in ([0], [1])


async def test_watchdog_pings(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """WATCHDOG=1 goes out every half WATCHDOG_USEC while the manager serves."""
    monkeypatch.setenv("WATCHDOG_USEC", "1500000")
    m = _manager()
    async with notify_socket(monkeypatch, str(tmp_path / "notify")) as received:
        with trio.move_on_after(5):
            await m.serve()
    pings = [t for t, text in received if text == "WATCHDOG=1"]
    assert pings == [0, 0.75, 1.5, 2.25, 3, 3.75, 4.5]


async def test_abstract_socket_and_status_rate(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An @name socket is abstract; a flapping service's STATUS comes at most once a second."""
    m = trisup.Manager("app")
    m.add(NotifyService(m, status_interval=1))
    m.add(
        trisup.new_service("flappy", _fail_after, 0.25),
        restart_delay=0.25,
        backoff_multiplier=1,
        max_restarts_in_window=0,
    )
    address = f"@trisup-test-{os.getpid()}"
    async with notify_socket(monkeypatch, address) as received:
        with trio.move_on_after(10):
            await m.serve()
    # flappy's spawn and the first summary share a batch: Trio orders them at random
    ready = received.index((0, "READY=1\nSTATUS=app: 2 services, 2 running"))
    assert received[:ready] in (
        [],
        [(0, "STATUS=app: 2 services, 1 running, 1 idle")],
        [(0, "STATUS=app: 2 services, 1 running, 1 starting")],
    )
    # flappy changes every 0.25 s: a summary every second, never more often; at each
    # whole second its backoff ends, so the phases shown alternate
    statuses = [(t, text) for t, text in received[ready + 1 :] if text.startswith("STATUS=app")]
    backoff = "STATUS=app: 2 services, 1 running, 1 backoff"
    running = "STATUS=app: 2 services, 2 running"
    assert statuses == [(t, backoff if t % 2 else running) for t in range(1, 10)]
    assert received[-1] == (10, "STOPPING=1\nSTATUS=stopping")


async def test_stopped_by_hand_sends_no_stopping(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only the manager's shutdown sends STOPPING=1, not a stop of the notifier itself."""
    m = _manager()
    async with (
        notify_socket(monkeypatch, str(tmp_path / "notify")) as received,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(m.serve)
        await trio.sleep(3)
        await m.stop_service("systemd-notify")
        await trio.testing.wait_all_tasks_blocked()
        assert not any("STOPPING" in text for _, text in received)
        nursery.cancel_scope.cancel()


async def test_without_notify_socket(autojump_clock: trio.testing.MockClock) -> None:
    """Without $NOTIFY_SOCKET the service is ready at once and does nothing."""
    m = _manager()
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        assert m.get_service_info("systemd-notify").status is S.RUNNING
        nursery.cancel_scope.cancel()


async def test_unreachable_socket_fails_the_service(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A $NOTIFY_SOCKET nobody listens on is an error, so the restart policy applies."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    m = trisup.Manager("app")
    m.add(NotifyService(m), restart_policy=trisup.RestartPolicy.NEVER)
    with trio.move_on_after(1):
        await m.serve()
    info = m.get_service_info("systemd-notify")
    assert info.status is S.FAILED
    assert type(info.error) is FileNotFoundError  # connecting to a path nobody bound


def test_watchdog_interval() -> None:
    """Half of WATCHDOG_USEC, unless unset, malformed, zero or meant for another pid."""
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": me}) == 0.5
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}) is None
    for usec in ("", "0", "-5", "1e6", "soon"):
        assert watchdog_interval({"WATCHDOG_USEC": usec}) is None
    assert watchdog_interval({}) is None


def test_constructor_checks() -> None:
    """Wrong arguments are refused with their names."""
    m = trisup.Manager()
    with pytest.raises(TypeError, match="manager"):
        NotifyService(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        NotifyService(m, name="")
    with pytest.raises(TypeError, match="status_interval"):
        NotifyService(m, status_interval="1")  # type: ignore[arg-type]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="status_interval"):
            NotifyService(m, status_interval=bad)
    assert repr(NotifyService(m)) == "<trisup.systemd.NotifyService 'systemd-notify'>"
