"""The shutdown's stop order: ``"position"`` (one by one) and ``"dependencies"`` (layers)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing

import trisup
from trisup._tomlconfig import ConfigError, Plan, build, parse_config
from trisup.events import ServiceStopTimedOut
from trisup.process import ProcessService


def slow_stopper(log: list[str], name: str, exit_delay: float) -> trisup.Service:
    """A service that takes *exit_delay* seconds to exit once cancelled, logging when."""

    async def body() -> None:
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"stop {name} {trio.current_time():g}")
            with trio.move_on_after(exit_delay, shield=True):
                await trio.sleep(exit_delay)
            log.append(f"exited {name} {trio.current_time():g}")

    return trisup.new_service(name, body)


async def serve_then_stop(m: trisup.Manager) -> float:
    """Serve *m*, cancel it once every service runs; return how long the shutdown took."""
    with trio.fail_after(100):
        async with trio.open_nursery() as n:
            await n.start(m.serve)
            await trio.testing.wait_all_tasks_blocked()
            began = trio.current_time()
            n.cancel_scope.cancel()
    return trio.current_time() - began


@pytest.mark.parametrize(("order", "took"), [("position", 2), ("dependencies", 1)])
async def test_two_independent_slow_services(
    autojump_clock: trio.testing.MockClock, order: str, took: float
) -> None:
    """Two independent services that take 1 s each: 2 s one by one, 1 s concurrently."""
    log: list[str] = []
    m = trisup.Manager(stop_order=order)
    m.add(slow_stopper(log, "a", 1))
    m.add(slow_stopper(log, "b", 1))
    assert await serve_then_stop(m) == took
    if order == "position":
        assert log == ["stop b 0", "exited b 1", "stop a 1", "exited a 2"]
    else:
        assert sorted(log) == ["exited a 1", "exited b 1", "stop a 0", "stop b 0"]


async def test_dependents_stop_first_in_layers(autojump_clock: trio.testing.MockClock) -> None:
    """web, worker and cache stop at once; db after its two dependents; base after db."""
    log: list[str] = []
    m = trisup.Manager(stop_order="dependencies")
    m.add(slow_stopper(log, "base", 0.5))
    m.add(slow_stopper(log, "db", 1), depends_on=["base"])
    m.add(slow_stopper(log, "worker", 1.5), depends_on=["db"])
    m.add(slow_stopper(log, "web", 0.5), depends_on=["db", "base"])
    m.add(slow_stopper(log, "cache", 1))
    assert await serve_then_stop(m) == 1.5 + 1 + 0.5
    assert sorted(log[:3]) == ["stop cache 0", "stop web 0", "stop worker 0"]
    assert sorted(log[3:6]) == ["exited cache 1", "exited web 0.5", "exited worker 1.5"]
    assert log[6:] == ["stop db 1.5", "exited db 2.5", "stop base 2.5", "exited base 3"]


async def test_a_stopped_dependent_does_not_hold_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dependent that is not running is no reason to wait; the chain through it holds."""
    log: list[str] = []
    m = trisup.Manager(stop_order="dependencies")
    m.add(slow_stopper(log, "db", 1))
    m.add(slow_stopper(log, "api", 1), depends_on=["db"])
    m.add(slow_stopper(log, "web", 1), depends_on=["api"])
    async with trio.open_nursery() as n:
        await n.start(m.serve)
        # started() may come while web still waits for api (trio's scheduling order)
        await m.wait_status("web", trisup.ServiceStatus.RUNNING)
        await m.stop_service("api")  # web keeps running: a stop does not cascade
        log.clear()
        began = trio.current_time()
        n.cancel_scope.cancel()
    assert trio.current_time() - began == 2
    assert log == ["stop web 1", "exited web 2", "stop db 2", "exited db 3"]


async def test_a_dependent_that_times_out(autojump_clock: trio.testing.MockClock) -> None:
    """A dependent past its stop_timeout is reported, and its dependency stops then."""
    log: list[str] = []
    m = trisup.Manager(stop_order="dependencies", stop_timeout=10)
    m.add(slow_stopper(log, "db", 1))
    m.add(slow_stopper(log, "web", 5), depends_on=["db"], stop_timeout=2)
    async with m.subscribe() as events:
        took = await serve_then_stop(m)
        timed_out: list[ServiceStopTimedOut] = []
        while (event := events.receive_nowait()) is not None:
            if isinstance(event, ServiceStopTimedOut):
                timed_out.append(event)
    assert [(e.service, e.timeout, e.time) for e in timed_out] == [("web", 2, 2)]
    assert log == ["stop web 0", "stop db 2", "exited db 3", "exited web 5"]
    assert took == 5  # the manager's phase waits for db; web's task is reaped at 5


async def test_the_phase_bound_cuts_both(autojump_clock: trio.testing.MockClock) -> None:
    """The manager's stop_timeout bounds the whole phase, stops in progress included."""
    log: list[str] = []
    m = trisup.Manager(stop_order="dependencies", stop_timeout=1.5)
    m.add(slow_stopper(log, "db", 10))
    m.add(slow_stopper(log, "web", 10), depends_on=["db"], stop_timeout=1)
    m.on_close(lambda: log.append(f"on_close {trio.current_time():g}"))
    assert await serve_then_stop(m) == 11  # serve still reaps the tasks that shield themselves
    # web timed out at 1 and db's stop began then; the phase ended at 1.5
    assert log == ["stop web 0", "stop db 1", "on_close 1.5", "exited web 10", "exited db 11"]


def test_stop_order_is_checked() -> None:
    """An unknown stop_order is refused with its value."""
    with pytest.raises(
        ValueError, match=r"stop_order must be \"position\" or \"dependencies\", not 'reverse'"
    ):
        trisup.Manager(stop_order="reverse")
    assert trisup.Manager().stop_order == "position"


STUCK = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); time.sleep(60)"
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_two_stuck_processes_stop_in_one_kill_after() -> None:
    """Two children that ignore SIGTERM (kill_after 1) are killed together, not in turn."""
    m = trisup.Manager(stop_order="dependencies", stop_timeout=10)
    procs = [
        ProcessService(name, [sys.executable, "-c", STUCK], kill_after=1, ready_pattern="up")
        for name in ("a", "b")
    ]
    for proc in procs:
        m.add(proc, stop_timeout=3)
    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            await n.start(m.serve)
            began = time.monotonic()
            n.cancel_scope.cancel()
    took = time.monotonic() - began
    assert 1 <= took < 2, took  # one kill_after, not two one after the other
    assert [p.returncode for p in procs] == [-9, -9]


def _plan(manager: str) -> Plan:
    text = f'{manager}\n[services.a]\ncommand = "true"\n'
    return parse_config(text, file="services.toml", base_dir=Path.cwd())


@pytest.mark.parametrize(
    ("table", "order"),
    [("", "dependencies"), ('[manager]\nstop_order = "position"', "position")],
)
def test_trisup_run_stops_by_dependencies_by_default(table: str, order: str) -> None:
    """A file's manager stops by dependencies unless ``[manager] stop_order`` says otherwise."""
    manager, _ = build(_plan(table))
    assert manager.stop_order == order


def test_a_bad_stop_order_in_toml_names_the_key() -> None:
    """``[manager] stop_order`` is checked like the other Manager keys."""
    with pytest.raises(ConfigError) as caught:
        _plan('[manager]\nstop_order = "random"')
    assert str(caught.value) == (
        'services.toml: [manager] stop_order: must be "position" or "dependencies", not \'random\''
    )


def test_check_says_how_the_shutdown_goes() -> None:
    """`trisup check` names the stop order, the file's or trisup run's default."""
    from trisup._cli import describe_plan

    lines = describe_plan(_plan("")).splitlines()
    assert lines[1] == "shutdown: dependents first, others together (stop_order 'dependencies')"
    lines = describe_plan(_plan('[manager]\nstop_order = "position"')).splitlines()
    assert lines[1] == "shutdown: one by one (stop_order 'position')"
