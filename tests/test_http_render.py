"""Shared bodies of the console: one snapshot for many requests, never a stale one after a change.

Also the cached time formatting: the same text as the plain ``strftime`` formatting.
"""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime, timedelta, timezone

import httpx
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

import trisup
from trisup._health import api_dict
from trisup._snapshot import _datetime  # pyright: ignore[reportPrivateUsage]
from trisup._status import rfc3339
from trisup.http import ConsoleService
from trisup.http._json import json_bytes
from trisup.http._metrics import SupervisorCollector
from trisup.http._render import GZIP_MIN, OFF_LOOP, SharedBody, accepts_gzip, services_body
from trisup.http._state import ConsoleState

API = "/debug/supervisor/api"
POST = {"X-Trisup-Token": "-"}


def _strftime_rfc3339(moment: datetime | None) -> str:
    """The formatting before the cache, kept here as the reference."""
    if moment is None:
        return "0001-01-01T00:00:00Z"
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _outcome(fn: object, moment: datetime | None) -> str:
    try:
        return fn(moment)  # type: ignore[operator,no-any-return]
    except (OverflowError, ValueError) as exc:
        return type(exc).__name__


def _offset(minutes: int) -> timezone:
    return timezone(timedelta(minutes=minutes))


_OFFSETS = st.builds(_offset, st.integers(-23 * 60, 23 * 60))
_ZONES = st.one_of(st.just(UTC), _OFFSETS, st.none())


@given(st.lists(st.datetimes(timezones=_ZONES), min_size=1, max_size=20))
def test_rfc3339_is_the_strftime_text(moments: list[datetime]) -> None:
    """Over random instants (UTC, fixed offsets, naive; any year), twice each: the same text."""
    for moment in [*moments, *moments, None]:
        assert _outcome(rfc3339, moment) == _outcome(_strftime_rfc3339, moment)


@given(
    st.lists(
        st.floats(min_value=-62_135_596_800.0, max_value=253_402_300_799.0, allow_nan=False),
        max_size=20,
    )
)
def test_snapshot_datetimes_are_fromtimestamp(values: list[float]) -> None:
    """A snapshot's times, cached or not, are ``datetime.fromtimestamp(posix, UTC)``."""
    for posix in [*values, *values]:
        try:
            expected: object = datetime.fromtimestamp(posix, UTC)
        except (OverflowError, ValueError, OSError) as exc:
            expected = type(exc)
        try:
            got: object = _datetime(posix)
        except (OverflowError, ValueError, OSError) as exc:
            got = type(exc)
        assert got == expected
        if isinstance(got, datetime):
            assert got.tzinfo is UTC
    assert _datetime(None) is None


def test_accepts_gzip() -> None:
    """``gzip`` named with a q above 0; anything else is the identity."""
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, GZIP;q=0.5, br")
    assert not accepts_gzip("")
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("gzip;q=nonsense")
    assert not accepts_gzip("x-gzip2")


# --------------------------------------------------------------- the console


async def _fail_at_once() -> None:
    raise RuntimeError("boom")


def _console(m: trisup.Manager) -> tuple[ConsoleService, httpx.AsyncClient]:
    console = ConsoleService(m, bind="127.0.0.1:0")
    m.add(console)
    transport = httpx.ASGITransport(app=console.app)
    return console, httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")


async def _services(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    response = await client.get(f"{API}/services")
    assert response.status_code == 200
    return {s["name"]: s for s in response.json()}


async def test_a_verb_is_in_the_next_get(autojump_clock: trio.testing.MockClock) -> None:
    """A body reused while nothing changed never hides a verb, an added or a deleted service."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    m.add(trisup.new_service("other", trio.sleep_forever))
    _, client = _console(m)
    async with trio.open_nursery() as nursery, client:
        await nursery.start(m.serve)
        await trio.sleep(1)
        first = await client.get(f"{API}/services")
        again = await client.get(f"{API}/services")
        assert again.content == first.content  # no event, same tick: the same body
        assert (await client.post(f"{API}/service/worker/stop", headers=POST)).status_code == 200
        assert (await _services(client))["worker"]["stopped"] is True
        assert (await client.post(f"{API}/service/worker/start", headers=POST)).status_code == 200
        got = await _services(client)
        assert (got["worker"]["stopped"], got["worker"]["start_count"]) == (False, 2)
        m.add(trisup.new_service("late", trio.sleep_forever))
        assert "late" in await _services(client)
        await m.delete("other")
        assert list(await _services(client)) == ["worker", "console", "late"]
        nursery.cancel_scope.cancel()


async def test_uptime_moves_across_ticks(autojump_clock: trio.testing.MockClock) -> None:
    """Without any event, a body lives a tick: the next one has the uptime of its moment."""
    m = trisup.Manager("app")
    m.add(trisup.new_service("worker", trio.sleep_forever))
    _, client = _console(m)
    async with trio.open_nursery() as nursery, client:
        await nursery.start(m.serve)
        await trio.sleep(1)
        before = (await _services(client))["worker"]["current_uptime"]
        await trio.sleep(0.5)
        after = (await _services(client))["worker"]["current_uptime"]
        assert isinstance(before, int) and isinstance(after, int)
        assert after - before == 500_000_000
        nursery.cancel_scope.cancel()


async def test_many_requests_share_one_snapshot(autojump_clock: trio.testing.MockClock) -> None:
    """Twenty requests in a crash loop's storm of events: a few snapshots, not twenty."""
    m = trisup.Manager("app")
    m.add(
        trisup.new_service("crasher", _fail_at_once),
        restart_delay=0.001,
        max_restart_delay=0.001,
        backoff_multiplier=1.0,
        max_restarts=0,
        max_restarts_in_window=0,
    )
    _, client = _console(m)
    snapshots = 0
    take = m.get_services_info

    def counted() -> list[trisup.ServiceInfo]:
        nonlocal snapshots
        snapshots += 1
        return take()

    async with trio.open_nursery() as nursery, client:
        await nursery.start(m.serve)
        await trio.sleep(1)
        m.get_services_info = counted  # type: ignore[method-assign]
        bodies: list[bytes] = []

        async def get() -> None:
            bodies.append((await client.get(f"{API}/services")).content)

        async with trio.open_nursery() as requests:
            for _ in range(20):
                requests.start_soon(get)
        assert len(bodies) == 20
        assert snapshots <= 2  # the ConsoleState's own reseeds are not counted here
        assert len(set(bodies)) <= 2
        nursery.cancel_scope.cancel()


async def test_gzip_for_clients_that_accept_it(autojump_clock: trio.testing.MockClock) -> None:
    """A large body comes gzip-encoded to a client that accepts it; the same JSON either way."""
    m = trisup.Manager("app")
    for i in range(50):
        m.add(trisup.new_service(f"s{i}", trio.sleep_forever), auto_start=False)
    _, client = _console(m)
    async with trio.open_nursery() as nursery, client:
        await nursery.start(m.serve)
        await trio.sleep(1)
        packed = await client.get(f"{API}/services", headers={"Accept-Encoding": "gzip"})
        plain = await client.get(f"{API}/services", headers={"Accept-Encoding": "identity"})
        assert packed.headers["content-encoding"] == "gzip"
        assert "content-encoding" not in plain.headers
        assert packed.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"
        assert packed.content == plain.content  # httpx decodes
        assert int(packed.headers["content-length"]) < len(plain.content) // 5
        nursery.cancel_scope.cancel()


def _held_manager(n: int) -> trisup.Manager:
    m = trisup.Manager("app")
    for i in range(n):
        m.add(trisup.new_service(f"s<{i}>&", trio.sleep_forever), auto_start=False)
    return m


async def test_bodies_are_the_uncached_rendering() -> None:
    """On the loop and in a thread, tracked or not: the bytes of `json_bytes` of `api_dict`."""
    for n in (3, OFF_LOOP, 3 * OFF_LOOP):
        m = _held_manager(n)
        state = ConsoleState(m)
        shared = SharedBody(state)
        expected = json_bytes([api_dict(info) for info in m.get_services_info()])
        assert services_body(m.get_services_info()) == expected
        untracked = await shared.get()
        assert untracked.identity == expected
        async with trio.open_nursery() as nursery:
            await nursery.start(state.track)
            body = await shared.get()
            assert body.identity == expected
            if len(expected) >= GZIP_MIN:
                assert body.gzip is not None and gzip.decompress(body.gzip) == expected
            else:
                assert body.gzip is None
            assert await shared.get() is body  # nothing changed: reused
            nursery.cancel_scope.cancel()


async def _within(scope: trio.CancelScope, shared: SharedBody) -> None:
    with scope:
        await shared.get()


async def _into(got: list[bytes], shared: SharedBody) -> None:
    got.append((await shared.get()).identity)


async def test_a_cancelled_request_leaves_the_others_their_body() -> None:
    """A leader cancelled while it waits, or while its thread encodes: the others get a body."""
    m = _held_manager(20 * OFF_LOOP)
    state = ConsoleState(m)
    shared = SharedBody(state)
    async with trio.open_nursery() as nursery:
        await nursery.start(state.track)
        await shared.get()
        for encoding in (False, True):
            # an event: the body is stale, the next request leads a render after a while
            m.add(trisup.new_service(f"extra-{encoding}", trio.sleep_forever), auto_start=False)
            got: list[bytes] = []
            leader = trio.CancelScope()
            async with trio.open_nursery() as requests:
                requests.start_soon(_within, leader, shared)
                await trio.lowlevel.checkpoint()
                requests.start_soon(_into, got, shared)
                await trio.lowlevel.checkpoint()
                if encoding:  # the snapshot is taken: the leader waits for its thread
                    while shared._next is not None:  # pyright: ignore[reportPrivateUsage]
                        await trio.sleep(0.001)
                leader.cancel()
            expected = json_bytes([api_dict(info) for info in m.get_services_info()])
            assert got == [expected]
        nursery.cancel_scope.cancel()


async def test_metrics_read_on_the_loop_written_in_a_thread() -> None:
    """``/metrics`` of many services: the text of a plain scrape; the info read on the loop only."""
    m = _held_manager(2 * OFF_LOOP)
    collected: list[int] = []

    class Spy(Collector):
        def collect(self) -> list[Metric]:
            collected.append(threading.get_ident())
            return []

    served = CollectorRegistry()
    served.register(Spy())
    console = ConsoleService(m, bind="127.0.0.1:0", registry=served)
    m.add(console)
    readers: list[int] = []
    take = m.get_services_info

    def recorded() -> list[trisup.ServiceInfo]:
        readers.append(threading.get_ident())
        return take()

    m.get_services_info = recorded  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=console.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert readers == [threading.get_ident()]  # once, on the Trio thread
    assert collected[-1] != threading.get_ident()  # the registry: in a worker thread
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(m))
    expected = generate_latest(registry).decode()
    text = response.text
    assert text.count("trisup_service_up{") == 2 * OFF_LOOP + 1
    # the same families and samples; the console's collector adds the manager's state
    assert [line for line in text.splitlines() if "trisup_manager_state" not in line] == [
        line for line in expected.splitlines()
    ]
