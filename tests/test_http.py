"""The console's JSON API, page and probes, through an in-process ASGI client."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
import trio
import trio.testing
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema

import trisup
from trisup import ServiceStatus
from trisup.http import ConsoleService
from trisup.http._openapi import openapi_document

S = ServiceStatus
API = "/debug/supervisor/api"
POST = {"X-Trisup-Token": "-"}


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom <b>&</b>")


async def _stubborn() -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(5)


async def _ready_after(t: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


def client_for(console: ConsoleService, host: str = "127.0.0.1:8080") -> httpx.AsyncClient:
    """An httpx client talking to the console's app in-process."""
    transport = httpx.ASGITransport(app=console.app)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


@asynccontextmanager
async def serving(
    manager: trisup.Manager, **options: object
) -> AsyncGenerator[tuple[ConsoleService, httpx.AsyncClient]]:
    """Serve *manager* with a console added last; yield it and a client."""
    console = ConsoleService(manager, bind="127.0.0.1:0", **options)  # type: ignore[arg-type]
    manager.add(console)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        async with client_for(console) as client:
            yield console, client
        nursery.cancel_scope.cancel()


def _manager() -> trisup.Manager:
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(trisup.new_service("flappy", _fail_after, 0.5), restart_delay=1)
    return m


async def test_services_list_is_the_go_json(autojump_clock: trio.testing.MockClock) -> None:
    """GET /api/services is every ServiceInfo.to_dict() plus its phase, in registration order."""
    m = _manager()
    async with serving(m) as (_, client):
        await trio.sleep(1.75)  # between flappy's changes, never at the same instant
        response = await client.get(f"{API}/services")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        infos = m.get_services_info()
        assert response.json() == [
            {**i.to_dict(), "phase": str(i.phase), "critical": True, "depends_on": []}
            for i in infos
        ]
        assert [list(s) for s in response.json()] == [
            [*i.to_dict(), "phase", "critical", "depends_on"] for i in infos
        ]
        # flappy failed at 0.5 and runs again since 1.5 (until 2); the others since 0
        assert [
            (
                s["name"],
                s["status"],
                s["phase"],
                s["start_count"],
                s["error_count"],
                s["current_delay"],
            )
            for s in response.json()
        ] == [
            ("worker", "running", "running", 1, 0, "1s"),
            ("flappy", "crashing", "running", 2, 1, "2s"),
            ("console", "running", "running", 1, 0, "1s"),
        ]
        assert response.json()[1]["last_error"] == "boom <b>&</b>"
        assert b"<b>" not in response.content  # markup is escaped in the JSON text
        await trio.sleep(0.5)  # flappy failed again at 2: it waits out 2 s
        response = await client.get(f"{API}/service/flappy")
        assert (response.json()["status"], response.json()["phase"]) == ("crashing", "backoff")


async def test_the_phase_of_a_held_service(autojump_clock: trio.testing.MockClock) -> None:
    """A service stopped by hand shows stopped=true and its phase: stopping, then idle."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("stubborn", _stubborn), stop_timeout=1)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    async with serving(m) as (_, client):
        response = await client.get(f"{API}/service/manual")
        assert (response.json()["stopped"], response.json()["phase"]) == (True, "idle")
        stop = await client.post(f"{API}/service/stubborn/stop", headers=POST)
        assert stop.status_code == 504  # its cleanup takes 5 s
        response = await client.get(f"{API}/service/stubborn")
        assert (response.json()["status"], response.json()["stopped"]) == ("stopped", True)
        assert response.json()["phase"] == "stopping"
        await trio.sleep(4.5)  # it exited at 5
        response = await client.get(f"{API}/service/stubborn")
        assert (response.json()["stopped"], response.json()["phase"]) == (True, "idle")
        assert trio.current_time() == 5.5


async def test_one_service_and_unknown_name(autojump_clock: trio.testing.MockClock) -> None:
    """GET /api/service/{name} gives one info; an unknown name is 404 with the Go message."""
    m = _manager()
    async with serving(m) as (_, client):
        response = await client.get(f"{API}/service/worker")
        assert response.status_code == 200
        info = m.get_service_info("worker")
        assert response.json() == {
            **info.to_dict(),
            "phase": "running",
            "critical": True,
            "depends_on": [],
        }
        response = await client.get(f"{API}/service/nope")
        assert response.status_code == 404
        assert response.json() == {"error": "service not found, name=nope"}
        assert (await client.get(f"{API}/service/")).status_code == 404
        assert (await client.get(f"{API}/service/worker/extra/parts")).status_code == 404


async def test_names_are_escaped_and_may_hold_slashes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A name with / and markup is reachable percent-encoded and never echoed raw."""
    m = trisup.Manager("app")
    name = "jobs/<script>alert(1)</script>&"
    m.add(trisup.new_service(name, trio.sleep_forever))
    async with serving(m) as (_, client):
        encoded = "jobs%2F%3Cscript%3Ealert(1)%3C%2Fscript%3E%26"
        response = await client.get(f"{API}/service/{encoded}")
        assert response.status_code == 200
        assert response.json()["name"] == name
        assert b"<" not in response.content and b"&" not in response.content
        response = await client.post(f"{API}/service/{encoded}/stop", headers=POST)
        assert response.json() == {"status": "ok", "message": f"service stopped, name={name}"}
        assert b"<" not in response.content
        missing = await client.get(f"{API}/service/%3Cimg%20src%3Dx%3E")
        assert missing.status_code == 404
        assert missing.json() == {"error": "service not found, name=<img src=x>"}
        assert b"<img" not in missing.content
        assert b"\\u003cimg src=x\\u003e" in missing.content


async def test_stop_start_restart_reset(autojump_clock: trio.testing.MockClock) -> None:
    """Each verb answers the Go success body and acts; conflicts are 409."""
    m = _manager()
    async with serving(m) as (_, client):
        response = await client.post(f"{API}/service/worker/stop", headers=POST)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "message": "service stopped, name=worker"}
        assert m.get_service_info("worker").status is S.STOPPED
        again = await client.post(f"{API}/service/worker/stop", headers=POST)
        assert again.status_code == 409
        assert again.json() == {"error": "service is stopped, name=worker"}
        response = await client.post(f"{API}/service/worker/start", headers=POST)
        assert response.json() == {"status": "ok", "message": "service started, name=worker"}
        assert m.get_service_info("worker").status is S.RUNNING
        again = await client.post(f"{API}/service/worker/start", headers=POST)
        assert again.status_code == 409
        assert again.json() == {"error": "service is running, name=worker"}
        response = await client.post(f"{API}/service/worker/restart", headers=POST)
        assert response.json() == {"status": "ok", "message": "service restarted, name=worker"}
        assert m.get_service_info("worker").metric.start_count == 3
        response = await client.post(f"{API}/service/worker/reset", headers=POST)
        assert response.json() == {"status": "ok", "message": "service reset, name=worker"}
        assert trio.current_time() == 0


async def test_stop_and_restart_a_crashing_service(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crashing service (running or backing off) can be stopped, restarted and reset."""
    m = _manager()
    async with serving(m) as (_, client):
        await m.wait_status("flappy", S.CRASHING)
        assert trio.current_time() == 0.5  # failed once, now backing off for 1 s
        response = await client.post(f"{API}/service/flappy/restart", headers=POST)
        assert response.status_code == 200
        info = m.get_service_info("flappy")
        assert info.status is S.RUNNING
        assert info.restart_count == 0
        await m.wait_status("flappy", S.CRASHING)
        response = await client.post(f"{API}/service/flappy/stop", headers=POST)
        assert response.status_code == 200
        assert m.get_service_info("flappy").status is S.STOPPED
        response = await client.post(f"{API}/service/flappy/start", headers=POST)
        assert response.status_code == 200
        assert m.get_service_info("flappy").status is S.RUNNING


async def test_start_cuts_a_backoff_short(autojump_clock: trio.testing.MockClock) -> None:
    """Starting a service in backoff is no conflict: it runs again at once."""
    m = _manager()
    async with serving(m) as (_, client):
        await trio.sleep(1)  # flappy failed at 0.5 and waits until 1.5
        assert m.get_service_info("flappy").phase is trisup.Phase.BACKOFF
        response = await client.post(f"{API}/service/flappy/start", headers=POST)
        assert response.json() == {"status": "ok", "message": "service started, name=flappy"}
        info = m.get_service_info("flappy")
        assert (info.phase, info.metric.start_count) == (trisup.Phase.RUNNING, 2)
        assert trio.current_time() == 1
        again = await client.post(f"{API}/service/flappy/start", headers=POST)
        assert again.json() == {"error": "service is running, name=flappy"}


async def test_unknown_names_and_verbs(autojump_clock: trio.testing.MockClock) -> None:
    """Every verb answers 404 for an unknown name; unknown verbs and methods are refused."""
    m = _manager()
    async with serving(m) as (_, client):
        for verb in ("restart", "stop", "start", "reset"):
            response = await client.post(f"{API}/service/nope/{verb}", headers=POST)
            assert response.status_code == 404
            assert response.json() == {"error": "service not found, name=nope"}
        assert (await client.post(f"{API}/service/worker/kill", headers=POST)).status_code == 404
        encoded_prefix = "/debug/%73upervisor/api/service/worker"
        assert (await client.get(encoded_prefix)).status_code == 404
        wrong = await client.get(f"{API}/service/worker/stop")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "POST"
        wrong = await client.post(f"{API}/service/worker", headers=POST)
        assert wrong.status_code == 405
        assert wrong.json() == {"error": "method not allowed"}
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            response = await client.request(method, f"{API}/services")
            assert response.status_code == 405
            assert response.json() == {"error": "method not allowed"}
        response = await client.get("/nowhere/<b>")
        assert response.status_code == 404
        assert response.json() == {"error": "not found"}
        assert m.get_service_info("worker").status is S.RUNNING


async def test_stop_timeout_is_504(autojump_clock: trio.testing.MockClock) -> None:
    """A stop or restart that outlives the service's stop_timeout answers 504."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("stubborn", _stubborn), stop_timeout=1)
    async with serving(m) as (_, client):
        await trio.sleep(1)
        response = await client.post(f"{API}/service/stubborn/stop", headers=POST)
        assert response.status_code == 504
        assert response.json() == {"error": "service did not stop within 1s, name=stubborn"}
        assert trio.current_time() == 2
        await trio.sleep(5)
        await client.post(f"{API}/service/stubborn/start", headers=POST)
        response = await client.post(f"{API}/service/stubborn/restart", headers=POST)
        assert response.status_code == 504
        assert trio.current_time() == 8
        await trio.sleep(5)
        await client.post(f"{API}/service/stubborn/start", headers=POST)
        response = await client.post(f"{API}/services/restart", headers=POST)
        assert response.status_code == 200  # the stubborn one's timeout is logged
        assert trio.current_time() == 14
        assert m.get_service_info("stubborn").status is S.STOPPED


async def test_restart_all(autojump_clock: trio.testing.MockClock) -> None:
    """POST /api/services/restart restarts every service, the console itself last."""
    m = _manager()
    async with serving(m) as (console, client):
        starts = {i.name: i.metric.start_count for i in m.get_services_info()}
        assert starts == {"worker": 1, "flappy": 1, "console": 1}
        response = await client.post(f"{API}/services/restart", headers=POST)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "message": "all services restarted"}
        starts = {i.name: i.metric.start_count for i in m.get_services_info()}
        assert starts == {"worker": 2, "flappy": 2, "console": 2}
        await m.wait_status("console", S.RUNNING)
        (url,) = console.urls  # listening again, on a fresh port
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", url)
        assert console.url == f"{url}/debug/supervisor/"
        response = await client.get(f"{API}/services")
        assert response.status_code == 200


async def test_restart_all_without_the_console_in_the_manager(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A console watching another manager restarts all of that manager's services."""
    outer = trisup.Manager("outer")
    inner = trisup.Manager("inner")
    inner.add(trisup.new_service("job", trio.sleep_forever))
    outer.add(inner)
    console = ConsoleService(inner, bind="127.0.0.1:0")
    outer.add(console)
    async with trio.open_nursery() as nursery, client_for(console) as client:
        await nursery.start(outer.serve)
        await inner.wait_status("job", S.RUNNING)
        response = await client.post(f"{API}/services/restart", headers=POST)
        assert response.status_code == 200
        assert inner.get_service_info("job").metric.start_count == 2
        nursery.cancel_scope.cancel()


async def test_probes(autojump_clock: trio.testing.MockClock) -> None:
    """/healthz is 200 while serving; /readyz is 503 naming the services not ready."""
    m = trisup.Manager("app")
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    m.add(trisup.new_service("warm", _ready_after, 2))
    m.add(trisup.new_service("flappy", _fail_after, 0.5), restart_delay=1)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    async with trio.open_nursery() as nursery, client_for(console) as client:
        nursery.start_soon(m.serve)
        await m.wait_status("console", S.RUNNING)
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "message": "manager app is serving"}
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"error": "not ready: warm, flappy", "not_ready": ["warm", "flappy"]}
        await m.wait_status("flappy", S.CRASHING)
        assert trio.current_time() == 2.5
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"error": "not ready: flappy", "not_ready": ["flappy"]}
        await trio.sleep(1.25)
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "message": "ready"}
        nursery.cancel_scope.cancel()


async def test_readyz_counts_critical_services_and_takes_exclude_and_verbose(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A crash-looping non-critical service keeps /readyz at 200; exclude= and verbose."""
    m = trisup.Manager("app")
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    m.add(trisup.new_service("db", trio.sleep_forever))
    m.add(trisup.new_service("worker", _fail_after, 0.5), restart_delay=10, critical=False)
    m.add(trisup.new_service("cache", _fail_after, 0.5), restart_delay=10)
    async with trio.open_nursery() as nursery, client_for(console) as client:
        nursery.start_soon(m.serve)
        await m.wait_status("worker", S.CRASHING)
        await m.wait_status("cache", S.CRASHING)
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {"error": "not ready: cache", "not_ready": ["cache"]},  # worker does not count
        )
        ready = await client.get("/readyz", params={"exclude": "cache"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ok", "message": "ready"})
        ready = await client.get("/readyz?exclude=cache&exclude=nosuch&verbose")
        assert ready.status_code == 200
        body = ready.json()
        assert body["warnings"] == ["cannot exclude 'nosuch': no such service"]
        checks = {c["name"]: c for c in body["checks"]}
        assert list(checks) == ["console", "db", "worker", "cache"]
        assert checks["db"] == {
            "name": "db",
            "ready": True,
            "critical": True,
            "excluded": False,
            "counted": True,
            "phase": "running",
        }
        assert (checks["worker"]["ready"], checks["worker"]["counted"]) == (False, False)
        assert (checks["cache"]["excluded"], checks["cache"]["counted"]) == (True, False)
        verbose = await client.get("/readyz?verbose")
        assert verbose.status_code == 503
        assert verbose.json()["not_ready"] == ["cache"]
        assert verbose.json()["warnings"] == []
        components = openapi_document("/debug/supervisor", token_required=False)["components"]
        for answer, name in ((ready, "Ready"), (verbose, "NotReady")):
            schema = {"$ref": f"#/components/schemas/{name}", "components": components}
            validate_schema(answer.json(), schema, cls=OAS31Validator)
        services = (await client.get(f"{API}/services")).json()
        assert [(s["name"], s["critical"]) for s in services] == [
            ("console", True),
            ("db", True),
            ("worker", False),
            ("cache", True),
        ]
        nursery.cancel_scope.cancel()


async def test_refusals_while_the_manager_stops(autojump_clock: trio.testing.MockClock) -> None:
    """During shutdown, probes answer 503 and every action 409."""
    m = _manager()
    answers: dict[str, httpx.Response] = {}
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)

    @m.before_stop
    async def probe() -> None:
        await trio.testing.wait_all_tasks_blocked()
        async with client_for(console) as client:
            answers["health"] = await client.get("/healthz")
            answers["ready"] = await client.get("/readyz")
            answers["stop"] = await client.post(f"{API}/service/worker/stop", headers=POST)
            answers["all"] = await client.post(f"{API}/services/restart", headers=POST)

    with trio.move_on_after(1):
        await m.serve()
    assert answers["health"].status_code == 503
    assert answers["health"].json() == {"error": "manager app is stopping"}
    assert answers["ready"].status_code == 503
    assert answers["ready"].json() == {"error": "manager app is stopping", "not_ready": []}
    for key in ("stop", "all"):
        assert answers[key].status_code == 409
        assert answers[key].json() == {"error": "manager app is stopping"}


async def test_page_and_assets(autojump_clock: trio.testing.MockClock) -> None:
    """The page and its assets are served from the package with a strict policy."""
    m = _manager()
    async with serving(m) as (_, client):
        redirect = await client.get("/debug/supervisor")
        assert redirect.status_code == 308
        assert redirect.headers["location"] == "/debug/supervisor/"
        page = await client.get("/debug/supervisor/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        assert b'src="static/console.js"' in page.content
        assert b"http://" not in page.content and b"https://" not in page.content
        script = await client.get("/debug/supervisor/static/console.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert b"EventSource" in script.content
        assert b"innerHTML" not in script.content
        style = await client.get("/debug/supervisor/static/console.css")
        assert style.headers["content-type"] == "text/css; charset=utf-8"
        for asset in (script, style):
            assert b"http://" not in asset.content and b"https://" not in asset.content
        for missing in ("nope.js", "index.html", "..%2F_app.py"):
            response = await client.get(f"/debug/supervisor/static/{missing}")
            assert response.status_code == 404


async def test_prefix_at_the_root(autojump_clock: trio.testing.MockClock) -> None:
    """With prefix '', the page is at / and the API at /api."""
    m = _manager()
    async with serving(m, prefix="") as (_, client):
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/api/services")).status_code == 200
        document = (await client.get("/api/openapi.json")).json()
        assert "/api/service/{name}/stop" in document["paths"]


async def test_security_headers(autojump_clock: trio.testing.MockClock) -> None:
    """Every answer, errors included, carries nosniff, no-referrer, DENY and no-store."""
    m = _manager()
    async with serving(m) as (_, client):
        for response in (
            await client.get(f"{API}/services"),
            await client.get("/nope"),
            await client.post(f"{API}/service/worker/stop"),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["cache-control"] == "no-store"
            assert "set-cookie" not in response.headers


async def test_post_rules_without_a_token(autojump_clock: trio.testing.MockClock) -> None:
    """A POST needs the token header, the same origin and a small body."""
    m = _manager()
    url = f"{API}/service/worker/reset"
    async with serving(m) as (_, client):
        bare = await client.post(url)
        assert bare.status_code == 403
        assert bare.json() == {"error": "POST requests must carry the X-Trisup-Token header"}
        same = {**POST, "Origin": "http://127.0.0.1:8080"}
        assert (await client.post(url, headers=same)).status_code == 200
        for foreign in (
            {"Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "null"},
            {"Origin": "http://[::1"},
        ):
            refused = await client.post(url, headers={**POST, **foreign})
            assert refused.status_code == 403, foreign
            assert refused.json() == {"error": "cross-origin request refused"}
        big = await client.post(url, headers=POST, content=b"x" * 1025)
        assert big.status_code == 413
        assert big.json() == {"error": "request body too large"}
        assert (await client.post(url, headers=POST, content=b"x" * 1024)).status_code == 200

        lying = {**POST, "Content-Length": "nonsense"}
        response = await client.post(url, headers=lying, content=b"")
        assert response.status_code == 413


async def test_bounded_paths_and_hosts(autojump_clock: trio.testing.MockClock) -> None:
    """Long paths and queries are 414; without a token a foreign Host is 403."""
    m = _manager()
    async with serving(m) as (console, client):
        long_name = "n" * 3000
        response = await client.get(f"{API}/service/{long_name}")
        assert response.status_code == 414
        assert response.json() == {"error": "request path too long"}
        response = await client.get(f"{API}/services", params={"q": "x" * 3000})
        assert response.status_code == 414
        for host in ("localhost:8080", "127.0.0.2", "[::1]:9"):
            async with client_for(console, host) as other:
                assert (await other.get(f"{API}/services")).status_code == 200
        for host in ("evil.example", "evil.example:8080", "10.0.0.1"):
            async with client_for(console, host) as other:
                response = await other.get(f"{API}/services")
                assert response.status_code == 403
                assert response.json() == {"error": "host not allowed"}


async def test_openapi_lists_every_route(autojump_clock: trio.testing.MockClock) -> None:
    """The OpenAPI document names exactly the routes served."""
    m = _manager()
    async with serving(m) as (_, client):
        document = (await client.get(f"{API}/openapi.json")).json()
        paths = {path: sorted(ops) for path, ops in document["paths"].items()}  # path -> methods
        expected = {
            "/debug/supervisor/": ["get"],
            f"{API}/services": ["get"],
            f"{API}/service/{{name}}": ["get"],
            f"{API}/service/{{name}}/output": ["get"],
            f"{API}/service/{{name}}/details": ["get"],
            f"{API}/services/restart": ["post"],
            f"{API}/events": ["get"],
            f"{API}/openapi.json": ["get"],
            "/metrics": ["get"],
            "/healthz": ["get"],
            "/readyz": ["get"],
            **{
                f"{API}/service/{{name}}/{v}": ["post"]
                for v in ("restart", "stop", "start", "reset")
            },
        }
        assert paths == expected
        assert "security" not in document
        assert (document["openapi"], document["info"]["title"]) == ("3.1.0", "trisup console")
