"""Strategies, dependencies and restart intensity, in exact virtual time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus, Strategy

S = ServiceStatus


class Node:
    """A service that logs its lifecycle and can be told to fail."""

    def __init__(self, name: str, log: list[str], *, fail_at: tuple[float, ...] = ()) -> None:
        self.name = name
        self.log = log
        self.fail_at = list(fail_at)
        self.live = 0
        self.max_live = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.live += 1
        self.max_live = max(self.max_live, self.live)
        self.log.append(f"{trio.current_time():g} start {self.name}")
        try:
            await trio.sleep(0.5)  # takes a moment to become ready
            task_status.started()
            if self.fail_at:
                await trio.sleep_until(self.fail_at.pop(0))
                self.log.append(f"{trio.current_time():g} fail {self.name}")
                raise RuntimeError(f"{self.name} broke")
            await trio.sleep_forever()
        finally:
            self.live -= 1
            if not self.log[-1].endswith(f"fail {self.name}"):
                self.log.append(f"{trio.current_time():g} stop {self.name}")


async def test_one_for_all(autojump_clock: trio.testing.MockClock) -> None:
    """The middle service fails: siblings stop in reverse order, all restart in order."""
    log: list[str] = []
    nodes = [Node("a", log), Node("b", log, fail_at=(10,)), Node("c", log)]
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL)
    for node in nodes:
        m.add(node)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        assert trio.current_time() == 1.5
        await trio.sleep(20)
        n.cancel_scope.cancel()
    assert log[:3] == ["0 start a", "0.5 start b", "1 start c"]
    # b fails at 10; c then a stop; after b's 1 s delay all start in order with readiness
    assert log[3:9] == [
        "10 fail b",
        "10 stop c",
        "10 stop a",
        "11 start a",
        "11.5 start b",
        "12 start c",
    ]
    assert all(node.max_live == 1 for node in nodes)
    infos = {i.name: i for i in m.get_services_info()}
    assert infos["b"].restart_count == 1
    assert infos["b"].metric.error_count == 1
    assert infos["a"].metric.error_count == 0  # siblings are not charged a failure
    assert infos["a"].restart_count == 0
    assert infos["a"].metric.start_count == 2


async def test_rest_for_one(autojump_clock: trio.testing.MockClock) -> None:
    """Only the services started after the failing one are restarted with it."""
    log: list[str] = []
    nodes = [Node("a", log), Node("b", log, fail_at=(10,)), Node("c", log), Node("d", log)]
    m = trisup.Manager(strategy="rest_for_one")
    for node in nodes:
        m.add(node)
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await trio.sleep(20)
        n.cancel_scope.cancel()
    assert log[4:10] == [
        "10 fail b",
        "10 stop d",
        "10 stop c",
        "11 start b",
        "11.5 start c",
        "12 start d",
    ]
    assert m.get_service_info("a").metric.start_count == 1


async def test_manual_verbs_never_trigger_a_strategy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """restart_service under one-for-all restarts only that service."""
    log: list[str] = []
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL)
    for name in "abc":
        m.add(Node(name, log))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await m.restart_service("b")
        n.cancel_scope.cancel()
    counts = {i.name: i.metric.start_count for i in m.get_services_info()}
    assert counts == {"a": 1, "b": 2, "c": 1}


async def test_dependency_chain(autojump_clock: trio.testing.MockClock) -> None:
    """db <- api <- web: start in dependency order; a restart of api restarts web after it."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(Node("web", log), depends_on=["api"])  # registered first, starts last
    m.add(Node("api", log, fail_at=(10,)), depends_on=["db"])
    m.add(Node("db", log))
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        assert trio.current_time() == 1.5
        await trio.sleep(20)
        n.cancel_scope.cancel()
    assert log[:3] == ["0 start db", "0.5 start api", "1 start web"]
    assert log[3:6] == ["10 fail api", "10 stop web", "11 start api"]
    assert log[6] == "11.5 start web"  # once api is ready again
    # shutdown: dependents first
    assert log[-3:] == ["21.5 stop web", "21.5 stop api", "21.5 stop db"]


async def test_dependency_errors() -> None:
    """Unknown dependencies and cycles are ValueErrors naming them."""
    m = trisup.Manager()
    m.add(trisup.new_service("a", trio.sleep_forever), depends_on=["b"])  # b may come later
    with pytest.raises(ValueError, match=r"a -> b -> a|b -> a -> b"):
        m.add(trisup.new_service("b", trio.sleep_forever), depends_on=["a"])
    assert not m.has("b")
    with pytest.raises(ValueError, match="itself"):
        m.add(trisup.new_service("c", trio.sleep_forever), depends_on=["c"])
    with pytest.raises(TypeError, match="str"):
        m.add(trisup.new_service("c", trio.sleep_forever), depends_on="a")
    with pytest.raises(ValueError, match="unknown service 'b'"):
        await m.serve()


async def test_unknown_dependency_while_serving(autojump_clock: trio.testing.MockClock) -> None:
    """While serving, a dependency must already exist."""
    m = trisup.Manager()
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        with pytest.raises(ValueError, match="unknown service 'nope'"):
            m.add(trisup.new_service("x", trio.sleep_forever), depends_on=["nope"])
        assert not m.has("x")
        n.cancel_scope.cancel()


async def test_intensity_escalates_up_the_tree(autojump_clock: trio.testing.MockClock) -> None:
    """A leaf's failures exhaust the middle manager's intensity; the root restarts it."""
    log: list[str] = []
    middle_starts: list[float] = []

    def make_middle() -> trisup.Manager:
        middle = trisup.Manager("middle", intensity=2, period=10)
        middle.add(trisup.new_service("leaf", _crash_after, 1.0, log), restart_delay=0.5)
        return middle

    middle = make_middle()
    original_serve = middle.serve

    async def counting_serve(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        middle_starts.append(trio.current_time())
        await original_serve(task_status=task_status)

    root = trisup.Manager("root")
    root.add(trisup.new_service("middle", counting_serve), max_restarts=1)
    async with trio.open_nursery() as n:
        await n.start(root.serve)
        await root.wait_status("middle", S.FAILED)
        n.cancel_scope.cancel()
    # leaf crashes at 1, 2.5, 4.5: the third restart exceeds 2 in 10 s, middle gives up;
    # the root restarts it 1 s later, and the same happens again at 10 (max_restarts=1)
    assert log == ["1 crash", "2.5 crash", "4.5 crash", "6.5 crash", "8 crash", "10 crash"]
    assert middle_starts == [0, 5.5]
    info = root.get_service_info("middle")
    assert isinstance(info.error, trisup.RestartIntensityExceeded)
    assert info.error.manager == "middle"
    cause: BaseException | None = info.error.__cause__
    assert type(cause).__name__ == "ExceptionGroup"
    assert str(cause) == "recent failures in middle (3 sub-exceptions)"
    assert trio.current_time() == 10


async def _crash_after(t: float, log: list[str]) -> None:
    await trio.sleep(t)
    log.append(f"{trio.current_time():g} crash")
    raise ValueError("leaf crashed")


async def test_intensity_off_by_default(autojump_clock: trio.testing.MockClock) -> None:
    """Without intensity a flapping service never ends the manager."""
    log: list[str] = []
    m = trisup.Manager()
    m.add(
        trisup.new_service("f", _crash_after, 0.5, log),
        restart_delay=0.5,
        backoff_multiplier=1.0,
        max_restarts_in_window=0,
    )
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        await trio.sleep(99.75)  # starts at 0, 1, ..., 99; crashes half a second later
        info = m.get_service_info("f")
        assert (info.status, info.metric.start_count, info.restart_count) == (S.CRASHING, 100, 99)
        assert log == [f"{k + 0.5:g} crash" for k in range(100)]
        n.cancel_scope.cancel()


async def test_run_returns_error_for_intensity(autojump_clock: trio.testing.MockClock) -> None:
    """run() returns ERROR when the manager gives up."""
    m = trisup.Manager("m", intensity=0, period=1)
    log: list[str] = []
    m.add(trisup.new_service("f", _crash_after, 0.5, log))
    assert await m.run() is trisup.ExitStatus.ERROR
    assert trio.current_time() == 0.5


def test_manager_argument_errors() -> None:
    """Bad strategy, intensity or period are clear errors."""
    with pytest.raises(ValueError, match="strategy"):
        trisup.Manager(strategy="all_for_none")
    with pytest.raises(ValueError, match="intensity"):
        trisup.Manager(intensity=-1)
    with pytest.raises(ValueError, match="period"):
        trisup.Manager(period=0)
    with pytest.raises(TypeError, match="period"):
        trisup.Manager(period="5")  # type: ignore[arg-type]


async def test_shutdown_during_group_restart(autojump_clock: trio.testing.MockClock) -> None:
    """A shutdown while a group restart waits leaves no service looking alive."""
    log: list[str] = []
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL)
    m.add(Node("a", log))
    m.add(Node("b", log, fail_at=(2,)), restart_delay=10)
    with trio.move_on_after(5):
        await m.serve()
    statuses = {i.name: i.status for i in m.get_services_info()}
    assert statuses == {"a": S.IDLE, "b": S.ERROR}
    assert log[-2:] == ["2 fail b", "2 stop a"]
