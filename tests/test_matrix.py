"""Every control verb in every state (SPEC §5): the resulting status, starts and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import trisup
from trisup import RestartPolicy, ServiceStatus

S = ServiceStatus

STATES = ["running", "starting", "waiting", "stopped", "failed", "completed"]
VERBS = ["start", "stop", "restart", "reset", "delete"]

# state -> verb -> (status afterwards, start_count afterwards); None: deleted
EXPECTED: dict[str, dict[str, tuple[ServiceStatus, int] | None]] = {
    "running": {"start": (S.RUNNING, 1), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
                "reset": (S.RUNNING, 1), "delete": None},
    "starting": {"start": (S.STARTING, 1), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
                 "reset": (S.STARTING, 1), "delete": None},
    "waiting": {"start": (S.RUNNING, 2), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
                "reset": (S.RUNNING, 1), "delete": None},
    "stopped": {"start": (S.RUNNING, 2), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
                "reset": (S.STOPPED, 1), "delete": None},
    "failed": {"start": (S.RUNNING, 2), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
               "reset": (S.IDLE, 1), "delete": None},
    "completed": {"start": (S.RUNNING, 2), "stop": (S.STOPPED, 1), "restart": (S.RUNNING, 2),
                  "reset": (S.COMPLETED, 1), "delete": None},
}  # fmt: skip


def scripted(state: str) -> Callable[..., Awaitable[None]]:
    """The first attempt puts the service in *state*; later ones run, ready at once."""
    attempts = 0

    async def body(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            if state == "starting":
                await trio.sleep_forever()
            if state in ("waiting", "failed"):
                raise ValueError("first attempt fails")
            if state == "completed":
                return
        task_status.started()
        await trio.sleep_forever()

    return body


async def verb(m: trisup.Manager, name: str, which: str) -> None:
    if which == "reset":
        m.reset_service(name)
        return
    fn = {
        "start": m.start_service,
        "stop": m.stop_service,
        "restart": m.restart_service,
        "delete": m.delete,
    }[which]
    await fn(name)


REACHED = {
    "running": S.RUNNING,
    "starting": S.STARTING,
    "waiting": S.CRASHING,
    "stopped": S.STOPPED,
    "failed": S.FAILED,
    "completed": S.COMPLETED,
}


@pytest.mark.parametrize("which", VERBS)
@pytest.mark.parametrize("state", STATES)
async def test_verb_in_state_while_serving(
    state: str, which: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Each verb in each state gives the documented status at once, with no time passing."""
    m = trisup.Manager()
    policy = {"failed": RestartPolicy.NEVER, "completed": RestartPolicy.ON_FAILURE}.get(
        state, RestartPolicy.ALWAYS
    )
    m.add(trisup.new_service("svc", scripted(state)), restart_policy=policy, restart_delay=100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.serve)
        with trio.fail_after(1):
            await m.wait_status(
                "svc", S.STARTING if state == "starting" else S.RUNNING, REACHED[state]
            )
            if state == "stopped":
                await m.stop_service("svc")
            await m.wait_status("svc", REACHED[state])
        await trio.testing.wait_all_tasks_blocked()
        before = trio.current_time()
        with trio.fail_after(1):
            await verb(m, "svc", which)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == before
        expected = EXPECTED[state][which]
        if expected is None:
            assert not m.has("svc")
        else:
            info = m.get_service_info("svc")
            assert (info.status, info.metric.start_count) == expected
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("which", VERBS)
@pytest.mark.parametrize("when", ["before", "after"])
async def test_verb_outside_serve(
    which: str, when: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Outside serve the verbs record intent; the next serve honours it."""
    m = trisup.Manager()
    m.add(trisup.new_service("svc", scripted("running")))
    if when == "after":
        with trio.move_on_after(1):
            await m.serve()
    await verb(m, "svc", which)
    expected = {"start": S.IDLE, "stop": S.STOPPED, "restart": S.IDLE, "reset": S.IDLE}
    if which == "delete":
        assert not m.has("svc")
        return
    assert m.get_service_info("svc").status is expected[which]
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await trio.testing.wait_all_tasks_blocked()
        status = m.get_service_info("svc").status
        assert status is (S.STOPPED if which == "stop" else S.RUNNING)
        nursery.cancel_scope.cancel()
