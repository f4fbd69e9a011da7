"""``GET P/api/service/{name}/details``: the details panel's facts, in JSON."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import cast

import httpx
import pytest
import trio
import trio.testing
from asgi_console import serving
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema

import trisup
from trisup.http._openapi import openapi_document
from trisup.http._state import RECENT
from trisup.process import ProcessService

API = "/debug/supervisor/api"
Data = dict[str, object]
COMPONENTS = openapi_document("/debug/supervisor", token_required=False)["components"]


async def details(client: httpx.AsyncClient, name: str, group: str = "") -> Data:
    """The details of *name*, checked against the OpenAPI document's schema."""
    answer = await client.get(f"{API}/service/{name}/details", params={"group": group})
    assert answer.status_code == 200, answer.text
    body = cast("Data", answer.json())
    schema = {"$ref": "#/components/schemas/Details", "components": COMPONENTS}
    validate_schema(body, schema, cls=OAS31Validator)
    return body


def _wall(text: object) -> float:
    assert isinstance(text, str) and text.endswith("Z"), text
    return datetime.fromisoformat(text).timestamp()


async def _read_config() -> None:
    with open("/nonexistent/trisup-test/credentials.json"):  # noqa: ASYNC230  # it fails
        pass


async def test_details_of_a_crashing_child_process() -> None:
    """A real child: its pid while it runs, then its exit, output, schedule and error."""
    code = "import sys, time; print('starting', flush=True); print('oops', file=sys.stderr, flush=True); time.sleep(0.5); sys.exit(1)"  # noqa: E501
    child = ProcessService("crash", [sys.executable, "-c", code], cwd="/")
    m = trisup.Manager("app")
    jobs = trisup.Manager("jobs")
    jobs.add(child, restart_delay=2, max_restarts=3)
    m.add(jobs)
    with trio.fail_after(20):
        async with serving(m) as (_, client):
            while child.output_count < 2:
                await child.wait_output(child.output_count)
            body = await details(client, "crash", "jobs")
            process = cast("Data", body["process"])
            assert process["pid"] == child.pid and isinstance(child.pid, int)
            os.kill(child.pid, 0)  # the real process
            assert (process["argv"], process["cwd"]) == ([sys.executable, "-c", code], "/")
            assert (process["returncode"], process["last_exit"], process["last_exit_time"]) == (
                None,
                None,
                None,
            )
            assert (body["group"], body["phase"], body["error"]) == ("jobs", "running", None)
            assert body["schedule"] == {
                "next_attempt_at": None,
                "next_attempt_in": None,
                "remaining_failures": 4,
                "gives_up_at": cast("Data", body["schedule"])["gives_up_at"],
                "text": cast("Data", body["schedule"])["text"],
            }
            while jobs.get_service_info("crash").phase is not trisup.Phase.BACKOFF:
                await trio.sleep(0.05)
            body = await details(client, "crash", "jobs")
            process = cast("Data", body["process"])
            assert (process["pid"], process["returncode"], process["last_exit"]) == (
                None,
                1,
                "exited with code 1",
            )
            exited = _wall(process["last_exit_time"])
            assert 0 <= console_wall(body) - exited < 1  # it exited, then went into backoff
            output = cast("Data", body["output"])
            assert output["count"] == 2
            assert sorted(
                (line["stream"], line["line"]) for line in cast("list[Data]", output["lines"])
            ) == [("stderr", "oops"), ("stdout", "starting")]
            schedule = cast("Data", body["schedule"])
            wait = cast("float", schedule["next_attempt_in"])
            assert 0 < wait <= 2
            # the wait began as the attempt ended (real time: within a loaded machine's lag)
            assert _wall(schedule["next_attempt_at"]) == pytest.approx(
                _wall(cast("Data", body["info"])["last_stop_time"]) + 2, abs=0.5
            )
            # after the wait: restart 1, then two more failures (1, 2) allowed by
            # max_restarts=3; the third (after 4 s and 8 s) marks it failed
            assert schedule["remaining_failures"] == 3
            gives_up = _wall(schedule["gives_up_at"]) - _wall(schedule["next_attempt_at"])
            assert gives_up == pytest.approx(4 + 8, abs=0.01)
            assert cast("str", schedule["text"]).startswith("next attempt in ")
            assert "gives up after 3 more failures at " in cast("str", schedule["text"])
            error = cast("Data", body["error"])
            assert error["type"] == "ProcessExited"
            assert error["message"] == "exited with code 1; stderr: oops"
            assert "trisup.process.ProcessExited: exited with code 1" in cast(
                "str", error["traceback"]
            )
            # the next run is up: its pid, and the last exit still shown beside it
            while child.pid is None:
                await trio.sleep(0.05)
            later = await details(client, "crash", "jobs")
            process = cast("Data", later["process"])
            assert (process["pid"], process["returncode"], process["last_exit"]) == (
                child.pid,
                None,
                "exited with code 1",
            )
            assert _wall(process["last_exit_time"]) == exited
            events = cast("list[Data]", body["events"])
            assert [e["kind"] for e in events if e["kind"] in ("exited", "backing_off")] == [
                "exited",
                "backing_off",
            ]
            assert "crash: phase running -> backoff" in [e["message"] for e in events]
            assert body["config"] == {
                "restart_policy": "always",
                "max_restarts": 3,
                "restart_delay": 2.0,
                "max_restart_delay": 60.0,
                "restart_window": 300.0,
                "max_restarts_in_window": 5,
                "backoff_multiplier": 2.0,
                "auto_start": True,
                "jitter": 0.0,
                "stop_timeout": 10.0,
                "grace_period": 0.0,
                "start_timeout": 60.0,
                "critical": True,
            }


async def test_details_of_an_in_process_error(autojump_clock: trio.testing.MockClock) -> None:
    """A FileNotFoundError: its type, traceback and a schedule the runner then keeps to."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("db", trio.sleep_forever))
    m.add(trisup.new_service("cfg", _read_config), depends_on=["db"], restart_delay=1)
    with trio.fail_after(100):
        async with serving(m) as (console, client):
            await trio.sleep(0.5)  # failed at 0, waits until 1
            body = await details(client, "cfg")
            assert (body["process"], body["output"]) == (None, None)
            assert (body["phase"], body["shown"], body["status"]) == (
                "backoff",
                "backoff",
                "crashing",
            )
            assert (body["depends_on"], body["dependents"]) == (["db"], [])
            assert (await details(client, "db"))["dependents"] == ["cfg"]
            error = cast("Data", body["error"])
            assert error["type"] == "FileNotFoundError"
            assert "/nonexistent/trisup-test/credentials.json" in cast("str", error["message"])
            assert "in _read_config" in cast("str", error["traceback"])
            assert (
                cast("str", error["traceback"])
                .rstrip()
                .splitlines()[-1]
                .startswith("FileNotFoundError: [Errno 2]")
            )
            schedule = cast("Data", body["schedule"])
            # the console's wall clock and the manager's are both set from the system
            # clock at virtual time 0, a few real milliseconds apart
            assert schedule["next_attempt_in"] == pytest.approx(0.5, abs=0.1)
            # restarts at 1, 3, 7, 15, 31 (delays 1, 2, 4, 8, 16); the 5th within the
            # 300 s window is the last one: the attempt at 31 fails and gives up
            assert schedule["remaining_failures"] == 5
            gives_up = _wall(schedule["gives_up_at"])
            failed_at = _wall(cast("Data", body["info"])["last_stop_time"])  # at 0
            assert gives_up - failed_at == pytest.approx(31, abs=0.01)
            assert cast("str", schedule["text"]).startswith(
                "next attempt in 0.5 s; gives up after 5 more failures at "
            )
            await m.wait_status("cfg", trisup.ServiceStatus.FAILED)
            assert trio.current_time() == 31  # as the schedule said
            failed = await details(client, "cfg")
            assert failed["phase"] == "failed"
            assert _wall(cast("Data", failed["info"])["last_error_time"]) == pytest.approx(
                gives_up, abs=0.01
            )
            assert failed["schedule"] == {
                "next_attempt_at": None,
                "next_attempt_in": None,
                "remaining_failures": 0,
                "gives_up_at": None,
                "text": "failed: not restarted until started by hand",
            }
            assert console.name == "console"


def console_wall(body: Data) -> float:
    """The console's clock when it answered *body* (its last event is from then or before)."""
    return cast("float", cast("list[Data]", body["events"])[-1]["ts"])


async def _crash() -> None:
    raise RuntimeError("again")


async def test_recent_events_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """The details list a service's last 50 events, oldest first; a running one is quiet."""
    m = trisup.Manager("app")
    m.add(
        trisup.new_service("loop", _crash),
        restart_delay=0.5,
        max_restart_delay=0.5,
        max_restarts_in_window=0,
    )
    m.add(trisup.new_service("calm", trio.sleep_forever))
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    with trio.fail_after(100):
        async with serving(m) as (_, client):
            await trio.sleep(20)  # 40 restarts, about 8 events each
            body = await details(client, "loop")
            events = cast("list[Data]", body["events"])
            assert len(events) == RECENT == 50
            times = [cast("float", e["ts"]) for e in events]
            assert times == sorted(times)
            assert events[-1]["kind"] == "phase"
            assert events[-1]["message"] == "loop: phase running -> backoff"
            assert cast("Data", body["schedule"])["remaining_failures"] is None
            assert "restarted for ever" in cast("str", cast("Data", body["schedule"])["text"])
            calm = await details(client, "calm")
            assert len(cast("list[Data]", calm["events"])) < RECENT
            assert cast("Data", calm["schedule"])["remaining_failures"] == 6  # window: 5
            manual = await details(client, "manual")
            assert (manual["shown"], manual["events"], manual["schedule"]) == (
                "stopped",
                [],
                {
                    "next_attempt_at": None,
                    "next_attempt_in": None,
                    "remaining_failures": 6,
                    "gives_up_at": None,
                    "text": "not running; once started, gives up after 6 failures in a row",
                },
            )
            unknown = await client.get(f"{API}/service/nope/details")
            assert (unknown.status_code, unknown.json()) == (
                404,
                {"error": "service not found, name=nope"},
            )


def test_manager_exposes_the_effective_config() -> None:
    """get_service_config is the config as repaired when added; get_service the object."""
    m = trisup.Manager("app")
    svc = trisup.new_service("w", trio.sleep_forever)
    m.add(svc, restart_delay=-1, max_restarts=2, critical=False)
    config = m.get_service_config("w")
    assert (config.restart_delay, config.max_restarts, config.critical) == (1.0, 2, False)
    assert m.get_service("w") is svc
    with pytest.raises(trisup.ServiceNotFound):
        m.get_service_config("nope")
