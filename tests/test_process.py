"""ProcessService with real child processes: exit classes, readiness, stop, cleanup, output.

These tests run small ``python -c`` programs on the real clock (a MockClock
cannot drive a real process), so times are checked within a tolerance and every
body is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

import trisup
from trisup import ExitStatus, RestartPolicy, ServiceConfig, ServiceStatus
from trisup.process import DEFAULT_KILL_AFTER, ProcessExited, ProcessService, kill_after_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

S = ServiceStatus
LIMIT = 15  # seconds; every test body is bounded by this
ON_FAILURE = ServiceConfig(restart_policy=RestartPolicy.ON_FAILURE)
NEVER = ServiceConfig(restart_policy=RestartPolicy.NEVER)


def py(code: str, *args: str) -> list[str]:
    """The argv of a small Python program."""
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def gone(pid: int) -> bool:
    """Whether *pid* has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: trust kill(pid, 0)
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


async def wait_gone(*pids: int, within: float = 3.0) -> None:
    """Wait until every pid has exited (a killed process dies asynchronously)."""
    with trio.fail_after(within):
        while not all(gone(pid) for pid in pids):
            await trio.sleep(0.01)


def pids_in(svc: ProcessService) -> list[int]:
    """The pids the child printed on a line ``pids A B``."""
    for _, line in svc.output_tail():
        if line.startswith("pids "):
            return [int(p) for p in line.split()[1:]]
    raise AssertionError(f"no pids line in {svc.output_tail()!r}")


WITH_GRANDCHILD = """
    import subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("pids", __import__("os").getpid(), grandchild.pid, flush=True)
    time.sleep(60)
"""


async def serve_until(
    svc: ProcessService, *statuses: ServiceStatus, config: ServiceConfig | None = None
) -> tuple[trisup.Manager, trisup.ServiceInfo]:
    """Serve *svc* alone until it reaches a status; return the manager and its info."""
    m = trisup.Manager("test")
    m.add_with_config(svc, config or ServiceConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(m.serve)
        await m.wait_status(svc.name, *statuses)
        info = m.get_service_info(svc.name)
        nursery.cancel_scope.cancel()
    return m, info


# --------------------------------------------------------------- exit codes


async def test_exit_0_is_a_clean_end() -> None:
    """Exit code 0 is a clean return: COMPLETED under on_failure, no error."""
    svc = ProcessService("job", py("print('done')"))
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.COMPLETED, config=ON_FAILURE)
    assert (info.metric.success_count, info.metric.error_count) == (1, 0)
    assert svc.returncode == 0
    assert info.details["last_exit"] == "exited with code 0"
    assert svc.output_tail() == [("stdout", "done")]


@pytest.mark.parametrize("code", [ExitStatus.RESTART, ExitStatus.UPGRADE])
async def test_exit_3_and_4_relaunch_at_once_without_a_failure(
    tmp_path: Path, code: ExitStatus
) -> None:
    """Exit 3 or 4 is a RestartNow: relaunched at once, a start, no failure, no restart."""
    marker = tmp_path / "ran-once"
    program = f"""
        import pathlib, sys
        marker = pathlib.Path(sys.argv[1])
        if not marker.exists():
            marker.touch()
            sys.exit({int(code)})
        print("second run")
    """
    svc = ProcessService("app", py(program, str(marker)))
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.COMPLETED, config=ON_FAILURE)
    assert svc.relaunches == 1
    assert info.details["relaunches"] == 1
    assert info.metric.start_count == 2
    assert info.metric.success_count == 1  # the second run's clean exit
    assert (info.metric.error_count, info.restart_count, info.metric.consec_failures) == (0, 0, 0)
    assert svc.output_tail() == [("stdout", "second run")]


async def test_other_exit_code_is_a_failure_carrying_it() -> None:
    """Any other code is a ProcessExited failure with the code and the last stderr line."""
    svc = ProcessService("job", py("import sys; print('boom', file=sys.stderr); sys.exit(5)"))
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.FAILED, config=NEVER)
    error = info.error
    assert isinstance(error, ProcessExited)
    assert (error.returncode, error.signal, error.stderr) == (5, None, "boom")
    assert info.metric.last_error == "exited with code 5; stderr: boom"
    assert info.metric.error_count == 1


async def test_death_by_signal_is_a_failure_naming_it() -> None:
    """A child killed by a signal fails with the signal's name."""
    svc = ProcessService("job", py("import os, signal; os.kill(os.getpid(), signal.SIGUSR2)"))
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.FAILED, config=NEVER)
    error = info.error
    assert isinstance(error, ProcessExited)
    assert (error.returncode, error.signal) == (-signal.SIGUSR2, "SIGUSR2")
    assert info.metric.last_error == "killed by SIGUSR2"


async def test_a_failure_is_restarted_by_policy() -> None:
    """A failing process goes through the manager's restart path like any service."""
    svc = ProcessService("job", py("raise SystemExit(1)"))
    with trio.fail_after(LIMIT):
        _, info = await serve_until(
            svc, S.FAILED, config=ServiceConfig(restart_delay=0.05, max_restarts=2)
        )
    assert (info.metric.start_count, info.restart_count, info.metric.error_count) == (3, 2, 3)


@pytest.mark.parametrize(
    ("code", "status"), [(2, ExitStatus.NO_UPGRADE_AVAILABLE), (7, ExitStatus.ERROR)]
)
async def test_fatal_exit_code_ends_the_tree(code: int, status: ExitStatus) -> None:
    """A code in fatal_exit_codes raises a FatalError with that ExitStatus (else ERROR)."""
    svc = ProcessService("job", py(f"raise SystemExit({code})"), fatal_exit_codes=[code])
    m = trisup.Manager("test")
    m.add(svc)
    with trio.fail_after(LIMIT), pytest.raises(trisup.FatalError) as caught:
        await m.serve()
    assert caught.value.status is status
    assert isinstance(caught.value.error, ProcessExited)
    assert (caught.value.error.returncode, caught.value.error.signal) == (code, None)
    assert m.get_service_info("job").status is S.FAILED


async def test_a_program_that_cannot_start_is_a_failure(tmp_path: Path) -> None:
    """A missing program is an OSError failure, restarted by policy like any other."""
    svc = ProcessService("ghost", [str(tmp_path / "no-such-program")])
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.FAILED, config=NEVER)
    assert isinstance(info.error, FileNotFoundError)
    assert svc.pid is None


# ----------------------------------------------------------------- readiness


async def test_ready_when_a_line_matches_the_pattern() -> None:
    """With ready_pattern the service is STARTING until a matching line is printed."""
    program = """
        import time
        print("booting", flush=True)
        time.sleep(0.3)
        print("listening on 8080", flush=True)
        time.sleep(60)
    """
    svc = ProcessService("web", py(program), ready_pattern=r"listening on \d+")
    m = trisup.Manager("test")
    m.add(svc)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(m.serve)
            await m.wait_status("web", S.STARTING)
            began = time.monotonic()
            assert ("stdout", "listening on 8080") not in svc.output_tail()
            await m.wait_status("web", S.RUNNING)
            assert time.monotonic() - began >= 0.25
            lines = [line for _, line in svc.output_tail()]
            assert lines == ["booting", "listening on 8080"]
            nursery.cancel_scope.cancel()


async def test_ready_after_the_child_stayed_up() -> None:
    """With ready_after the service turns RUNNING once the child has been up that long."""
    svc = ProcessService("web", py("import time; time.sleep(60)"), ready_after=0.5)
    m = trisup.Manager("test")
    m.add(svc)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(m.serve)
            await m.wait_status("web", S.STARTING)
            began = time.monotonic()
            await m.wait_status("web", S.RUNNING)
            assert 0.45 <= time.monotonic() - began < 3.0
            nursery.cancel_scope.cancel()


async def test_served_directly_in_a_nursery() -> None:
    """Outside a manager, nursery.start returns once ready and cancellation kills the child."""
    program = "import os, time; print('pids', os.getpid(), flush=True); time.sleep(60)"
    svc = ProcessService("bare", py(program), ready_pattern="pids")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.serve)
            (pid,) = pids_in(svc)
            assert svc.pid == pid
            nursery.cancel_scope.cancel()
        await wait_gone(pid)


# ---------------------------------------------------------------------- stop


async def test_stop_escalates_from_sigterm_to_sigkill() -> None:
    """A child that ignores SIGTERM is killed with SIGKILL kill_after seconds later."""
    program = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    svc = ProcessService("stubborn", py(program), ready_pattern="ready", kill_after=0.5)
    m = trisup.Manager("test")
    m.add(svc, stop_timeout=5)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("stubborn", S.RUNNING)
            began = time.monotonic()
            await m.stop_service("stubborn")
            elapsed = time.monotonic() - began
            nursery.cancel_scope.cancel()
    assert 0.5 <= elapsed < 2.0
    assert svc.returncode == -signal.SIGKILL
    assert m.get_service_info("stubborn").details["last_exit"] == "killed by SIGKILL"


async def test_stop_signal_lets_the_child_exit_and_its_last_words_are_kept() -> None:
    """The stop signal is the one configured; output written while stopping is still read."""
    program = """
        import signal, sys, time
        def bye(signum, frame):
            print("got", signal.Signals(signum).name, flush=True)
            sys.exit(0)
        signal.signal(signal.SIGUSR1, bye)
        print("ready", flush=True)
        time.sleep(60)
    """
    svc = ProcessService(
        "polite", py(program), ready_pattern="ready", stop_signal=signal.SIGUSR1, kill_after=5
    )
    m = trisup.Manager("test")
    m.add(svc)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("polite", S.RUNNING)
            began = time.monotonic()
            await m.stop_service("polite")
            elapsed = time.monotonic() - began
            nursery.cancel_scope.cancel()
    assert elapsed < 2.0
    assert svc.returncode == 0
    assert svc.output_tail() == [("stdout", "ready"), ("stdout", "got SIGUSR1")]
    info = m.get_service_info("polite")
    assert (info.status, info.metric.error_count) == (S.STOPPED, 0)


async def test_grace_period_sends_the_stop_signal_when_the_stop_is_requested() -> None:
    """With a grace_period the stop signal goes out at once and a prompt exit is a stop."""
    program = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("ready", flush=True)
        time.sleep(60)
    """
    svc = ProcessService("graceful", py(program), ready_pattern="ready")
    m = trisup.Manager("test")
    m.add(svc, grace_period=5)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("graceful", S.RUNNING)
            began = time.monotonic()
            await m.stop_service("graceful")
            assert time.monotonic() - began < 2.0
            nursery.cancel_scope.cancel()
    info = m.get_service_info("graceful")
    assert (info.status, info.metric.error_count, svc.returncode) == (S.STOPPED, 0, 0)


async def test_expedite_cuts_the_grace_period_short() -> None:
    """expedite() during a stop sends SIGKILL at once instead of waiting kill_after."""
    program = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    svc = ProcessService("stubborn", py(program), ready_pattern="ready", kill_after=30)
    m = trisup.Manager("test")
    m.add(svc, stop_timeout=40)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("stubborn", S.RUNNING)
            began = time.monotonic()
            nursery.start_soon(m.stop_service, "stubborn")
            await trio.sleep(0.2)
            svc.expedite()
            await m.wait_status("stubborn", S.STOPPED)
            with trio.fail_after(3):
                while svc.returncode is None:
                    await trio.sleep(0.01)
            assert time.monotonic() - began < 3.0
            nursery.cancel_scope.cancel()
    assert svc.returncode == -signal.SIGKILL


# ------------------------------------------------- nothing is left behind


async def test_a_grandchild_is_gone_after_stop() -> None:
    """Stopping the service kills the child's whole process group."""
    svc = ProcessService("tree", py(WITH_GRANDCHILD), ready_pattern="pids", kill_after=2)
    m = trisup.Manager("test")
    m.add(svc)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("tree", S.RUNNING)
            child, grandchild = pids_in(svc)
            assert not gone(child) and not gone(grandchild)
            await m.stop_service("tree")
            await wait_gone(child, grandchild)
            nursery.cancel_scope.cancel()


async def test_leftovers_are_killed_when_the_child_exits() -> None:
    """When the child exits on its own, whatever it left in its group is killed."""
    program = """
        import os, subprocess, sys
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("pids", os.getpid(), grandchild.pid, flush=True)
    """
    svc = ProcessService("leaky", py(program))
    with trio.fail_after(LIMIT):
        await serve_until(svc, S.COMPLETED, config=ON_FAILURE)
        await wait_gone(*pids_in(svc))


async def test_no_child_is_left_after_the_manager_is_cancelled() -> None:
    """Cancelling serve stops every process group before serve returns."""
    svcs = [
        ProcessService(f"tree{i}", py(WITH_GRANDCHILD), ready_pattern="pids", kill_after=2)
        for i in range(2)
    ]
    m = trisup.Manager("test")
    for svc in svcs:
        m.add(svc)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            for svc in svcs:
                await m.wait_status(svc.name, S.RUNNING)
            nursery.cancel_scope.cancel()
        await wait_gone(*(pid for svc in svcs for pid in pids_in(svc)))


def test_no_child_is_left_after_a_keyboard_interrupt(tmp_path: Path) -> None:
    """A parent serving with trio.run and interrupted by Ctrl-C leaves no process behind."""
    pidfile = tmp_path / "pids"
    child = textwrap.dedent(
        """
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        tmp = sys.argv[1] + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()} {grandchild.pid}")
        os.rename(tmp, sys.argv[1])
        time.sleep(60)
        """
    )
    parent = textwrap.dedent(
        f"""
        import signal, sys, trio, trisup
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
        svc = trisup.ProcessService("child", [sys.executable, "-c", {child!r}, {str(pidfile)!r}])
        manager = trisup.Manager("parent")
        manager.add(svc)
        trio.run(manager.serve)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + LIMIT
        while not pidfile.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never wrote its pids"
            time.sleep(0.02)
        pids = [int(p) for p in pidfile.read_text().split()]
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=LIMIT)
    finally:
        if proc.poll() is None:  # never leave the parent (and so its children) running
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 3
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"left behind: {[p for p in pids if not gone(p)]}"
        time.sleep(0.01)


# -------------------------------------------------------------------- output


async def test_output_ring_keeps_the_last_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Lines go to a bounded ring and, with log_output, to trisup.process.NAME with their stream."""
    caplog.set_level(logging.INFO, logger="trisup.process.chatty")
    program = r"""
        import sys, time
        sys.stderr.write("warning: low disk\n")
        sys.stderr.flush()
        time.sleep(0.3)  # the stderr line is read long before the rest
        for i in range(1, 6):
            print(f"line {i}")
        sys.stdout.flush()
        sys.stdout.buffer.write(b"bad \xff byte\r\n" + b"x" * 70000 + b"\ntail without newline")
    """
    svc = ProcessService("chatty", py(program), output_lines=4, log_output=True)
    with trio.fail_after(LIMIT):
        _, info = await serve_until(svc, S.COMPLETED, config=ON_FAILURE)
    tail = [line if len(line) < 100 else f"{line[0]}*{len(line)}" for _, line in svc.output_tail()]
    assert tail == ["bad \ufffd byte", "x*65536", "x*4464", "tail without newline"]
    output = [
        (r.__dict__["stream"], r.getMessage()) for r in caplog.records if "stream" in r.__dict__
    ]
    assert output == [
        ("stderr", "warning: low disk"),
        *[("stdout", f"line {i}") for i in range(1, 6)],
        ("stdout", "bad \ufffd byte"),
        ("stdout", "x" * 65536),
        ("stdout", "x" * 4464),
        ("stdout", "tail without newline"),
    ]
    assert info.details["output"] == [list(pair) for pair in svc.output_tail()]


async def test_details_in_service_info_and_not_in_json() -> None:
    """ServiceInfo.details shows the pid while running; to_dict() keeps the Go keys only."""
    svc = ProcessService("web", py("import time; print('up', flush=True); time.sleep(60)"))
    m = trisup.Manager("test")
    m.add(svc)
    m.add(trisup.new_service("plain", trio.sleep_forever))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("web", S.RUNNING)
            info = m.get_service_info("web")
            assert info.details["pid"] == svc.pid is not None
            assert info.details["argv"] == list(svc.argv)
            assert "details" not in info.to_dict()
            assert dict(m.get_service_info("plain").details) == {}
            nursery.cancel_scope.cancel()
    assert svc.pid is None


# ------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"argv": "python -c pass"}, TypeError, "argv must be a sequence of strings"),
        ({"argv": []}, ValueError, "argv must not be empty"),
        ({"argv": ["x", 1]}, TypeError, "argv must hold strings only"),
        ({"cwd": 3}, TypeError, "cwd must be a path"),
        ({"env": {"A": 1}}, TypeError, "env must map strings to strings"),
        ({"env": ["A"]}, TypeError, "env must be a mapping"),
        ({"ready_pattern": "("}, ValueError, "ready_pattern is not a valid regular expression"),
        ({"ready_pattern": 3}, TypeError, "ready_pattern must be a str"),
        ({"ready_after": 0}, ValueError, "ready_after must be positive and finite"),
        ({"ready_after": True}, TypeError, "ready_after must be a number of seconds"),
        ({"ready_after": 1, "ready_pattern": "x"}, ValueError, "cannot be combined"),
        ({"stop_signal": 999}, ValueError, "stop_signal must be a signal number"),
        ({"stop_signal": "TERM"}, TypeError, "stop_signal must be a signal number"),
        ({"kill_after": float("inf")}, ValueError, "kill_after must be positive and finite"),
        ({"fatal_exit_codes": [3]}, ValueError, "other than 3 and 4, not 3"),
        ({"fatal_exit_codes": [0]}, ValueError, "from 1 to 255"),
        ({"fatal_exit_codes": 2}, TypeError, "fatal_exit_codes must be a collection"),
        ({"fatal_exit_codes": ["2"]}, TypeError, "fatal_exit_codes must hold ints"),
        ({"output_lines": -1}, ValueError, "output_lines must not be negative"),
        ({"output_lines": 1.5}, TypeError, "output_lines must be an int"),
        ({"name": ""}, TypeError, "service name must be a non-empty str"),
    ],
)
def test_arguments_are_checked(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each bad argument is rejected with a message that names it."""
    arguments: dict[str, object] = {"name": "svc", "argv": ["true"], **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        ProcessService(**arguments)  # type: ignore[arg-type]  # deliberately wrong


def test_kill_after_defaults_below_stop_timeout() -> None:
    """kill_after_for leaves a margin before stop_timeout; the default suits 10 s."""
    assert kill_after_for(10.0) == DEFAULT_KILL_AFTER == 9.0
    assert kill_after_for(2.0) == 1.5
    assert kill_after_for(60.0) == 59.0
    svc = ProcessService("svc", ["true"], stop_signal=signal.SIGINT)
    assert (svc.kill_after, svc.stop_signal) == (None, signal.SIGINT)  # from stop_timeout
    assert repr(svc) == "<trisup.ProcessService 'svc' argv=['true'] pid=None>"


async def test_output_since_and_wait_output_follow_the_lines() -> None:
    service = trisup.ProcessService(
        "chatty", [sys.executable, "-c", "print('a'); print('b'); print('c')"], output_lines=2
    )
    assert service.output_since(0) == (0, [])
    seen: list[int] = []

    async def follower() -> None:
        await service.wait_output(0)
        seen.append(service.output_count)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        await service.serve()
    assert seen and seen[0] >= 1
    assert service.output_count == 3
    # the ring keeps 2: asking from the start skips the line that left it
    assert service.output_since(0) == (3, [("stdout", "b"), ("stdout", "c")])
    assert service.output_since(2) == (3, [("stdout", "c")])
    assert service.output_since(3) == (3, [])
    with trio.move_on_after(0.05) as waited:
        await service.wait_output(3)
    assert waited.cancelled_caught
    await service.wait_output(2)  # already there: returns at once
