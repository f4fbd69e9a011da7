"""Regression tests for issue 11: racing verbs, tree order, startup, start_timeout, RestartNow.

One test (or a small parametrized group) per defect of the issue, each written from
its scenario and the race rules of SPEC §5, observed through the public API in
virtual time. "Never two instances" is checked with a counter that each service
body raises on entry and lowers in a ``finally`` after its cleanup.

Every test serves through `serving`, which bounds the whole block in virtual time and
requires ``serve`` to return once cancelled. Service bodies wait in `forever`, which
`serving` releases when the block fails or ``serve`` does not return in time: an
instance the manager lost track of (and shielded) then ends, so a regression fails
the test instead of hanging it.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

import trisup
import trisup.events as ev
from trisup import RestartPolicy, ServiceStatus, Strategy

S = ServiceStatus
LIMIT = 30.0  # virtual seconds: the default bound of a test's serve block
# The race tests register their services with ON_FAILURE: a body that `serving`
# released then ends its runner (a lost instance under ALWAYS would restart for ever).
ONCE = RestartPolicy.ON_FAILURE

_release: list[trio.Event] = []  # one per test: set, it ends every service body


@pytest.fixture(autouse=True)
def _fresh_release() -> Iterator[None]:
    _release[:] = [trio.Event()]
    yield
    _release.clear()


async def forever() -> None:
    """A service body's "run until stopped" (it returns only once a test gave up)."""
    await _release[0].wait()


@asynccontextmanager
async def serving(m: trisup.Manager, *, limit: float = LIMIT) -> AsyncGenerator[trio.Nursery]:
    """Serve *m*; enter once startup is done; on leaving, cancel serve and require it to return.

    Startup, the block and the shutdown are bounded by *limit*. When the block fails
    or serve has not returned within *limit*, every service body is released, so a
    regression fails the test (`trio.TooSlowError` or the failed assertion) instead of
    hanging it.
    """
    returned = trio.Event()
    late = False

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await m.serve(task_status=task_status)
        finally:
            returned.set()

    async def watchdog() -> None:
        nonlocal late
        with trio.move_on_after(limit, shield=True):
            await returned.wait()
            return
        late = True
        _release[0].set()

    async with trio.open_nursery() as watch:
        watch.start_soon(watchdog)
        with trio.fail_after(limit):
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(serve)
                    yield nursery
                except BaseException:
                    _release[0].set()  # before the nursery waits for what it holds
                    raise
                nursery.cancel_scope.cancel()
    assert not late, f"serve did not return within {limit:g}s"


class Live:
    """Counts the live instances of one name, across every service registered under it."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.entries: list[float] = []  # when each instance entered serve

    @contextmanager
    def instance(self) -> Generator[None]:
        """Hold one live instance for the duration of the block."""
        self.now += 1
        self.most = max(self.most, self.now)
        self.entries.append(trio.current_time())
        try:
            yield
        finally:
            self.now -= 1


def body(live: Live, *, cleanup: float = 0.0) -> Callable[..., Awaitable[None]]:
    """A service ready at once that runs until stopped, then cleans up (shielded) for *cleanup*."""

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with live.instance():
            try:
                task_status.started()
                await forever()
            finally:
                if cleanup:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(cleanup)

    return serve


async def call(m: trisup.Manager, verb: str, name: str) -> str:
    """Run a control verb; return ``"ok"`` or the name of the `SupervisorError` it raised."""
    try:
        if verb == "start":
            await m.start_service(name)
        elif verb == "stop":
            await m.stop_service(name)
        elif verb == "restart":
            await m.restart_service(name)
        elif verb == "reset":
            m.reset_service(name)
        elif verb == "delete":
            await m.delete(name)
        elif verb == "restart_services":
            await m.restart_services()
        elif verb == "remove_services":
            await m.remove_services()
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(verb)
    except trisup.SupervisorError as exc:
        return type(exc).__name__
    return "ok"


def drain(events: ev.Subscription) -> list[ev.Event]:
    """Every event received so far."""
    out: list[ev.Event] = []
    while (event := events.receive_nowait()) is not None:
        out.append(event)
    return out


# ------------------------------------------------------------- concurrent verbs (1-5)


@pytest.mark.parametrize("order", ["same_batch", "delete_first", "verb_first"])
@pytest.mark.parametrize("verb", ["start", "restart", "restart_services"])
async def test_1_delete_wins_over_a_racing_start(
    verb: str, order: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Delete and a start in the same tick: one instance, the name freed after the cleanup."""
    live = Live()
    m = trisup.Manager()
    m.add(trisup.new_service("s", body(live, cleanup=0.5)), restart_policy=ONCE)
    results: dict[str, str] = {}
    returned: dict[str, float] = {}

    async def run(which: str) -> None:
        results[which] = await call(m, which, "s")
        returned[which] = trio.current_time()

    async with serving(m):
        t0 = trio.current_time()
        first, second = (verb, "delete") if order == "verb_first" else ("delete", verb)
        async with trio.open_nursery() as verbs:
            verbs.start_soon(run, first)
            if order != "same_batch":
                await trio.testing.wait_all_tasks_blocked()
            verbs.start_soon(run, second)
            await trio.sleep(0.25)  # the old instance is in its cleanup
            assert m.has("s")
            assert m.get_service_info("s").phase is trisup.Phase.STOPPING
            with pytest.raises(trisup.ServiceAlreadyExists):
                m.add(trisup.new_service("s", body(live)))
        # delete wins over every other request: the racing verb returned, or found
        # the name already being deleted (SPEC §5); nothing restarted it
        assert results["delete"] == "ok"
        assert results[verb] in {"ok", "ServiceNotFound"}
        assert returned["delete"] == t0 + 0.5
        await trio.testing.wait_all_tasks_blocked()
        assert not m.has("s")
        assert live.now == 0
        m.add(trisup.new_service("s", body(live)), restart_policy=ONCE)
        await m.wait_status("s", S.RUNNING)
        await trio.sleep(1)
        assert (live.now, live.most) == (1, 1)
    assert live.now == 0


async def test_2_a_later_stop_wins_over_a_start_waiting_for_the_old_instance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """stop (1 s cleanup), a start waiting for it, then a stop: stopped, nothing runs."""
    live = Live()
    m = trisup.Manager()
    m.add(trisup.new_service("s", body(live, cleanup=1)), restart_policy=ONCE)
    results: dict[str, str] = {}
    returned: dict[str, float] = {}

    async def run(label: str, verb: str) -> None:
        results[label] = await call(m, verb, "s")
        returned[label] = trio.current_time()

    async with serving(m):
        async with trio.open_nursery() as verbs:
            verbs.start_soon(run, "A", "stop")
            await trio.testing.wait_all_tasks_blocked()
            verbs.start_soon(run, "B", "start")
            await trio.testing.wait_all_tasks_blocked()
            verbs.start_soon(run, "C", "stop")
        assert results == {"A": "ok", "B": "ok", "C": "ok"}
        # A and C wait for the instance they stopped; B returns once C supersedes it
        assert (returned["A"], returned["C"]) == (1, 1)
        assert returned["B"] <= 1
        await trio.sleep(5)
        info = m.get_service_info("s")
        assert (info.status, info.stopped, info.phase) == (S.STOPPED, True, trisup.Phase.IDLE)
        assert info.metric.start_count == 1
        assert (live.now, live.most) == (0, 1)


def self_restarting(
    m: trisup.Manager, live: Live, go: trio.Event
) -> Callable[..., Awaitable[None]]:
    """A service whose first instance restarts itself once *go* is set; 0.5 s cleanup."""

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with live.instance():
            try:
                task_status.started()
                if len(live.entries) == 1:
                    await go.wait()
                    await m.restart_service("s")  # from inside: requests and returns
                await forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.5)

    return serve


@pytest.mark.parametrize("operator", ["stop", "delete"])
async def test_3_an_outside_stop_wins_over_a_self_restart(
    operator: str, autojump_clock: trio.testing.MockClock
) -> None:
    """An operator's stop (or delete) during a self-restart returns in time and wins."""
    live = Live()
    go = trio.Event()
    m = trisup.Manager()
    m.add(trisup.new_service("s", self_restarting(m, live, go)), restart_policy=ONCE)
    async with serving(m):
        go.set()
        await trio.testing.wait_all_tasks_blocked()  # the restart is requested
        t0 = trio.current_time()
        assert m.get_service_info("s").phase is trisup.Phase.STOPPING
        # the stop is the latest request: it wins, and waits only for the cleanup
        assert await call(m, operator, "s") == "ok"
        assert trio.current_time() == t0 + 0.5
        await trio.sleep(5)
        if operator == "delete":
            assert not m.has("s")
        else:
            info = m.get_service_info("s")
            assert (info.status, info.phase) == (S.STOPPED, trisup.Phase.IDLE)
            assert info.metric.start_count == 1
        assert (live.now, live.most) == (0, 1)


async def test_4_an_outside_start_during_a_self_restart_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """start_service during a self-restart returns once the new instance entered serve."""
    live = Live()
    go = trio.Event()
    m = trisup.Manager()
    m.add(trisup.new_service("s", self_restarting(m, live, go)), restart_policy=ONCE)
    async with serving(m):
        go.set()
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        assert await call(m, "start", "s") == "ok"
        assert trio.current_time() == t0 + 0.5
        assert live.entries == [t0, t0 + 0.5]
        await trio.sleep(5)
        info = m.get_service_info("s")
        assert (info.status, info.phase) == (S.RUNNING, trisup.Phase.RUNNING)
        assert info.metric.start_count == 2
        assert (live.now, live.most) == (1, 1)


@pytest.mark.parametrize("verb", ["delete", "remove_services"])
async def test_5_a_self_delete_frees_the_name_only_after_the_cleanup(
    verb: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A service deleting itself stays registered (STOPPING) until its cleanup ends."""
    live = Live()
    go = trio.Event()
    m = trisup.Manager()

    async def deleting(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with live.instance():
            try:
                task_status.started()
                await go.wait()
                assert await call(m, verb, "s") == "ok"  # from inside: requests, returns
                await forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.5)

    m.add(trisup.new_service("s", deleting), restart_policy=ONCE)
    async with serving(m):
        go.set()
        await trio.testing.wait_all_tasks_blocked()
        assert m.has("s")
        assert m.get_service_info("s").phase is trisup.Phase.STOPPING
        with pytest.raises(trisup.ServiceAlreadyExists):
            m.add(trisup.new_service("s", body(live)))
        await trio.sleep(0.25)
        assert m.has("s")
        await trio.sleep(0.25)
        await trio.testing.wait_all_tasks_blocked()
        assert not m.has("s")
        assert live.now == 0
        m.add(trisup.new_service("s", body(live)), restart_policy=ONCE)
        await m.wait_status("s", S.RUNNING)
        await trio.sleep(1)
        assert m.get_service_info("s").metric.start_count == 1
        assert (live.now, live.most) == (1, 1)


# ------------------------------------------------------------- dependencies (6-7)


def dependency(live: Live, *, fails: bool) -> Callable[..., Awaitable[None]]:
    """A dependency, ready at once; with *fails*, its first instance fails at t=1."""

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with live.instance():
            task_status.started()
            if fails and len(live.entries) == 1:
                await trio.sleep(1)
                raise ValueError("db broke")
            await forever()

    return serve


@pytest.mark.parametrize("verb", ["start", "restart"])
@pytest.mark.parametrize("dep_state", ["stopped", "failed"])
async def test_6_start_of_a_service_whose_dependency_is_down_returns(
    dep_state: str, verb: str, autojump_clock: trio.testing.MockClock
) -> None:
    """start/restart return at once when the dependency is down; the service waits on it."""
    db, app = Live(), Live()
    m = trisup.Manager()
    policy = RestartPolicy.NEVER if dep_state == "failed" else RestartPolicy.ALWAYS
    m.add(
        trisup.new_service("db", dependency(db, fails=dep_state == "failed")), restart_policy=policy
    )
    m.add(trisup.new_service("app", body(app)), depends_on=["db"])
    async with serving(m):
        await trio.sleep(1)
        if dep_state == "stopped":
            await m.stop_service("db")
        await trio.testing.wait_all_tasks_blocked()
        assert m.get_service_info("db").status is (
            S.STOPPED if dep_state == "stopped" else S.FAILED
        )
        if verb == "start":
            await m.stop_service("app")
        t0 = trio.current_time()
        assert await call(m, verb, "app") == "ok"
        assert trio.current_time() == t0  # it returned once it waits on db
        await trio.sleep(10)
        info = m.get_service_info("app")
        assert (info.phase, info.status, info.stopped) == (
            trisup.Phase.WAITING_DEPS,
            S.IDLE,
            False,
        )
        assert info.metric.start_count == 1
        assert app.now == 0
        await m.start_service("db")
        await m.wait_status("app", S.RUNNING)
        assert m.get_service_info("app").metric.start_count == 2
        assert (app.now, app.most) == (1, 1)


async def test_6_http_start_of_a_service_whose_dependency_is_stopped_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """POST .../start of a service whose dependency is stopped answers (it waits on it)."""
    from trisup.http import ConsoleService

    db, app = Live(), Live()
    m = trisup.Manager("app")
    m.add(trisup.new_service("db", dependency(db, fails=False)))
    m.add(trisup.new_service("app", body(app)), depends_on=["db"])
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    transport = httpx.ASGITransport(app=console.app)
    async with serving(m):
        await m.stop_service("db")
        await m.stop_service("app")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8080"
        ) as client:
            response = await client.post(
                "/debug/supervisor/api/service/app/start", headers={"X-Trisup-Token": "-"}
            )
        assert response.status_code == 200
        assert m.get_service_info("app").phase is trisup.Phase.WAITING_DEPS


async def test_7_a_dependency_failing_before_ready_does_not_block_startup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dependency failing before ready: serve still starts, hooks run, later services run."""
    other = Live()
    hooks: list[float] = []

    async def broken(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise ValueError("db cannot start")

    async def app(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await forever()

    async def plain() -> None:
        with other.instance():
            await forever()

    m = trisup.Manager()
    m.add(trisup.new_service("db", broken), restart_delay=100)
    m.add(trisup.new_service("app", app), depends_on=["db"])
    m.add(trisup.new_service("other", plain))
    m.after_start(lambda: hooks.append(trio.current_time()))
    async with serving(m):
        assert trio.current_time() == 0
        assert hooks == [0]
        assert other.entries == [0]
        assert m.get_service_info("other").status is S.RUNNING
        db_info = m.get_service_info("db")
        assert (db_info.phase, db_info.status) == (trisup.Phase.BACKOFF, S.CRASHING)
        app_info = m.get_service_info("app")
        assert (app_info.phase, app_info.metric.start_count) == (trisup.Phase.WAITING_DEPS, 0)


# ----------------------------------------------------------------- trees (8-11)


class Node:
    """A tree member, ready at once, that logs its lifecycle.

    With *fail_at*, an instance that enters before that time fails at it; later
    ones run until stopped. A stop logs ``stop`` when it arrives and ``exit``
    after the shielded *cleanup*.
    """

    def __init__(
        self,
        name: str,
        log: list[str] | None = None,
        *,
        fail_at: float | None = None,
        cleanup: float = 0.0,
    ) -> None:
        self.name = name
        self.log: list[str] = [] if log is None else log
        self.fail_at = fail_at
        self.cleanup = cleanup
        self.live = Live()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.live.instance():
            self.log.append(f"start {self.name}")
            failing = False
            try:
                task_status.started()
                if self.fail_at is not None and trio.current_time() < self.fail_at:
                    await trio.sleep_until(self.fail_at)
                    failing = True
                    self.log.append(f"fail {self.name}")
                    raise RuntimeError(f"{self.name} broke")
                await forever()
            finally:
                if not failing:
                    self.log.append(f"stop {self.name}")
                    if self.cleanup:
                        with trio.CancelScope(shield=True):
                            await trio.sleep(self.cleanup)
                    self.log.append(f"exit {self.name}")


@pytest.mark.parametrize("verb", ["start", "stop"])
async def test_8_a_manual_verb_takes_a_service_out_of_a_pending_group_restart(
    verb: str, autojump_clock: trio.testing.MockClock
) -> None:
    """b fails at 2 (delay 10, one-for-all); a start/stop of b at 3 takes it out of the restart."""
    a, b = Node("a"), Node("b", fail_at=2)
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL)
    m.add(a)
    m.add(b, restart_delay=10)
    async with serving(m):
        await trio.sleep_until(3)
        assert await call(m, verb, "b") == "ok"
        assert trio.current_time() == 3
        await trio.sleep_until(12.5)
        info = m.get_service_info("b")
        if verb == "start":  # started at once with fresh counters, not again at 12
            assert b.live.entries == [0, 3]
            assert (info.status, info.restart_count, info.current_delay) == (S.RUNNING, 0, 10)
            assert info.metric.consec_failures == 0
        else:  # stays stopped: the group restart does not start it
            assert b.live.entries == [0]
            assert (info.status, info.phase) == (S.STOPPED, trisup.Phase.IDLE)
        # the rest of the group restart goes on: a, stopped at 2, starts at 2 + 10
        assert a.live.entries == [0, 12]
        assert (a.live.most, b.live.most) == (1, 1)


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_9_a_never_bystander_stays_down(
    strategy: Strategy, autojump_clock: trio.testing.MockClock
) -> None:
    """A group restart stops a NEVER bystander for good; ALWAYS / ON_FAILURE ones restart."""
    f, never, always, on_failure = Node("f", fail_at=1), Node("n"), Node("al"), Node("of")
    m = trisup.Manager(strategy=strategy)
    m.add(f, restart_delay=1)
    m.add(never, restart_policy=RestartPolicy.NEVER)
    m.add(always, restart_policy=RestartPolicy.ALWAYS)
    m.add(on_failure, restart_policy=RestartPolicy.ON_FAILURE)
    async with serving(m):
        await trio.sleep_until(5)
        infos = {i.name: i for i in m.get_services_info()}
        starts = {name: i.metric.start_count for name, i in infos.items()}
        assert starts == {"f": 2, "n": 1, "al": 2, "of": 2}
        n = infos["n"]  # OTP's temporary child: stopped, not held, not failed
        assert (n.phase, n.status, n.stopped) == (trisup.Phase.IDLE, S.IDLE, False)
        assert never.live.now == 0


async def test_10_rest_for_one_keeps_positions_after_a_manual_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After restart_service('a'), a's failure still restarts b and c, in position order."""
    log: list[str] = []
    a = Node("a", log, fail_at=5, cleanup=0.5)
    b, c = Node("b", log, cleanup=0.5), Node("c", log, cleanup=0.5)
    m = trisup.Manager(strategy=Strategy.REST_FOR_ONE)
    for node in (a, b, c):
        m.add(node, restart_delay=1)
    async with serving(m):
        await trio.sleep_until(1)
        await m.restart_service("a")
        assert log[-3:] == ["stop a", "exit a", "start a"]
        log.clear()
        await trio.sleep_until(20)
        # stopped one after another in reverse position, started in position order
        assert log == [
            "fail a",
            "stop c",
            "exit c",
            "stop b",
            "exit b",
            "start a",
            "start b",
            "start c",
        ]
        starts = [len(n.live.entries) for n in (a, b, c)]
        assert starts == [3, 2, 2]


async def test_10_one_for_all_keeps_positions_after_a_manual_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After restart_service('a'), a group restart stops b then a and starts a, b, c."""
    log: list[str] = []
    a, b = Node("a", log, cleanup=0.5), Node("b", log, cleanup=0.5)
    c = Node("c", log, fail_at=5, cleanup=0.5)
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL)
    for node in (a, b, c):
        m.add(node, restart_delay=1)
    async with serving(m):
        await trio.sleep_until(1)
        await m.restart_service("a")
        log.clear()
        await trio.sleep_until(20)
        assert log == [
            "fail c",
            "stop b",
            "exit b",
            "stop a",
            "exit a",
            "start a",
            "start b",
            "start c",
        ]


async def test_10_shutdown_keeps_positions_after_a_manual_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After restart_service('a'), the shutdown still stops c, then b, then a."""
    log: list[str] = []
    nodes = [Node(name, log, cleanup=0.5) for name in ("a", "b", "c")]
    m = trisup.Manager()
    for node in nodes:
        m.add(node)
    async with serving(m):
        await trio.sleep_until(1)
        await m.restart_service("a")
        log.clear()
    assert log == ["stop c", "exit c", "stop b", "exit b", "stop a", "exit a"]


@pytest.mark.parametrize("when", ["same_tick", "while_stopping"])
async def test_11_deaths_during_one_group_restart_are_one_restart(
    when: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Two deaths in one group restart (intensity=1): one restart, and the manager goes on."""
    a = Node("a", fail_at=1)
    # while_stopping: c's stop (first, by reverse position) takes until 1.5; b dies at 1.25
    b = Node("b", fail_at=1 if when == "same_tick" else 1.25)
    c = Node("c", cleanup=0.5)
    m = trisup.Manager(strategy=Strategy.ONE_FOR_ALL, intensity=1, period=5)
    for node in (a, b, c):
        m.add(node, restart_delay=1)
    async with serving(m):  # a manager giving up raises here
        await trio.sleep_until(10)
        infos = {i.name: i for i in m.get_services_info()}
        assert {n: i.metric.start_count for n, i in infos.items()} == {"a": 2, "b": 2, "c": 2}
        assert {n: i.metric.error_count for n, i in infos.items()} == {"a": 1, "b": 1, "c": 0}
        # a and b failed once: CRASHING until restart_window of healthy uptime
        assert {n: i.status for n, i in infos.items()} == {
            "a": S.CRASHING,
            "b": S.CRASHING,
            "c": S.RUNNING,
        }
        assert {n: i.phase for n, i in infos.items()} == dict.fromkeys("abc", trisup.Phase.RUNNING)
        assert all(node.live.most == 1 for node in (a, b, c))


async def test_12_a_stop_timing_out_in_the_shutdown_emits_the_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stop that times out during the shutdown emits ServiceStopTimedOut, as a verb's does."""
    live = Live()
    m = trisup.Manager("m")
    m.add(trisup.new_service("s", body(live, cleanup=5)), stop_timeout=1)
    async with m.subscribe() as events:
        async with serving(m):
            await trio.sleep(1)
        assert trio.current_time() == 6  # serve returns once the instance has exited
        timed_out = [e for e in drain(events) if isinstance(e, ev.ServiceStopTimedOut)]
    assert [(e.service, e.timeout, e.time) for e in timed_out] == [("s", 1.0, 2.0)]


# ------------------------------------------------------------------ startup (13-14)


async def test_13_serve_is_ready_once_every_plain_service_entered_serve(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After nursery.start(m.serve) every plain service ran its first line; restart gives 2."""
    entered: list[str] = []
    seen_by_hook: list[str] = []

    async def plain(name: str) -> None:
        entered.append(name)
        await forever()

    m = trisup.Manager()
    for name in ("a", "b", "c"):
        m.add(trisup.new_service(name, plain, name))
    m.after_start(lambda: seen_by_hook.extend(sorted(entered)))
    async with serving(m):
        assert trio.current_time() == 0  # still one batch, no waiting
        assert sorted(entered) == seen_by_hook == ["a", "b", "c"]
        await m.restart_service("b")
        assert m.get_service_info("b").metric.start_count == 2
        assert entered.count("b") == 2


async def never_ready(
    starts: list[float], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A service that never reports ready."""
    starts.append(trio.current_time())
    await forever()


@pytest.mark.parametrize("how", ["keyword", "option"])
async def test_14_start_timeout_fails_an_attempt_never_ready(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Not ready within start_timeout=5: cancelled at 5, a failure, restarted; startup goes on."""
    starts: list[float] = []
    later = Live()
    m = trisup.Manager()
    service = trisup.new_service("slow", never_ready, starts)
    if how == "keyword":
        m.add(service, start_timeout=5, restart_delay=1)
    else:
        m.add(service, trisup.with_start_timeout(5), restart_delay=1)
    m.add(trisup.new_service("later", body(later)))
    async with serving(m):
        assert trio.current_time() == 5
        assert later.entries == [5]
        info = m.get_service_info("slow")
        assert (info.metric.error_count, info.metric.consec_failures) == (1, 1)
        assert info.metric.last_error == "not ready within 5s"
        assert isinstance(info.error, trisup.ServiceStartTimeout)
        assert (info.status, info.phase) == (S.CRASHING, trisup.Phase.BACKOFF)
        await trio.sleep_until(6.5)
        assert starts == [0, 6]


async def test_14_start_timeout_with_policy_never_fails_the_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Not ready within start_timeout under NEVER: FAILED at 5, not started again."""
    starts: list[float] = []
    m = trisup.Manager()
    m.add(
        trisup.new_service("slow", never_ready, starts),
        start_timeout=5,
        restart_policy=RestartPolicy.NEVER,
    )
    async with serving(m):
        assert trio.current_time() == 5
        await trio.sleep(20)
        info = m.get_service_info("slow")
        assert (info.status, info.phase) == (S.FAILED, trisup.Phase.FAILED)
        assert info.metric.last_error == "not ready within 5s"
        assert (info.metric.error_count, starts) == (1, [0])


async def test_14_start_timeout_default_is_60s(autojump_clock: trio.testing.MockClock) -> None:
    """By default an attempt has 60 s to report ready ("not ready within 60s")."""
    starts: list[float] = []
    m = trisup.Manager()
    m.add(trisup.new_service("slow", never_ready, starts), restart_delay=1)
    assert trisup.ServiceConfig().start_timeout == 60.0
    async with serving(m, limit=100):
        assert trio.current_time() == 60
        assert m.get_service_info("slow").metric.last_error == "not ready within 60s"


async def test_14_start_timeout_none_waits_for_ever(autojump_clock: trio.testing.MockClock) -> None:
    """start_timeout=None: an attempt may take for ever to be ready, and startup waits."""
    starts: list[float] = []
    ready_at: list[float] = []
    m = trisup.Manager()
    m.add(trisup.new_service("slow", never_ready, starts), start_timeout=None)

    async def starter(nursery: trio.Nursery) -> None:
        await nursery.start(m.serve)
        ready_at.append(trio.current_time())

    try:
        with trio.fail_after(1100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(starter, nursery)
                with trio.move_on_after(1000) as waited:
                    await m.wait_status("slow", S.RUNNING, S.FAILED, S.CRASHING)
                assert waited.cancelled_caught
                assert ready_at == []
                info = m.get_service_info("slow")
                assert (info.status, info.metric.error_count, starts) == (S.STARTING, 0, [0])
                nursery.cancel_scope.cancel()
    except BaseException:
        _release[0].set()
        raise


# ---------------------------------------------------------------- checkpoints (15)


CHECKPOINT_CASES = [
    "wait_status_matching",
    "wait_status_outside_serve",
    "start_running",
    "start_outside_serve",
    "stop_stopped",
    "stop_outside_serve",
    "restart_outside_serve",
    "delete_stopped",
    "delete_outside_serve",
    "remove_services_empty",
    "restart_services_empty",
    "start_waiting_deps",
    "restart_waiting_deps",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
async def test_15_every_verb_checkpoints_on_its_fast_path(
    case: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Each public async verb is a checkpoint also when it has nothing to wait for."""
    m = trisup.Manager()
    if case.endswith("_empty"):
        verb = case.removesuffix("_empty")
        with trio.testing.assert_checkpoints():
            assert await call(m, verb, "s") == "ok"
        return
    if case.endswith("_waiting_deps"):
        m.add(trisup.new_service("db", forever), auto_start=False)
        m.add(trisup.new_service("s", forever), depends_on=["db"])
    else:
        m.add(trisup.new_service("s", forever))
    if case.endswith("_outside_serve"):
        verb = case.removesuffix("_outside_serve")
        with trio.testing.assert_checkpoints():
            if verb == "wait_status":
                assert await m.wait_status("s", S.IDLE) is S.IDLE
            else:
                assert await call(m, verb, "s") == "ok"
        return
    async with serving(m):
        if case in ("stop_stopped", "delete_stopped"):
            await m.stop_service("s")
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_checkpoints():
            if case == "wait_status_matching":
                assert await m.wait_status("s", S.RUNNING) is S.RUNNING
            else:
                assert await call(m, case.split("_")[0], "s") == "ok"


@pytest.mark.parametrize("verb", ["start", "stop", "restart", "delete"])
async def test_15_verbs_from_inside_checkpoint(
    verb: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A verb a service calls on itself (which only requests) is still a checkpoint."""
    checked: list[tuple[str, bool]] = []  # (the verb's result, whether it checkpointed)
    m = trisup.Manager()

    async def svc() -> None:
        if not checked:
            result = "not returned"
            with trio.CancelScope(shield=True):  # the stop it requests lands after the check
                try:
                    with trio.testing.assert_checkpoints():
                        result = await call(m, verb, "s")
                except AssertionError:
                    checked.append((result, False))
                else:
                    checked.append((result, True))
        await forever()

    m.add(trisup.new_service("s", svc))
    async with serving(m):
        await trio.testing.wait_all_tasks_blocked()
        assert checked == [("ok", True)]


# ------------------------------------------------------------------ RestartNow (16)


@pytest.mark.parametrize("uptime", [1.0, 2.0])
@pytest.mark.parametrize("how", ["class", "function"])
async def test_16_restart_now_after_its_first_second_restarts_at_once(
    how: str, uptime: float, autojump_clock: trio.testing.MockClock
) -> None:
    """RestartNow after >= 1 s of uptime: restarted at once; a start, not a failure."""
    # "within its first second" read as uptime < 1 s: at exactly 1 s the attempt has
    # reached its first second (as the healthy reset is "reaches restart_window")
    live = Live()

    async def svc() -> None:
        with live.instance():
            if len(live.entries) == 1:
                await trio.sleep(uptime)
                raise trisup.RestartNow() if how == "class" else trisup.restart_now("new config")
            await forever()

    m = trisup.Manager()
    m.add(trisup.new_service("s", svc), restart_delay=1)
    async with m.subscribe() as events:
        async with serving(m):
            await trio.sleep(uptime + 0.5)
            assert live.entries == [0, uptime]
            info = m.get_service_info("s")
            assert info.metric.start_count == 2
            assert (info.restart_count, info.metric.consec_failures) == (0, 0)
            assert (info.metric.error_count, info.current_delay) == (0, 1)
            assert info.status is S.RUNNING
        exits = [e.outcome for e in drain(events) if isinstance(e, ev.ServiceExited)]
    assert exits == ["restart_now", "stopped"]


@pytest.mark.parametrize("uptime", [0.0, 0.5])
async def test_16_restart_now_early_waits_restart_delay_without_growth(
    uptime: float, autojump_clock: trio.testing.MockClock
) -> None:
    """RestartNow within the first second waits restart_delay each time: no spin, no growth."""
    live = Live()

    async def svc() -> None:
        with live.instance():
            await trio.sleep(uptime)
            raise trisup.RestartNow()

    m = trisup.Manager()
    # 8 loops: past max_restarts_in_window=5, which RestartNow does not count towards
    m.add(trisup.new_service("s", svc), restart_delay=1, max_restarts_in_window=5)
    period = uptime + 1
    async with serving(m):
        await trio.sleep_until(8 * period + 0.25)
        assert live.entries == [k * period for k in range(9)]
        info = m.get_service_info("s")
        assert info.status is S.RUNNING
        assert (info.restart_count, info.metric.consec_failures, info.metric.error_count) == (
            0,
            0,
            0,
        )
        assert (info.current_delay, info.window_restarts) == (1, 0)


async def test_16_restart_now_keeps_the_failure_counters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RestartNow after a failure: consec_failures, restart_count and the delay are unchanged."""
    live = Live()

    async def svc() -> None:
        with live.instance():
            if len(live.entries) == 1:
                raise ValueError("first attempt fails")
            if len(live.entries) == 2:
                await trio.sleep(2)
                raise trisup.RestartNow()
            await forever()

    m = trisup.Manager()
    m.add(trisup.new_service("s", svc), restart_delay=1)
    async with serving(m):
        await trio.sleep_until(3.5)
        assert live.entries == [0, 1, 3]
        info = m.get_service_info("s")
        assert (info.restart_count, info.metric.consec_failures) == (1, 1)
        assert (info.metric.error_count, info.current_delay) == (1, 2)
        assert info.status is S.CRASHING


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
async def test_16_process_exit_3_is_a_restart_now(tmp_path: Path) -> None:
    """A process exiting 3 twice, then 0: three starts, no failure, no restart counted."""
    # real clock: a MockClock cannot drive a real process
    counter = tmp_path / "runs"
    program = textwrap.dedent(
        """
        import pathlib, sys
        counter = pathlib.Path(sys.argv[1])
        runs = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(runs + 1))
        sys.exit(3 if runs < 2 else 0)
        """
    )
    svc = trisup.ProcessService("job", [sys.executable, "-c", program, str(counter)])
    m = trisup.Manager()
    m.add(svc, restart_policy=RestartPolicy.ON_FAILURE, restart_delay=0.25)
    async with serving(m, limit=15):
        await m.wait_status("job", S.COMPLETED)
    info = m.get_service_info("job")
    assert counter.read_text() == "3"
    assert info.metric.start_count == 3
    assert (info.metric.error_count, info.restart_count, info.metric.consec_failures) == (0, 0, 0)
