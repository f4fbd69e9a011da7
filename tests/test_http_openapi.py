"""The OpenAPI document against what is served: hypothesis-driven requests, no 5xx."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate as validate_openapi

import trisup
from trisup.http import ConsoleService
from trisup.http._openapi import openapi_document

NAMES = ["worker", "odd </b>&\"name'/x", "ünï"]
GLOBAL_ERRORS = {401, 403, 404, 405, 413, 414}
TEXT_MEDIA = {"text/html; charset=utf-8", "text/plain; version=0.0.4; charset=utf-8"}


def test_documents_are_valid_openapi() -> None:
    """The document is valid OpenAPI 3.1, with and without a token, at any prefix."""
    for prefix in ("", "/debug/supervisor"):
        for token_required in (False, True):
            validate_openapi(openapi_document(prefix, token_required=token_required))


def test_service_info_schema_is_the_seed_keys_then_the_phase() -> None:
    """ServiceInfo requires exactly to_dict()'s keys and phase, one of the Phase values."""
    document: dict[str, Any] = openapi_document("", token_required=False)
    schema = document["components"]["schemas"]["ServiceInfo"]
    m = trisup.Manager()
    m.add(trisup.new_service("w", trio.sleep_forever))
    (info,) = m.get_services_info()
    assert schema["required"] == [*info.to_dict(), "phase", "critical", "depends_on"]
    assert list(schema["properties"]) == [*schema["required"], "pid"]  # pid: processes only
    assert schema["additionalProperties"] is False
    assert schema["properties"]["phase"]["enum"] == [
        "idle",
        "waiting_deps",
        "starting",
        "running",
        "stopping",
        "backoff",
        "group_wait",
        "completed",
        "failed",
        "removed",
    ]


def _operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (path template, method), but the endless event stream."""
    return [
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if not path.endswith("/api/events")
    ]


DOCUMENT: dict[str, Any] = openapi_document("/debug/supervisor", token_required=False)
OPERATIONS = _operations(DOCUMENT)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes, str]:
    """A request: mostly a documented operation with odd names, headers and bodies."""
    path, method = draw(st.sampled_from(OPERATIONS))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["get", "post", "put", "delete", "head", "options"]))
    name = draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=40)))
    encoded = quote(name, safe="") if draw(st.booleans()) else quote(name, safe="/:@!$&'()*+,;=")
    url = path.replace("{name}", encoded)
    if draw(st.integers(0, 19)) == 0:
        url = url + "/" + quote(draw(st.text(max_size=10)), safe="")
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["X-Trisup-Token"] = draw(st.sampled_from(["-", "x", "anything"]))
    if draw(st.integers(0, 4)) == 0:
        headers["Origin"] = draw(st.sampled_from(["http://127.0.0.1:8080", "http://evil", "null"]))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=2048)))
    query = quote(draw(st.text(max_size=20)), safe="") if draw(st.integers(0, 4)) == 0 else ""
    return method.upper(), url, headers, body, query


def _schema_for(operation: dict[str, Any], status: int, media: str) -> dict[str, Any] | None:
    response = operation["responses"].get(str(status))
    if response is None:
        return None
    content = response["content"]
    media = media.split(";")[0].strip()
    for documented, value in content.items():
        if documented == media:
            return {**value["schema"], "components": DOCUMENT["components"]}
    raise AssertionError(f"{media} not documented for {status}: {list(content)}")


def _template_of(url: str) -> tuple[str, dict[str, Any]] | None:
    """The documented path template a concrete path matches, if any."""
    for template, item in DOCUMENT["paths"].items():
        pattern = re.escape(template).replace(re.escape("{name}"), "[^/]+")
        if re.fullmatch(pattern, url):
            return template, item
    return None


_BATCHES: list[int] = [0]


def _state(m: trisup.Manager) -> list[tuple[object, ...]]:
    """What a request could change: each service's presence, status and counters."""
    return [
        (
            i.name,
            i.status,
            i.stopped,
            i.failed,
            i.metric.start_count,
            i.metric.error_count,
            i.restart_count,
        )
        for i in m.get_services_info()
    ]


@pytest.mark.reliability(
    "hostile input: HTTP routes",
    "malformed JSON, huge bodies, odd names, unicode, path tricks and odd methods on "
    "every route: each answer documented in the OpenAPI document, valid, never a 5xx; "
    "a refused request changes nothing",
)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(requests(), min_size=1, max_size=6))
async def test_responses_match_the_document(
    batch: list[tuple[str, str, dict[str, str], bytes, str]],
    record_property: Callable[[str, object], None],
) -> None:
    """Every answer is documented (or a documented global error), valid, never a 5xx.

    A refused request (4xx) leaves every service as it was.
    """
    _BATCHES[0] += len(batch)
    record_property("cases", _BATCHES[0])
    record_property("unit", "requests")
    m = trisup.Manager("app")
    for name in NAMES:
        m.add(trisup.new_service(name, trio.sleep_forever))
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    transport = httpx.ASGITransport(app=console.app)
    async with (
        trio.open_nursery() as nursery,
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client,
    ):
        await nursery.start(m.serve)
        served = await client.get("/debug/supervisor/api/openapi.json")
        assert served.json() == DOCUMENT
        for method, url, headers, body, query in batch:
            target = url + ("?q=" + query if query else "")
            await trio.testing.wait_all_tasks_blocked()  # what an earlier request began
            before = _state(m)
            response = await client.request(method, target, headers=headers, content=body)
            status = response.status_code
            assert status < 500 or (status == 503 and url == "/readyz"), (method, url, status)
            if 400 <= status < 500:
                await trio.testing.wait_all_tasks_blocked()
                assert _state(m) == before, (method, url, status)
            media = response.headers.get("content-type", "")
            found = _template_of(url.split("?")[0])
            operation = found[1].get(method.lower()) if found else None
            if method == "HEAD":
                continue  # no body to check
            schema = _schema_for(operation, status, media) if operation else None
            if schema is None:
                assert status in GLOBAL_ERRORS, (method, url, status)
                assert media == "application/json"
                assert set(response.json()) == {"error"}
                continue
            if media.startswith("application/json"):
                validate_schema(json.loads(response.content), schema, cls=OAS31Validator)
            else:  # the page or /metrics: the declared type, and valid UTF-8 as it says
                assert media in TEXT_MEDIA, (method, url, media)
                response.content.decode("utf-8")  # strict: raises on a bad byte
            assert b"<b>" not in response.content or media.startswith("text/html")
        nursery.cancel_scope.cancel()
