"""Controlling a running `trisup run` from the shell: its socket, the commands, reload.

Every test starts `trisup run FILE --no-live` as a real subprocess and talks to it over
its real Unix socket (or its real HTTP console), with the real command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema

from trisup.__main__ import main
from trisup._control import Client, ControlError
from trisup._reload import Reloader, ReloadError
from trisup._tomlconfig import build, load_config
from trisup.process import ProcessService

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets and signals")

PY = json.dumps(sys.executable)
TICKER_CODE = (
    'import os, time\nprint("pid", os.getpid())\n'
    'for i in range(10**6):\n    print("tick", i)\n    time.sleep(0.1)\n'
)
TICKER = f"[{PY}, '-u', '-c', {json.dumps(TICKER_CODE)}]"
SLEEPER = f"[{PY}, '-u', '-c', 'import os,time; print(\"pid\", os.getpid()); time.sleep(600)']"
TIMEOUT = 30.0


class Instance:
    """A `trisup run` subprocess; its stdout is drained by a thread, so it never stalls."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trisup", "run", str(path), "--no-live", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, start: int = 0) -> re.Match[str]:
        """The first log line from *start* on matching *pattern* (waits for it)."""
        deadline = time.monotonic() + TIMEOUT
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if m := re.search(pattern, line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"never saw {pattern!r} in:\n{''.join(self.lines)}")
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self._reader.join(TIMEOUT)
        return self.proc.returncode, err


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Instance]]:
    """Instances to stop at the end of the test."""
    instances: list[Instance] = []
    yield instances
    for instance in instances:
        instance.stop()


def write(tmp_path: Path, body: str, name: str = "app.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def config(*services: str, manager: str = 'name = "app"\nsocket = "ctl/app.sock"') -> str:
    return f"[manager]\n{manager}\n" + "".join(services)


def service(name: str, command: str, extra: str = "") -> str:
    return f'\n[services.{name}]\ncommand = {command}\nready_pattern = "pid"\n{extra}\n'


def launch(started: list[Instance], path: Path, *names: str) -> Instance:
    """Start `trisup run` on *path*; wait until its socket listens and *names* are running."""
    instance = Instance(path)
    started.append(instance)
    instance.wait_for(r"event=listening socket=")
    for name in names:
        instance.wait_for(rf"service={re.escape(name)} old=starting new=running event=status")
    return instance


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`trisup ARGV` in this process (a real client on the real socket): code, out, err."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pids(capsys: pytest.CaptureFixture[str], sock: str) -> dict[str, int | None]:
    code, out, _ = run(capsys, "status", "-s", sock, "--json")
    assert code == 0
    return {s["name"]: s.get("pid") for s in json.loads(out)}


def test_status_table_json_and_the_socket_mode(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` prints the table (pid included) or JSON; the socket is 0600 in a 0700 dir."""
    path = write(tmp_path, config(service("web", SLEEPER), service("db", SLEEPER)))
    launch(started, path, "web", "db")
    sock = tmp_path / "ctl" / "app.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(sock.stat().st_mode)
    code, out, err = run(capsys, "status", "-c", str(path))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "SERVICE", "STATUS", "PHASE", "PID", "UPTIME", "RESTARTS", "LAST", "ERROR"
    ]  # fmt: skip
    known = pids(capsys, str(sock))
    assert set(known) == {"web", "db"}
    web = lines[1].split()
    assert web[:4] == ["web", "running", "running", str(known["web"])]
    assert web[5:] == ["0", "-"]
    os.kill(known["web"] or 0, 0)  # a live child
    code, out, _ = run(capsys, "status", "-s", str(sock), "--json", "db")
    (db,) = json.loads(out)
    assert (code, db["name"], db["phase"], db["pid"]) == (0, "db", "running", known["db"])
    code, out, err = run(capsys, "status", "-s", str(sock), "nope")
    assert (code, out, err) == (1, "", "trisup: service not found: nope\n")


def test_verbs_and_exit_codes(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """start/stop/restart/reset of a name and of all: 0 when done, 1 when refused, 2 on usage."""
    path = write(tmp_path, config(service("web", SLEEPER), service("db", SLEEPER)))
    instance = launch(started, path, "web", "db")

    def running(mark: int, *names: str) -> None:
        for name in names:
            instance.wait_for(rf"service={name} old=starting new=running event=status", mark)

    s = str(tmp_path / "ctl" / "app.sock")
    before = pids(capsys, s)
    assert run(capsys, "stop", "-s", s, "web") == (0, "service stopped, name=web\n", "")
    assert pids(capsys, s)["web"] is None
    mark = instance.mark()
    code, out, err = run(capsys, "stop", "-s", s, "web")
    assert (code, out, err) == (1, "", "trisup: stop web: service is stopped, name=web\n")
    assert run(capsys, "start", "-s", s, "web") == (0, "service started, name=web\n", "")
    code, _, err = run(capsys, "start", "-s", s, "db")
    assert (code, err) == (1, "trisup: start db: service is running, name=db\n")
    code, out, err = run(capsys, "restart", "-s", s, "db", "nope")
    assert (code, out) == (1, "service restarted, name=db\n")
    assert err == "trisup: restart nope: service not found, name=nope\n"
    running(mark, "web", "db")
    after = pids(capsys, s)
    assert after["db"] not in (None, before["db"]) and after["web"] not in (None, before["web"])
    assert run(capsys, "reset", "-s", s, "web") == (0, "service reset, name=web\n", "")
    # all: every service, skipping those already in that state
    assert run(capsys, "stop", "-s", s, "db")[0] == 0
    code, out, _ = run(capsys, "stop", "-s", s, "all")
    assert (code, out) == (0, "service stopped, name=web\n")
    assert run(capsys, "stop", "-s", s, "all") == (0, "", "")
    mark = instance.mark()
    code, out, _ = run(capsys, "start", "-s", s, "all", "--json")
    assert code == 0
    assert [(r["name"], r["ok"]) for r in json.loads(out)] == [("web", True), ("db", True)]
    running(mark, "web", "db")
    mark = instance.mark()
    assert run(capsys, "restart", "-s", s, "all") == (0, "all services restarted\n", "")
    running(mark, "web", "db")
    assert all(p is not None for p in pids(capsys, s).values())
    # usage errors: 2; no connection: 1
    assert run(capsys, "stop", "-s", s)[0] == 2
    assert run(capsys, "tail", "-s", s, "-n", "-1", "web")[0] == 2
    code, _, err = run(capsys, "status", "-s", str(tmp_path / "none.sock"))
    assert code == 1
    assert err.startswith(f"trisup: {tmp_path / 'none.sock'}: cannot connect: ")


def test_tail_and_follow(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """`tail -n N` prints the last lines; `tail -f` then prints new lines as they come."""
    path = write(tmp_path, config(service("ticker", TICKER), service("web", SLEEPER)))
    instance = launch(started, path, "ticker", "web")
    instance.wait_for(r'service=ticker .*msg="tick 3"')
    s = str(tmp_path / "ctl" / "app.sock")
    code, out, _ = run(capsys, "tail", "-s", s, "-n", "2", "ticker")
    first, second = out.splitlines()
    n = int(first.split()[1])
    assert (code, first, second) == (0, f"tick {n}", f"tick {n + 1}")
    code, out, _ = run(capsys, "tail", "-s", s, "--json", "-n", "1", "ticker")
    assert json.loads(out)["stream"] == "stdout"
    code, _, err = run(capsys, "tail", "-s", s, "nope")
    assert (code, err) == (1, "trisup: service not found: nope\n")
    follower = subprocess.Popen(
        [sys.executable, "-m", "trisup", "tail", "-f", "-n", "1", "-s", s, "ticker"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        got = [int(follower.stdout.readline().split()[1]) for _ in range(6)]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=TIMEOUT)
    assert got == list(range(got[0], got[0] + 6))  # live lines, in order, none lost
    assert follower.returncode == 0


def test_reload_adds_removes_and_replaces_only_what_changed(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """Reload: an unchanged service keeps its pid, a changed one gets a new one; invalid: no-op."""
    a, b, c = (service(n, SLEEPER) for n in "abc")
    path = write(tmp_path, config(a, b, c))
    instance = launch(started, path, "a", "b", "c")
    s = str(tmp_path / "ctl" / "app.sock")
    before = pids(capsys, s)
    b2 = service("b", SLEEPER, "env = { CHANGED = '1' }")
    path.write_text(config(a, b2, service("d", SLEEPER)))
    mark = instance.mark()
    code, out, err = run(capsys, "reload", "-c", str(path))
    assert (code, out, err) == (0, "reloaded: added d; removed c; changed b; 1 unchanged\n", "")
    instance.wait_for(r"service=d old=starting new=running event=status", mark)
    instance.wait_for(r"service=b old=starting new=running event=status", mark)
    after = pids(capsys, s)
    assert list(after) == ["a", "b", "d"]
    assert after["a"] == before["a"]
    assert after["b"] not in (None, before["b"])
    with pytest.raises(ProcessLookupError):
        os.kill(before["c"] or 0, 0)
    # an invalid file changes nothing and says why
    path.write_text(config(a, b2, service("d", SLEEPER, "bogus = 1")))
    code, out, err = run(capsys, "reload", "-s", s, "--json")
    assert (code, out) == (1, "")
    assert err == f"trisup: {path}: [services.d] bogus: unknown key; nothing changed\n"
    assert pids(capsys, s) == after
    # a change of [manager] is reported, not applied
    path.write_text(
        config(a, b2, manager='name = "app"\nsocket = "ctl/app.sock"\nstop_timeout = 5')
    )
    code, out, _ = run(capsys, "reload", "-s", s, "--json")
    answer = json.loads(out)
    assert (code, answer["removed"], answer["unchanged"]) == (0, ["d"], ["a", "b"])
    assert answer["notes"] == ["[manager] changed: not applied until trisup run restarts"]


def test_sighup_reloads(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGHUP to `trisup run` reloads the file as `trisup reload` does."""
    path = write(tmp_path, config(service("a", SLEEPER)))
    instance = launch(started, path, "a")
    s = str(tmp_path / "ctl" / "app.sock")
    before = pids(capsys, s)
    path.write_text(config(service("a", SLEEPER), service("b", SLEEPER)))
    mark = instance.mark()
    instance.proc.send_signal(signal.SIGHUP)
    instance.wait_for(r"event=reloaded .*msg=\"reloaded .*: added b; 1 unchanged\"", mark)
    instance.wait_for(r"service=b old=starting new=running event=status", mark)
    after = pids(capsys, s)
    assert after["a"] == before["a"] and after["b"] is not None
    path.write_text("not toml [")
    mark = instance.mark()
    instance.proc.send_signal(signal.SIGHUP)
    instance.wait_for(r"level=error .*event=reload_failed .*invalid TOML", mark)
    assert pids(capsys, s) == after
    assert instance.proc.poll() is None


def test_stale_socket_is_replaced_and_a_second_instance_refused(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """A socket file nobody answers on is replaced; a live one makes a second `run` exit 1."""
    path = write(tmp_path, config(service("a", SLEEPER)))
    sock = tmp_path / "ctl" / "app.sock"
    sock.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # the file stays: as after a kill -9
    launch(started, path, "a")
    assert run(capsys, "status", "-s", str(sock))[0] == 0
    second = subprocess.run(
        [sys.executable, "-m", "trisup", "run", str(path), "--no-live"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert second.returncode == 1
    assert second.stderr == (f"trisup: {sock}: another trisup instance is serving on this socket\n")
    assert run(capsys, "status", "-s", str(sock))[0] == 0  # the first one still serves
    code, _ = started[0].stop()
    assert code == 0 and not sock.exists()  # removed at exit


def test_an_unsafe_socket_directory_is_refused(tmp_path: Path) -> None:
    """A socket directory writable by others is refused at startup, naming it."""
    path = write(tmp_path, config(service("a", SLEEPER)))
    (tmp_path / "ctl").mkdir()
    (tmp_path / "ctl").chmod(0o777)
    result = subprocess.run(
        [sys.executable, "-m", "trisup", "run", str(path), "--no-live"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"trisup: {tmp_path / 'ctl'}: writable by others (mode 0777); chmod 0700 it\n"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_service_hanging_at_startup_does_not_delay_the_control_plane(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """The socket and the console answer while the first service never becomes ready."""
    port = _free_port()
    hang = service("hang", SLEEPER).replace('ready_pattern = "pid"', 'ready_pattern = "never"')
    body = config(hang + 'start_timeout = "none"\n', service("later", SLEEPER))
    body += f'\n[http]\nbind = "127.0.0.1:{port}"\nprefix = "/debug"\ntoken = "s3cret"\n'
    path = write(tmp_path, body)
    instance = Instance(path)
    started.append(instance)
    instance.wait_for(r"event=listening socket=")
    s = str(tmp_path / "ctl" / "app.sock")
    code, out, _ = run(capsys, "status", "-s", s, "--json")
    phases = {x["name"]: x["phase"] for x in json.loads(out)}
    assert (code, phases) == (0, {"hang": "starting", "later": "idle"})
    code, out, _ = run(
        capsys, "status", "--url", f"http://127.0.0.1:{port}/debug", "--token", "s3cret", "--json"
    )
    assert (code, [x["name"] for x in json.loads(out)]) == (0, ["hang", "later"])
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/debug/api/services", headers={"Authorization": "Bearer s3cret"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.status == 200
    # the operator can act on the hanging service meanwhile
    assert run(capsys, "stop", "-s", s, "hang")[0] == 0
    instance.wait_for(r"service=later old=starting new=running event=status")


def test_a_console_port_in_use_is_an_error_at_startup(tmp_path: Path) -> None:
    """`trisup run` exits 1 at once, naming the address, when the console cannot bind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        body = config(service("a", SLEEPER)) + f'\n[http]\nbind = "127.0.0.1:{port}"\n'
        path = write(tmp_path, body)
        result = subprocess.run(
            [sys.executable, "-m", "trisup", "run", str(path), "--no-live"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"trisup: [http] bind 127.0.0.1:{port}: cannot listen: Address already in use\n"
    )
    assert result.stdout == ""  # no service was started
    assert not (tmp_path / "ctl" / "app.sock").exists()


def test_the_output_and_reload_answers_follow_the_openapi_document(
    tmp_path: Path, started: list[Instance], capsys: pytest.CaptureFixture[str]
) -> None:
    """The socket's output and reload answers match its OpenAPI document; bad queries are 400."""
    path = write(tmp_path, config(service("ticker", TICKER)))
    instance = launch(started, path, "ticker")
    instance.wait_for(r'service=ticker .*msg="tick 2"')
    client = Client(str(tmp_path / "ctl" / "app.sock"), None, None, TIMEOUT)

    def get(path: str) -> Any:  # the JSON, its shape checked against the document
        return client.request("GET", path)

    document = get("/api/openapi.json")
    paths = document["paths"]
    assert sorted(paths["/api/service/{name}/output"]) == ["get"]
    assert sorted(paths["/api/reload"]) == ["post"]

    def check(data: object, schema: str) -> None:
        ref = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
        validate_schema(data, ref, cls=OAS31Validator)

    whole = get("/api/service/ticker/output")
    check(whole, "Output")
    count = whole["count"]
    assert whole["lines"][0] == {"stream": "stdout", "line": f"pid {whole['pid']}"}
    assert len(whole["lines"]) == count  # all still in the ring
    later = get(f"/api/service/ticker/output?after={count}&wait=5")
    assert later["count"] > count  # the long poll returned with the next line
    assert later["lines"][0]["line"] == f"tick {count - 1}"  # "pid" was the first line
    beyond = get("/api/service/ticker/output?after=999999999")
    assert beyond["lines"][0]["line"].startswith("pid ")  # a new instance: from the start
    for query in ("after=x", "after=-1", "wait=61", "wait=nan"):
        with pytest.raises(ControlError, match="after must be an integer >= 0"):
            get(f"/api/service/ticker/output?{query}")
    check(client.request("POST", "/api/reload"), "Reload")


async def test_reloads_are_serialized_and_refused_while_stopping(tmp_path: Path) -> None:
    """A reload during a reload waits, then applies the newest file; a stopping manager refuses."""
    path = write(tmp_path, config(service("a", SLEEPER)))
    plan = load_config(path)
    manager, processes = build(plan, with_http=False)
    stopping = [False]
    reloader = Reloader(manager, plan, processes, stopping=lambda: stopping[0])
    results: list[str] = []

    def version(n: int) -> str:
        return config(service("a", SLEEPER, f"env = {{ VERSION = '{n}' }}"))

    async def reload() -> None:
        results.append((await reloader.reload()).summary())

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            path.write_text(version(2))
            async with trio.open_nursery() as both:
                both.start_soon(reload)
                await trio.testing.wait_all_tasks_blocked()  # the first deletes the old a
                path.write_text(version(3))
                both.start_soon(reload)
            # without the lock both would delete the old a, then both add one: a conflict
            assert results == ["changed a; 0 unchanged", "changed a; 0 unchanged"]
            (current,) = manager.services()
            assert isinstance(current, ProcessService) and current.env == {"VERSION": "3"}
            assert processes == [current]
            path.write_text(config(service("b", SLEEPER)))
            stopping[0] = True
            with pytest.raises(ReloadError, match="manager app is stopping") as refused:
                await reloader.reload()
            assert refused.value.status == 409
            assert manager.services() == [current]
            nursery.cancel_scope.cancel()
