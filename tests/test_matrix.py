"""Every control verb in every state and phase (SPEC §5), from outside and from inside."""

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


# ---- every phase × every verb, from outside and from inside the service (issue 11) ----
#
# Each row puts the service "svc" in one phase (`trisup.Phase`, by value) and calls one
# verb on it, either from the test (outside) or from a task the service started in
# its own nursery (inside; only where an instance runs service code). Each cell is
# what shows once everything has settled; every cell also checks that the verb
# returned (trio.fail_after), that at most one instance ever ran, and that an
# instance lives exactly when the phase is STARTING or RUNNING.
#
# Readings of SPEC §4/§5 pinned here (the brief leaves them open):
# - stop of a service that has no instance (COMPLETED, FAILED) only holds it: the
#   phase keeps how its last instance ended (SPEC's status order "STOPPED; FAILED;
#   COMPLETED" implies a service can be stopped and failed at once).
# - "deleting" (a delete waits for the instance's cleanup): the name is still
#   registered, so reset_service finds it and changes nothing, a second delete
#   and a stop wait for the same exit and return; start/restart raise
#   ServiceNotFound (delete wins over every other request).
# - a start or restart requested from inside while the instance is STOPPING is
#   the latest request: it wins over the earlier stop, and a fresh instance runs.
# - WAITING_DEPS counts as "starting" for start_service (a no-op that returns at
#   once); its status is IDLE (status_of: WAITING_DEPS without failures).

PHASES = [
    "never_started", "idle_held", "idle", "waiting_deps", "starting", "running",
    "stopping", "deleting", "backoff", "group_wait", "completed", "failed", "removed",
]  # fmt: skip
INSIDE_PHASES = ["starting", "running", "stopping", "deleting"]

# a cell: (status, phase, start_count) once settled, the verb having returned "ok";
# or GONE (it returned "ok" and the name is no longer registered), or NOT_FOUND
# (it raised ServiceNotFound, and the name is not registered afterwards)
Cell = tuple[ServiceStatus, str, int] | str
GONE = "gone"
NOT_FOUND = "ServiceNotFound"

# phase -> the phase, status (None: not pinned) and start_count it shows once reached
REACHED_PHASE: dict[str, tuple[str, ServiceStatus | None, int]] = {
    "never_started": ("idle", S.STOPPED, 0),
    "idle_held": ("idle", S.STOPPED, 1),
    "idle": ("idle", S.IDLE, 1),
    "waiting_deps": ("waiting_deps", S.IDLE, 0),
    "starting": ("starting", S.STARTING, 1),
    "running": ("running", S.RUNNING, 1),
    "stopping": ("stopping", S.STOPPED, 1),
    "deleting": ("stopping", None, 1),  # while a delete is pending
    "backoff": ("backoff", S.CRASHING, 1),
    "group_wait": ("group_wait", S.RUNNING, 1),
    "completed": ("completed", S.COMPLETED, 1),
    "failed": ("failed", S.FAILED, 1),
}

# phase -> verb -> cell, the verb called from outside
OUTSIDE: dict[str, dict[str, Cell]] = {
    "never_started": {"start": (S.RUNNING, "running", 1), "stop": (S.STOPPED, "idle", 0),
                      "restart": (S.RUNNING, "running", 1), "reset": (S.STOPPED, "idle", 0),
                      "delete": GONE},
    "idle_held": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
                  "restart": (S.RUNNING, "running", 2), "reset": (S.STOPPED, "idle", 1),
                  "delete": GONE},
    "idle": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
             "restart": (S.RUNNING, "running", 2), "reset": (S.IDLE, "idle", 1), "delete": GONE},
    "waiting_deps": {"start": (S.IDLE, "waiting_deps", 0), "stop": (S.STOPPED, "idle", 0),
                     "restart": (S.IDLE, "waiting_deps", 0), "reset": (S.IDLE, "waiting_deps", 0),
                     "delete": GONE},
    "starting": {"start": (S.STARTING, "starting", 1), "stop": (S.STOPPED, "idle", 1),
                 "restart": (S.RUNNING, "running", 2), "reset": (S.STARTING, "starting", 1),
                 "delete": GONE},
    "running": {"start": (S.RUNNING, "running", 1), "stop": (S.STOPPED, "idle", 1),
                "restart": (S.RUNNING, "running", 2), "reset": (S.RUNNING, "running", 1),
                "delete": GONE},
    "stopping": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
                 "restart": (S.RUNNING, "running", 2), "reset": (S.STOPPED, "idle", 1),
                 "delete": GONE},
    "deleting": {"start": NOT_FOUND, "stop": GONE, "restart": NOT_FOUND, "reset": GONE,
                 "delete": GONE},
    "backoff": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
                "restart": (S.RUNNING, "running", 2), "reset": (S.RUNNING, "backoff", 1),
                "delete": GONE},
    "group_wait": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
                   "restart": (S.RUNNING, "running", 2), "reset": (S.RUNNING, "group_wait", 1),
                   "delete": GONE},
    "completed": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "completed", 1),
                  "restart": (S.RUNNING, "running", 2), "reset": (S.COMPLETED, "completed", 1),
                  "delete": GONE},
    "failed": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "failed", 1),
               "restart": (S.RUNNING, "running", 2), "reset": (S.IDLE, "idle", 1), "delete": GONE},
    "removed": dict.fromkeys(VERBS, NOT_FOUND),
}  # fmt: skip

# phase -> verb -> cell, the verb called by a task the service started (it only
# requests, and returns at once)
INSIDE: dict[str, dict[str, Cell]] = {
    "starting": {"start": (S.STARTING, "starting", 1), "stop": (S.STOPPED, "idle", 1),
                 "restart": (S.RUNNING, "running", 2), "reset": (S.STARTING, "starting", 1),
                 "delete": GONE},
    "running": {"start": (S.RUNNING, "running", 1), "stop": (S.STOPPED, "idle", 1),
                "restart": (S.RUNNING, "running", 2), "reset": (S.RUNNING, "running", 1),
                "delete": GONE},
    "stopping": {"start": (S.RUNNING, "running", 2), "stop": (S.STOPPED, "idle", 1),
                 "restart": (S.RUNNING, "running", 2), "reset": (S.STOPPED, "idle", 1),
                 "delete": GONE},
    "deleting": {"start": NOT_FOUND, "stop": GONE, "restart": NOT_FOUND, "reset": GONE,
                 "delete": GONE},
}  # fmt: skip


async def call(m: trisup.Manager, name: str, which: str) -> str:
    """Run a verb; ``"ok"`` or the name of the `SupervisorError` it raised."""
    try:
        await verb(m, name, which)
    except trisup.SupervisorError as exc:
        return type(exc).__name__
    return "ok"


class Subject:
    """The service under test: its first instance reaches *phase*; later ones run, ready.

    With *inside*, the first instance starts a task in its own nursery that, once
    ``fire`` is set, calls *which* on the service's own name (shielded, so it also
    runs while the instance is stopping, and holds the instance there until then).
    """

    name = "svc"

    def __init__(self, m: trisup.Manager, phase: str, *, inside: bool, which: str) -> None:
        self.m = m
        self.phase = phase
        self.inside = inside
        self.which = which
        self.attempts = 0
        self.live = 0
        self.most = 0
        self.fire = trio.Event()
        self.release = trio.Event()  # set when a test gives up: every instance returns
        self.result = ""
        self.called = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.attempts += 1
        first = self.attempts == 1
        self.live += 1
        self.most = max(self.most, self.live)
        try:
            async with trio.open_nursery() as nursery:
                if first and self.inside:
                    nursery.start_soon(self._call_from_inside)
                if first and self.phase == "starting":
                    await self.release.wait()  # never ready
                    return
                if first and self.phase in ("backoff", "failed", "idle"):
                    raise ValueError("first attempt fails")
                if first and self.phase == "completed":
                    return
                task_status.started()
                await self.release.wait()
        finally:
            if first and self.phase in ("stopping", "deleting") and not self.inside:
                with trio.CancelScope(shield=True):
                    await trio.sleep(1)  # a slow cleanup: the instance stays STOPPING
            self.live -= 1

    async def _call_from_inside(self) -> None:
        with trio.move_on_after(LIMIT, shield=True):
            await self.fire.wait()
            self.result = await call(self.m, self.name, self.which)
            self.called.set()


LIMIT = 30.0  # virtual seconds


async def fail_now() -> None:
    """The first attempt of the group restart's trigger fails at t=1; later ones run."""
    await trio.sleep(1)
    raise ValueError("trigger fails")


async def reach(m: trisup.Manager, subject: Subject, phase: str, nursery: trio.Nursery) -> None:
    """Put the subject in *phase* (serve has started)."""
    background: dict[str, str] = {}
    if phase == "idle_held":
        await m.stop_service("svc")
    elif phase == "idle":
        await m.wait_status("svc", S.FAILED)
        m.reset_service("svc")
    elif phase in ("stopping", "deleting"):
        which = "stop" if phase == "stopping" else "delete"

        async def in_background() -> None:
            background[which] = await call(m, "svc", which)
            assert background[which] == "ok"

        nursery.start_soon(in_background)
    elif phase == "group_wait":
        await trio.sleep(1)
    elif phase == "removed":
        await m.delete("svc")
    await trio.testing.wait_all_tasks_blocked()


@pytest.mark.parametrize("which", VERBS)
@pytest.mark.parametrize(
    ("phase", "origin"),
    [(p, "outside") for p in PHASES] + [(p, "inside") for p in INSIDE_PHASES],
)
async def test_verb_in_phase(
    phase: str, origin: str, which: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Each verb in each phase, from outside and from inside: the documented end state."""
    inside = origin == "inside"
    strategy = trisup.Strategy.ONE_FOR_ALL if phase == "group_wait" else trisup.Strategy.ONE_FOR_ONE
    m = trisup.Manager(strategy=strategy)
    subject = Subject(m, phase, inside=inside, which=which)
    if phase == "group_wait":  # its failure at t=1 stops svc for a group restart at t=101
        m.add(trisup.new_service("trigger", fail_now), restart_delay=100)
    if phase == "waiting_deps":  # never started: svc waits on it
        m.add(trisup.new_service("dep", trio.sleep_forever), auto_start=False)
    # ON_FAILURE, not ALWAYS: a body released by a failing test then ends its runner
    policy = RestartPolicy.NEVER if phase in ("idle", "failed") else RestartPolicy.ON_FAILURE

    def add_subject() -> None:
        m.add(
            subject,
            depends_on=["dep"] if phase == "waiting_deps" else [],
            restart_policy=policy,
            restart_delay=100,
            auto_start=phase != "never_started",
        )

    if phase != "starting":
        add_subject()
    expected = (INSIDE if inside else OUTSIDE)[phase][which]
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(m.serve)
                if phase == "starting":  # added while serving: startup would wait for it
                    add_subject()
                await reach(m, subject, phase, nursery)
                if phase == "removed":
                    assert not m.has("svc")
                else:
                    info = m.get_service_info("svc")
                    want_phase, want_status, want_starts = REACHED_PHASE[phase]
                    assert info.phase is trisup.Phase(want_phase)
                    if want_status is not None:
                        assert info.status is want_status
                    assert info.metric.start_count == want_starts
                if inside:
                    subject.fire.set()
                    with trio.fail_after(5):
                        await subject.called.wait()
                    result = subject.result
                else:
                    with trio.fail_after(5):
                        result = await call(m, "svc", which)
                await trio.sleep(2)
                await trio.testing.wait_all_tasks_blocked()
                if isinstance(expected, str):  # GONE or NOT_FOUND
                    assert (result, m.has("svc")) == ("ok" if expected == GONE else expected, False)
                    assert subject.live == 0
                else:
                    info = m.get_service_info("svc")
                    cell = (info.status, str(info.phase), info.metric.start_count)
                    assert (result, cell) == ("ok", expected)
                    assert subject.live == (1 if expected[1] in ("starting", "running") else 0)
                assert subject.most <= 1
                nursery.cancel_scope.cancel()
            except BaseException:
                subject.release.set()  # before the nursery waits for its instance
                raise
