"""The console's memory: shown phases followed through events, and the timelines."""

from __future__ import annotations

import trio
import trio.testing

import trisup
from trisup import Phase, ServiceStatus
from trisup import events as ev
from trisup.http._state import ConsoleState, ShownPhases

P = Phase
S = ServiceStatus


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom")


def _phase(name: str, old: Phase, new: Phase) -> ev.ServicePhaseChanged:
    return ev.ServicePhaseChanged(manager="app", time=None, service=name, old=old, new=new)


def _status(name: str, old: ServiceStatus, new: ServiceStatus) -> ev.ServiceStatusChanged:
    return ev.ServiceStatusChanged(manager="app", time=None, service=name, old=old, new=new)


def _exited(name: str) -> ev.ServiceExited:
    return ev.ServiceExited(
        manager="app", time=None, service=name, outcome="failure", error=None, uptime=1.0
    )


def test_shown_phases_follow_phase_and_status_events() -> None:
    """The phase comes from phase events, held from status events; nothing is inferred."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("web", trio.sleep_forever))
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    web, manual = m.get_services_info()
    follow = ShownPhases()
    assert (follow.seed(web), follow.seed(manual)) == ("idle", "stopped")
    steps: list[tuple[ev.Event, str | None]] = [
        (_phase("web", P.IDLE, P.STARTING), "starting"),
        (_status("web", S.IDLE, S.STARTING), "starting"),
        (_phase("web", P.STARTING, P.RUNNING), "running"),
        (_exited("web"), "running"),
        (ev.ServiceBackingOff(manager="app", time=None, service="web", delay=1.0), "running"),
        (_phase("web", P.RUNNING, P.BACKOFF), "backoff"),
        (_status("web", S.RUNNING, S.CRASHING), "backoff"),
        (_phase("web", P.BACKOFF, P.GROUP_WAIT), "group_wait"),
        (_phase("web", P.GROUP_WAIT, P.WAITING_DEPS), "waiting_deps"),
        (_phase("web", P.WAITING_DEPS, P.STARTING), "starting"),
        (_phase("web", P.STARTING, P.STOPPING), "stopping"),
        (_status("web", S.STARTING, S.STOPPED), "stopped"),  # held from here on
        (_phase("web", P.STOPPING, P.IDLE), "stopped"),
        (_status("manual", S.STOPPED, S.STARTING), "idle"),  # started: no longer held
        (_phase("manual", P.IDLE, P.STARTING), "starting"),
        (ev.ManagerStopping(manager="app", time=None), None),
        (ev.ServiceRemoved(manager="app", time=None, service="web"), "removed"),
        (_phase("web", P.STOPPING, P.IDLE), None),  # no longer followed, and no info
        (ev.ServiceAdded(manager="app", time=None, service="web"), "idle"),  # added idle
        (_phase("web", P.IDLE, P.STARTING), "starting"),
    ]
    for event, shown in steps:
        info = None if isinstance(event, ev.ServicePhaseChanged) else web
        assert follow.apply(event, info) == shown, event
    assert follow.follows("manual") and follow.follows("web") and not follow.follows("x")


def test_an_unfollowed_service_is_seeded_from_its_info() -> None:
    """An event of a service not followed yet reads its snapshot; a held one is added held."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    (manual,) = m.get_services_info()
    follow = ShownPhases()
    assert follow.apply(_phase("manual", P.IDLE, P.STARTING), manual) == "stopped"
    added = ev.ServiceAdded(manager="app", time=None, service="manual")
    assert ShownPhases().apply(added, manual) == "stopped"
    assert ShownPhases().apply(added, None) == "idle"


async def test_timelines_follow_the_phases(autojump_clock: trio.testing.MockClock) -> None:
    """Each service's strip holds its shown phases at their times; a removed one has none."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("flappy", _fail_after, 0.5), restart_delay=1)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    state = ConsoleState(m)
    async with trio.open_nursery() as nursery:
        await nursery.start(state.track)
        await nursery.start(m.serve)
        await trio.sleep(3)  # flappy failed at 0.5 and 2; it waits until 4
        await m.stop_service("flappy")
        m.add(trisup.new_service("late", trio.sleep_forever))
        await trio.sleep(1)
        base = state.wall(0)
        strips = {
            name: [(t - base, p) for t, p in points]
            for (group, name), points in state.timelines().items()
            if group == ""
        }
        assert strips == {
            "flappy": [
                (0, "idle"),
                (0, "starting"),
                (0, "running"),
                (0.5, "backoff"),
                (1.5, "running"),
                (2, "backoff"),
                (3, "stopped"),
            ],
            "manual": [(0, "stopped")],
            "late": [(3, "idle"), (3, "starting"), (3, "running")],
        }
        await m.delete("late")
        assert list(state.timelines()) == [("", "flappy"), ("", "manual")]
        assert state.current_state() == "serving"
        nursery.cancel_scope.cancel()


async def test_the_state_follows_groups(autojump_clock: trio.testing.MockClock) -> None:
    """Timelines and recent events are kept by (group, name); a removed group is forgotten."""
    m = trisup.Manager("app")
    jobs = trisup.Manager("jobs")
    jobs.add(trisup.new_service("flappy", _fail_after, 0.5), restart_delay=1)
    m.add(jobs)
    state = ConsoleState(m)
    async with trio.open_nursery() as nursery:
        await nursery.start(state.track)
        await nursery.start(m.serve)
        await trio.sleep(1)  # flappy failed at 0.5, waits until 1.5
        assert list(state.timelines()) == [("", "jobs"), ("jobs", "flappy")]
        base = state.wall(0)
        assert [(t - base, p) for t, p in state.timelines()[("jobs", "flappy")]] == [
            (0, "idle"),
            (0, "starting"),
            (0, "running"),
            (0.5, "backoff"),
        ]
        recent = state.recent("jobs", "flappy")
        assert [e.kind for e in recent if e.kind in ("exited", "backing_off")] == [
            "exited",
            "backing_off",
        ]
        assert state.recent("", "flappy") == []
        assert state.group("jobs") is jobs and state.group("nope") is None
        await m.delete("jobs")
        assert list(state.timelines()) == []
        assert state.recent("jobs", "flappy") == []
        assert state.group("jobs") is None
        nursery.cancel_scope.cancel()
