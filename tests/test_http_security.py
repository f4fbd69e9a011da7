"""The console's settings and token rules: binds, prefixes, tokens, credentials."""

from __future__ import annotations

import base64

import httpx
import pytest
import trio
import trio.testing

import trisup
from trisup.http import ConsoleService
from trisup.http._security import Bind, is_loopback, parse_bind, resolve_token

API = "/debug/supervisor/api"
TOKEN = "s3cret-token_0123456789"


def _client(console: ConsoleService, host: str = "192.0.2.7:8080") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console.app)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}")


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8080", Bind("127.0.0.1", 8080, True)),
        ("127.1.2.3:0", Bind("127.1.2.3", 0, True)),
        ("localhost:9", Bind("localhost", 9, True)),
        ("[::1]:65535", Bind("::1", 65535, True)),
        ("0.0.0.0:80", Bind("0.0.0.0", 80, False)),
        (":8080", Bind("", 8080, False)),
        ("[::]:8080", Bind("::", 8080, False)),
        ("example.com:80", Bind("example.com", 80, False)),
    ],
)
def test_parse_bind(bind: str, expected: Bind) -> None:
    """HOST:PORT parses, and loopback is recognised."""
    assert parse_bind(bind) == expected
    assert parse_bind(str(expected)) == expected


@pytest.mark.parametrize(
    "bind", ["8080", "localhost:", "host:99999", "::1:80", "[::1]80", "[::1", "h:-1", "h:８"]
)
def test_parse_bind_refuses(bind: str) -> None:
    """Malformed binds are ValueErrors."""
    with pytest.raises(ValueError, match="bind"):
        parse_bind(bind)


def test_is_loopback() -> None:
    """Only loopback names and addresses count."""
    assert is_loopback("LOCALHOST")
    assert is_loopback("::1")
    assert not is_loopback("localhost.example.com")
    assert not is_loopback("192.168.1.1")


def test_resolve_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token comes from the argument, else TRISUP_TOKEN; bad ones are refused."""
    monkeypatch.delenv("TRISUP_TOKEN", raising=False)
    assert resolve_token(None) is None
    assert resolve_token("abc") == "abc"
    monkeypatch.setenv("TRISUP_TOKEN", "from-env")
    assert resolve_token(None) == "from-env"
    assert resolve_token("explicit") == "explicit"
    monkeypatch.setenv("TRISUP_TOKEN", "")
    assert resolve_token(None) is None
    for bad in ("", "has space", "tab\there", "ünï"):
        with pytest.raises(ValueError, match="token"):
            resolve_token(bad)
    with pytest.raises(TypeError, match="token"):
        resolve_token(123)  # type: ignore[arg-type]


def test_non_loopback_bind_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binding beyond loopback without a token is refused; with one it is accepted."""
    monkeypatch.delenv("TRISUP_TOKEN", raising=False)
    m = trisup.Manager()
    for bind in ("0.0.0.0:8080", ":8080", "[::]:8080", "example.com:80"):
        with pytest.raises(ValueError, match="requires a token"):
            ConsoleService(m, bind=bind)
    assert ConsoleService(m, bind="0.0.0.0:8080", token=TOKEN).token_required
    assert not ConsoleService(m, bind="[::1]:0").token_required
    monkeypatch.setenv("TRISUP_TOKEN", TOKEN)
    console = ConsoleService(m, bind="0.0.0.0:8080")
    assert console.token_required
    assert repr(console) == "<trisup.http.ConsoleService 'console' bind='0.0.0.0:8080'>"


def test_constructor_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong types and prefixes are refused with the argument named."""
    monkeypatch.delenv("TRISUP_TOKEN", raising=False)
    m = trisup.Manager()
    with pytest.raises(TypeError, match="manager"):
        ConsoleService(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        ConsoleService(m, name="")
    with pytest.raises(TypeError, match="bind"):
        ConsoleService(m, bind=8080)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prefix"):
        ConsoleService(m, prefix=None)  # type: ignore[arg-type]
    for prefix in ("debug", "/a b", "/a/../b", "/metrics", "/x?y", "/<b>"):
        with pytest.raises(ValueError, match="prefix"):
            ConsoleService(m, prefix=prefix)
    assert ConsoleService(m, prefix="/ops/").prefix == "/ops"
    assert ConsoleService(m, prefix="/").prefix == ""
    assert ConsoleService(m).url is None


async def test_token_on_every_route(autojump_clock: trio.testing.MockClock) -> None:
    """With a token every route needs it: header, Bearer, or Basic for GET only."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    console = ConsoleService(m, bind="0.0.0.0:0", token=TOKEN)
    m.add(console)
    routes = [
        "/debug/supervisor/",
        "/debug/supervisor/static/console.js",
        f"{API}/services",
        f"{API}/service/worker",
        f"{API}/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
        "/nowhere",
    ]
    async with trio.open_nursery() as nursery, _client(console) as client:
        await nursery.start(m.serve)
        for route in routes:
            bare = await client.get(route)
            assert bare.status_code == 401, route
            assert bare.json() == {"error": "unauthorized"}
            assert bare.headers["www-authenticate"] == 'Basic realm="trisup", charset="UTF-8"'
            wrong = await client.get(route, headers={"X-Trisup-Token": TOKEN + "x"})
            assert wrong.status_code == 401
            for ok in (
                {"X-Trisup-Token": TOKEN},
                {"Authorization": f"Bearer {TOKEN}"},
                {"Authorization": f"bearer  {TOKEN} "},
                _basic("anyone", TOKEN),
            ):
                response = await client.get(route, headers=ok)
                assert response.status_code == (404 if route == "/nowhere" else 200), (route, ok)
            for bad in (
                {"Authorization": f"Bearer {TOKEN[:-1]}"},
                _basic(TOKEN, "nope"),
                {"Authorization": "Basic %%%"},
                {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},
            ):
                assert (await client.get(route, headers=bad)).status_code == 401
        nursery.cancel_scope.cancel()


async def test_token_on_posts(autojump_clock: trio.testing.MockClock) -> None:
    """A POST is accepted only with the token in X-Trisup-Token (never Basic or Bearer)."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0", token=TOKEN)
    m.add(console)
    url = f"{API}/service/worker/restart"
    async with trio.open_nursery() as nursery, _client(console, "ops.example:443") as client:
        await nursery.start(m.serve)
        for headers in (
            {},
            {"Authorization": f"Bearer {TOKEN}"},
            _basic("u", TOKEN),
            {"X-Trisup-Token": "-"},
            {"X-Trisup-Token": TOKEN.upper()},
        ):
            response = await client.post(url, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="trisup"'
        response = await client.post(url, headers={"X-Trisup-Token": TOKEN})
        assert response.status_code == 200  # a token lifts the loopback Host check
        assert m.get_service_info("worker").metric.start_count == 2
        document = (await client.get(f"{API}/openapi.json", headers=_basic("", TOKEN))).json()
        assert document["security"] == [{"tokenHeader": []}, {"bearer": []}, {"basic": []}]
        stop = document["paths"][f"{API}/service/{{name}}/stop"]["post"]
        assert stop["security"] == [{"tokenHeader": []}]
        assert "401" in stop["responses"]
        nursery.cancel_scope.cancel()
