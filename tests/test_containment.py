"""Containment with real processes: children die with trisup, the subreaper, credentials.

A real ``trisup run FILE --no-live`` is started as a subprocess where the test is
about the supervisor's own death or shutdown; the rest serve a `ProcessService`
in the test's Trio run. Times are real; every wait is bounded.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import queue
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import trio

import trisup
from trisup import ServiceConfig, ServiceStatus
from trisup._cli import check_command
from trisup._credentials import Credentials
from trisup._reaper import reap_orphans
from trisup._spawn import spawn
from trisup._tomlconfig import ConfigError, load_config
from trisup.process import ProcessService

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and subreapers are Linux's")
root_only = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching users needs root"
)
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

LIMIT = 15  # seconds; every wait is bounded by this


def py(code: str) -> list[str]:
    """The argv of a small Python program."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def stat_of(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return None


def dead(pid: int) -> bool:
    """Whether *pid* has exited (a zombie no one reaps counts as dead)."""
    fields = stat_of(pid)
    return fields is None or fields[0] == "Z"


def wait_until(predicate: object, what: str, within: float = 5.0) -> None:
    """Poll *predicate* (a callable) until true, failing after *within* seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.01)


class Trisup:
    """A real ``python -m trisup run FILE --no-live`` whose output lines are read."""

    def __init__(
        self, tmp_path: Path, toml: str, *args: str, wrapper: tuple[str, ...] = ()
    ) -> None:
        file = tmp_path / "services.toml"
        file.write_text(textwrap.dedent(toml))
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "trisup", "run", str(file), "--no-live", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, pattern: str) -> re.Match[str]:
        """Wait for an output line matching *pattern* (seen ones included)."""
        regex = re.compile(pattern)
        for line in self.seen:
            if match := regex.search(line):
                return match
        deadline = time.monotonic() + LIMIT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line matching {pattern!r} in:\n{''.join(self.seen)}"
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match := regex.search(line):
                return match

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(LIMIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class Start(Protocol):
    def __call__(self, toml: str, *args: str) -> Trisup: ...


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Start]:
    """Start `Trisup` instances; each is killed (if need be) and waited for at the end."""
    started: list[Trisup] = []

    def start(toml: str, *args: str) -> Trisup:
        started.append(Trisup(tmp_path, toml, *args))
        return started[-1]

    yield start
    for instance in started:
        instance.close()


# ------------------------------------------------------- dying with trisup


def forking_threads(pid: int) -> list[tuple[str, str]]:
    """The (tid, name) of this process's threads that have *pid* as a child."""
    return [
        (task.name, (task / "comm").read_text().strip())
        for task in Path(f"/proc/{os.getpid()}/task").iterdir()
        if str(pid) in (task / "children").read_text().split()
    ]


@linux_only
def test_kill_9_of_trisup_run_leaves_no_child(running: Start) -> None:
    """SIGKILL of `trisup run` kills its children too (PR_SET_PDEATHSIG)."""
    trisup_run = running(
        """
        [services.a]
        command = ["sleep", "60"]
        [services.b]
        command = ["sleep", "61"]
        """
    )
    pids = [int(trisup_run.expect(rf"{name} started, pid (\d+)")[1]) for name in "ab"]
    assert [(stat_of(pid) or ["", ""])[1] for pid in pids] == [str(trisup_run.proc.pid)] * 2
    trisup_run.proc.kill()
    trisup_run.proc.wait()
    for pid in pids:
        wait_until(lambda pid=pid: dead(pid), f"child {pid} dead")


@linux_only
async def test_children_are_forked_by_a_thread_that_lives_as_long_as_trisup() -> None:
    """The thread that forked a child is no Trio worker, which exits after 10 s idle.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits: a fork in
    one of Trio's cached worker threads would kill a healthy child later.
    """
    first = ProcessService("one", ["sleep", "60"])
    second = ProcessService("two", ["sleep", "60"])
    manager = trisup.Manager("test")
    manager.add(first)
    manager.add(second)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            forkers: list[tuple[str, str]] = []
            for service in (first, second):
                assert service.pid is not None
                forkers += forking_threads(service.pid)
                await trio.to_thread.run_sync(time.sleep, 0)  # a Trio worker exists now
            nursery.cancel_scope.cancel()
    assert len(forkers) == 2
    assert forkers[0] == forkers[1]  # one thread forks them all
    tid, name = forkers[0]
    assert tid != str(os.getpid())  # not the event loop's thread
    assert not name.startswith("Trio thread"), name


# --------------------------------------------------------------- subreaper


@linux_only
def test_subreaper_adopts_and_reaps_a_double_forked_orphan(running: Start) -> None:
    """An orphan is reparented to `trisup run --subreaper`, which reaps it when it exits."""
    trisup_run = running(
        """
        [services.daemon]
        command = ["sh", "-c", "(sleep 1 & echo orphan $!); exec sleep 60"]
        """,
        "--subreaper",
    )
    orphan = int(trisup_run.expect(r"msg=\"orphan (\d+)\"")[1])
    wait_until(
        lambda: (stat_of(orphan) or ["", ""])[1] == str(trisup_run.proc.pid),
        "the orphan adopted by trisup",
        within=0.8,
    )
    wait_until(lambda: stat_of(orphan) is None, "the orphan reaped (no zombie left)")
    trisup_run.expect(rf"event=reaped pid={orphan} ")
    trisup_run.proc.send_signal(signal.SIGTERM)
    assert trisup_run.proc.wait(LIMIT) == 0


def bare_child(script: str) -> int:
    """Start ``sh -c SCRIPT`` with no Popen object to wait for it; its pid."""
    return os.posix_spawnp("sh", ["sh", "-c", script], dict(os.environ))


@linux_only
async def test_the_reaper_takes_orphans_but_not_a_spawned_childs_exit_status() -> None:
    """Of two exited children, the reaper reaps the one trisup did not spawn only."""
    spawned = await spawn(["sh", "-c", "exit 7"], cwd=None, env=None, credentials=Credentials())
    other = bare_child("exit 5")
    with trio.fail_after(LIMIT):
        while not (dead(spawned.pid) and dead(other)):  # both zombies now
            await trio.sleep(0.01)
    assert reap_orphans() == [other]
    assert stat_of(other) is None
    assert stat_of(spawned.pid) is not None  # still there for its waiter
    assert await spawned.wait() == 7
    for stream in (spawned.stdout, spawned.stderr):
        assert stream is not None
        await stream.aclose()


@linux_only
def test_setsid_grandchild_is_killed_at_shutdown(running: Start) -> None:
    """A descendant that left its group with setsid is killed and reaped after the services stop."""
    trisup_run = running(
        """
        [services.leaky]
        command = ["sh", "-c", "setsid sh -c 'echo escaped $$; exec sleep 300' & exec sleep 60"]
        """,
        "--subreaper",
    )
    escaped = int(trisup_run.expect(r"msg=\"escaped (\d+)\"")[1])
    fields = stat_of(escaped)
    assert fields is not None and fields[3] == str(escaped)  # its own session
    trisup_run.proc.send_signal(signal.SIGTERM)
    assert trisup_run.proc.wait(LIMIT) == 0
    assert stat_of(escaped) is None  # killed and reaped by trisup before it exited
    trisup_run.expect(rf"event=escaped pids=\[{escaped}\]")
    trisup_run.expect(rf"event=reaped pid={escaped} .*killed by SIGTERM")


ORPHAN_AND_ESCAPEE = (
    "(sleep 0.3 & echo orphan $!); setsid sh -c 'echo escaped $$; exec sleep 300' & exec sleep 60"
)


@root_only
@linux_only
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_as_pid_1_trisup_is_a_subreaper_without_being_asked(tmp_path: Path) -> None:
    """PID 1 of a new PID namespace (a container's init): orphans reaped, escapees ended."""
    container = Trisup(
        tmp_path,
        f'[services.daemon]\ncommand = ["sh", "-c", {json.dumps(ORPHAN_AND_ESCAPEE)}]\n',
        wrapper=("unshare", "--pid", "--fork", "--mount-proc"),
    )
    try:
        orphan = container.expect(r'msg="orphan (\d+)"')[1]
        escaped = container.expect(r'msg="escaped (\d+)"')[1]
        container.expect(
            rf'event=reaped pid={orphan} msg="reaped orphan {orphan} \(exited with code 0\)'
        )
        init = Path(f"/proc/{container.proc.pid}/task/{container.proc.pid}/children").read_text()
        os.kill(int(init), signal.SIGTERM)  # unshare waits for its child, trisup
        assert container.proc.wait(LIMIT) == 0
        container.expect(rf"event=escaped pids=\[{escaped}\]")
        container.expect(rf"reaped orphan {escaped} \(killed by SIGTERM\)")
    finally:
        container.close()


@linux_only
def test_without_subreaper_a_setsid_grandchild_is_not_trisups(running: Start) -> None:
    """Without --subreaper the escapee is not adopted, and nothing claims to end it."""
    trisup_run = running(
        """
        [services.leaky]
        command = ["sh", "-c", "setsid sh -c 'echo escaped $$; exec sleep 300' & exec sleep 60"]
        """
    )
    escaped = int(trisup_run.expect(r"msg=\"escaped (\d+)\"")[1])
    try:
        trisup_run.proc.send_signal(signal.SIGTERM)
        assert trisup_run.proc.wait(LIMIT) == 0
        assert not dead(escaped), (
            stat_of(escaped),
            Path(f"/proc/{escaped}/status").read_text() if stat_of(escaped) else "",
        )
        assert not any("event=escaped" in line for line in trisup_run.seen)
    finally:
        os.kill(escaped, signal.SIGKILL)


# ------------------------------------------------------------- credentials


async def run_to_end(service: ProcessService) -> list[str]:
    """Serve *service* until its child exits 0; its stdout lines."""
    with trio.fail_after(LIMIT):
        await service.serve()
    return [line for stream, line in service.output_tail() if stream == "stdout"]


@root_only
async def test_user_drops_to_an_unprivileged_user_with_its_environment() -> None:
    """user="nobody": the child runs with nobody's uid, gid, groups, HOME, USER and LOGNAME."""
    nobody = pwd.getpwnam("nobody")
    service = ProcessService(
        "who", ["sh", "-c", 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"'], user="nobody"
    )
    groups = " ".join(str(g) for g in os.getgrouplist("nobody", nobody.pw_gid))
    assert await run_to_end(service) == [
        str(nobody.pw_uid),
        str(nobody.pw_gid),
        groups,
        f"{nobody.pw_dir} nobody nobody",
    ]


@root_only
async def test_group_and_env_override_the_users_defaults() -> None:
    """group= replaces the user's group; env= wins over the account's HOME."""
    service = ProcessService(
        "who",
        ["sh", "-c", 'id -u; id -g; echo "$HOME"'],
        user="nobody",
        group=0,
        env={"HOME": "/srv"},
    )
    assert await run_to_end(service) == [str(pwd.getpwnam("nobody").pw_uid), "0", "/srv"]


async def test_umask_applies_to_the_child() -> None:
    """umask="027" (or 0o027) is the child's umask."""
    for umask in ("027", 0o027):
        service = ProcessService("mask", ["sh", "-c", "umask"], umask=umask)
        assert await run_to_end(service) == ["0027"]


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"user": "no-such-user-here"}, ValueError, "user 'no-such-user-here' does not exist"),
        ({"user": 2**40}, ValueError, f"user {2**40} does not exist"),
        ({"user": 1.5}, TypeError, "user must be a user name or uid, not 1.5"),
        ({"group": "no-such-group-here"}, ValueError, "group 'no-such-group-here' does not exist"),
        ({"group": True}, TypeError, "group must be a group name or gid, not True"),
        ({"umask": "8"}, ValueError, "umask must be octal digits such as '027', not '8'"),
        ({"umask": 0o1000}, ValueError, "umask must be between 0 and 0o777, not 512"),
        ({"umask": 2.0}, TypeError, "umask must be an int or a string of octal digits, not 2.0"),
    ],
)
def test_bad_credentials_are_named(arguments: dict[str, object], error: type, message: str) -> None:
    """An unknown user or group, or a bad umask, is refused when the service is made."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ProcessService("x", ["true"], **arguments)  # type: ignore[arg-type]  # deliberately wrong


def test_toml_credentials_keys(tmp_path: Path) -> None:
    """user, group and umask are TOML keys; a bad one names file, table and key."""
    file = tmp_path / "s.toml"
    file.write_text('[services.db]\ncommand = "true"\nuser = "root"\ngroup = 0\numask = "077"\n')
    service = load_config(file).services[0].make_service()
    assert (service.user and service.user.uid, service.group, service.umask) == (0, 0, 0o77)
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(file), out=out, err=err) == 0
    assert "\n  runs as user root (uid 0), group 0, umask 077\n" in out.getvalue()
    file.write_text('[services.db]\ncommand = "true"\nuser = "no-such-user-here"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert str(caught.value) == f"{file}: [services.db] user: 'no-such-user-here' does not exist"


@root_only
def test_switching_users_needs_root() -> None:
    """Not root, user= or group= another one fails at spawn, saying why; nothing is spawned."""
    nobody = pwd.getpwnam("nobody")
    as_root = ProcessService("x", ["true"], user="root")
    to_root_group = ProcessService("y", ["true"], group=0)
    same_user = ProcessService("z", ["id", "-u"], user="nobody", group=nobody.pw_gid)
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)  # the real and saved ids stay 0: undone below
    try:
        with pytest.raises(PermissionError) as user_error:
            trio.run(as_root.serve)
        with pytest.raises(PermissionError) as group_error:
            trio.run(to_root_group.serve)
        lines = trio.run(run_to_end, same_user)
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert str(user_error.value) == (
        f"user='root': trisup runs as uid {nobody.pw_uid}, not root,"
        " and cannot switch to another user"
    )
    assert str(group_error.value) == (
        f"group 0: trisup runs as gid {nobody.pw_gid}, not root, and cannot switch to another group"
    )
    assert as_root.returncode is None
    assert lines == [str(nobody.pw_uid)]  # already that user: allowed, nothing to switch


# ----------------------------------------------------------------- stopping


async def test_a_stopped_child_gets_sigcont_after_the_stop_signal() -> None:
    """A SIGSTOPped child dies of the stop signal at once, not of SIGKILL after kill_after."""
    program = """
        import os, signal, time
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(60)
    """
    service = ProcessService("frozen", py(program), ready_pattern="ready", kill_after=30)
    manager = trisup.Manager("test")
    manager.add(service, stop_timeout=60)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            pid = service.pid
            assert pid is not None
            while (stat_of(pid) or ["T"])[0] != "T":  # until it has stopped itself
                await trio.sleep(0.01)
            await manager.stop_service("frozen")
            nursery.cancel_scope.cancel()
    assert service.returncode == -signal.SIGTERM


async def test_kill_after_defaults_from_the_services_stop_timeout() -> None:
    """stop_timeout=1 and no kill_after: SIGKILL at 0.75 s, within the stop, no timeout."""
    program = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    service = ProcessService("stubborn", py(program), ready_pattern="ready")
    manager = trisup.Manager("test")
    manager.add_with_config(service, ServiceConfig(stop_timeout=1))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            await manager.wait_status("stubborn", ServiceStatus.RUNNING)
            await manager.stop_service("stubborn")  # raises ServiceStopTimeout if late
            assert service.returncode == -signal.SIGKILL
            nursery.cancel_scope.cancel()
    assert service.kill_after is None
    assert manager.get_service_info("stubborn").details["last_exit"] == "killed by SIGKILL"
