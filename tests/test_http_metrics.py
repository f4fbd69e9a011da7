"""/metrics: the collector's families, parsed back with prometheus_client's parsers."""

from __future__ import annotations

import re

import httpx
import trio
import trio.testing
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,  # pyright: ignore[reportUnknownVariableType]
)
from prometheus_client.parser import text_string_to_metric_families

import trisup
from trisup import ServiceStatus
from trisup.http import ConsoleService, SupervisorCollector

S = ServiceStatus
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
COUNTERS = (
    "trisup_service_starts",
    "trisup_service_errors",
    "trisup_service_successes",
    "trisup_service_run_seconds",
)
GAUGES = (
    "trisup_service_up",
    "trisup_service_status",
    "trisup_service_phase",
    "trisup_service_restarts",
    "trisup_service_restarts_in_window",
    "trisup_service_consecutive_failures",
    "trisup_service_restart_delay_seconds",
    "trisup_service_uptime_seconds",
    "trisup_manager_state",
    "trisup_manager_services",
)


async def _fail_after(t: float) -> None:
    await trio.sleep(t)
    raise ValueError("boom")


def _manager() -> trisup.Manager:
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(trisup.new_service("flappy", _fail_after, 0.5), restart_delay=1)
    m.add(trisup.new_service("manual", trio.sleep_forever), auto_start=False)
    return m


def _samples(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, labels), and every family's type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples, types


def _at(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def _client(console: ConsoleService) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=console.app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_metrics_of_a_crash_loop(autojump_clock: trio.testing.MockClock) -> None:
    """Per-service up, status, counts, delay and uptime, and the manager's state."""
    m = _manager()
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    async with trio.open_nursery() as nursery, _client(console) as client:
        await nursery.start(m.serve)
        await trio.sleep(3)  # flappy: failed at 0.5 and 2, waits until 4
        response = await client.get("/metrics")
        nursery.cancel_scope.cancel()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = _samples(response.text)
    app = {"manager": "app"}
    flappy = {**app, "service": "flappy"}
    worker = {**app, "service": "worker"}
    manual = {**app, "service": "manual"}
    assert _at(samples, "trisup_service_up", **flappy) == 0
    assert _at(samples, "trisup_service_up", **worker) == 1
    assert _at(samples, "trisup_service_up", **manual) == 0
    assert _at(samples, "trisup_service_status", **flappy, status="crashing") == 1
    assert _at(samples, "trisup_service_status", **flappy, status="running") == 0
    assert _at(samples, "trisup_service_status", **manual, status="stopped") == 1
    phases = ["idle", "waiting_deps", "starting", "running", "stopping", "backoff", "group_wait"]
    phases += ["completed", "failed"]  # every phase but removed
    for service, now in ((flappy, "backoff"), (worker, "running"), (manual, "idle")):
        assert {p: _at(samples, "trisup_service_phase", **service, phase=p) for p in phases} == {
            p: float(p == now) for p in phases
        }, service
    assert _at(samples, "trisup_service_starts_total", **flappy) == 2
    assert _at(samples, "trisup_service_errors_total", **flappy) == 2
    assert _at(samples, "trisup_service_successes_total", **flappy) == 0
    assert _at(samples, "trisup_service_restarts", **flappy) == 1
    assert _at(samples, "trisup_service_restarts_in_window", **flappy) == 1
    assert _at(samples, "trisup_service_consecutive_failures", **flappy) == 2
    assert _at(samples, "trisup_service_restart_delay_seconds", **flappy) == 2
    assert _at(samples, "trisup_service_uptime_seconds", **flappy) == 0
    assert _at(samples, "trisup_service_run_seconds_total", **flappy) == 1
    assert _at(samples, "trisup_service_uptime_seconds", **worker) == 3
    assert _at(samples, "trisup_manager_state", **app, state="serving") == 1
    assert _at(samples, "trisup_manager_state", **app, state="stopping") == 0
    assert _at(samples, "trisup_manager_services", **app) == 4
    assert types == {name: "counter" for name in COUNTERS} | {name: "gauge" for name in GAUGES}
    for name, _ in samples:  # Prometheus naming: a prefix, snake case, base units
        assert re.fullmatch(r"trisup_(service|manager)_[a-z_]+", name), name
        assert "millis" not in name and "ns" not in name.split("_")


async def test_openmetrics_on_request(autojump_clock: trio.testing.MockClock) -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format."""
    m = _manager()
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    async with trio.open_nursery() as nursery, _client(console) as client:
        await nursery.start(m.serve)
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        response = await client.get("/metrics", headers=accept)
        nursery.cancel_scope.cancel()
    # prometheus_client may add parameters after these (escaping=...)
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert response.text.endswith("# EOF\n")
    families = openmetrics_families(response.text)  # type: ignore[no-untyped-call]  # untyped
    assert {family.name for family in families} == {*COUNTERS, *GAUGES}


async def test_a_registry_of_ones_own(autojump_clock: trio.testing.MockClock) -> None:
    """A registry passed in is served, the console's collector registered in it."""
    m = _manager()
    registry = CollectorRegistry()
    jobs = Counter("app_jobs", "Jobs done.", registry=registry)
    jobs.inc(3)
    console = ConsoleService(m, bind="127.0.0.1:0", registry=registry)
    m.add(console)
    async with trio.open_nursery() as nursery, _client(console) as client:
        await nursery.start(m.serve)
        samples, _ = _samples((await client.get("/metrics")).text)
        nursery.cancel_scope.cancel()
    assert samples["app_jobs_total", frozenset()] == 3
    assert _at(samples, "trisup_service_up", manager="app", service="worker") == 1


def test_collector_alone() -> None:
    """SupervisorCollector works in any registry, also outside a Trio run."""
    m = _manager()
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(m))
    samples, types = _samples(generate_latest(registry).decode())
    assert "trisup_manager_state" not in types
    assert _at(samples, "trisup_manager_services", manager="app") == 3
    assert (
        _at(samples, "trisup_service_status", manager="app", service="worker", status="idle") == 1
    )
    assert _at(samples, "trisup_service_up", manager="app", service="worker") == 0
    worker = {"manager": "app", "service": "worker"}
    assert _at(samples, "trisup_service_phase", **worker, phase="idle") == 1
    assert _at(samples, "trisup_service_phase", **worker, phase="running") == 0
    assert not any(labels == {*worker.items(), ("phase", "removed")} for _, labels in samples)
