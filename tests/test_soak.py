"""Soak in virtual time: 1,000 services flapping at random for 10**6 virtual seconds.

Each service runs attempts of random length (mostly seconds, sometimes hours) that fail
or return; some give up (FAILED) and are started again by a chaos task, which also
stops, restarts and resets services at random. At every checkpoint:

- memory stays bounded: each service's restart-window history holds at most
  ``max_restarts_in_window`` entries, the timer holds at most one healthy-reset plan
  and one backoff wait per service (stale heap entries are compacted), a subscriber
  that never reads keeps at most ``max_buffer`` events, and the number of live Python
  objects stops growing once every service has run;
- the counters agree with what the services did (entries, failures, clean returns,
  cancellations) and with the events a reading subscriber received.

The window histories and the timer heap are internal; reading them is the point here.
"""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Callable

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus
from trisup.events import ServiceExited, ServiceStarting

S = ServiceStatus
SERVICES = 1_000
HORIZON = 1_000_000.0
CHECKPOINTS = 20
CHAOS_EVERY = 5_000.0
REVIVE_EVERY = 20_000.0
STALLED_BUFFER = 64
SUCCESS_OUTCOMES = ("stopped", "clean", "no_restart")
ERROR_OUTCOMES = ("failure", "fatal", "no_restart_failure")


class Weather:
    """Storms: stretches of time during which every service fails at once."""

    def __init__(self, *storms: tuple[float, float]) -> None:
        self.storms = storms

    def times(self, step: float) -> list[float]:
        """Every *step* seconds through each storm."""
        return [a + i * step for a, b in self.storms for i in range(int((b - a) / step) + 1)]

    def stormy(self) -> bool:
        now = trio.current_time()
        return any(start <= now < end for start, end in self.storms)


class Flapper:
    """A service body that flaps at random and counts what it did."""

    def __init__(self, seed: int, weather: Weather) -> None:
        self.rng = random.Random(seed)
        self.weather = weather
        self.entries = 0
        self.failures = 0
        self.returns = 0
        self.cancellations = 0

    async def __call__(self) -> None:
        self.entries += 1
        rng = self.rng
        # mostly a burst of quick failures, now and then a run of hours
        run = rng.expovariate(1 / 4) if rng.random() < 0.3 else rng.uniform(5_000, 40_000)
        if self.weather.stormy():
            run = 0.0
        try:
            await trio.sleep(run)
        except trio.Cancelled:
            self.cancellations += 1
            raise
        if rng.random() < 0.75:
            self.failures += 1
            raise ValueError("flap")
        self.returns += 1


def window_bounds(m: trisup.Manager) -> list[tuple[int, float]]:
    """(history length, its bound) of every service's restart window (internal state)."""
    sizes: list[tuple[int, float]] = []
    for runner in m._runners.values():  # pyright: ignore[reportPrivateUsage]
        c = runner.config
        # a limit caps the history; without one, only the restarts within the window stay
        bound = c.max_restarts_in_window or c.restart_window / c.restart_delay + 1
        sizes.append((len(runner.window), bound))
    return sizes


def timer_heap(m: trisup.Manager) -> int:
    """The number of entries in the timer's heap (internal state)."""
    ctx = m._ctx  # pyright: ignore[reportPrivateUsage]
    assert ctx is not None
    timer = ctx.timer
    # live entries: at most one healthy plan and one backoff wait per service
    assert len(timer._plans) <= SERVICES  # pyright: ignore[reportPrivateUsage]
    assert len(timer._parked) <= SERVICES  # pyright: ignore[reportPrivateUsage]
    return len(timer)


@pytest.mark.reliability(
    "soak (virtual time)",
    "1,000 services flapping at random for 10⁶ virtual seconds: window histories, the "
    "timer heap, a stalled subscriber's buffer and the live objects stay bounded; counters "
    "agree with what the services did and with the events",
)
async def test_soak(
    autojump_clock: trio.testing.MockClock, record_property: Callable[[str, object], None]
) -> None:
    """1,000 flapping services over 10⁶ virtual seconds: bounded memory, consistent counters."""
    rng = random.Random(20240601)
    m = trisup.Manager("soak")
    weather = Weather((200_000, 200_100), (500_000, 500_100), (800_000, 800_100))
    flappers: dict[str, Flapper] = {}
    for i in range(SERVICES):
        name = f"s{i:04}"
        flappers[name] = Flapper(rng.randrange(2**32), weather)
        m.add(
            trisup.new_service(name, flappers[name]),
            restart_delay=rng.choice((0.5, 1.0, 2.0)),
            max_restart_delay=rng.choice((4.0, 60.0)),
            restart_window=rng.choice((30.0, 300.0)),
            max_restarts_in_window=rng.choice((0, 3, 5, 20)),
            max_restarts=rng.choice((0, 0, 0, 50)),
        )
    names = list(flappers)
    starting: Counter[str] = Counter()
    exited: Counter[tuple[str, str]] = Counter()
    objects: list[int] = []
    heap_peak = 0
    chaos = Counter[str]()

    with trio.fail_after(HORIZON * 2):
        async with (
            m.subscribe(max_buffer=1_000_000) as reader,
            m.subscribe(max_buffer=STALLED_BUFFER) as stalled,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(m.serve)
            checkpoint = HORIZON / CHECKPOINTS
            chaos_times = [CHAOS_EVERY * i for i in range(1, int(HORIZON / CHAOS_EVERY) + 1)]
            for t in sorted({*chaos_times, *weather.times(5)}):
                await trio.sleep_until(t)
                heap_peak = max(heap_peak, timer_heap(m))
                assert timer_heap(m) <= 4 * SERVICES + 1  # stale entries are compacted beyond that
                if any(t == start for start, _ in weather.storms):
                    await m.restart_services()  # an incident: everything restarted, and fails
                if t % CHAOS_EVERY:
                    continue  # a look at the heap during a storm
                for _ in range(rng.randrange(20)):  # chaos: operators poking at services
                    name = rng.choice(names)
                    verb = rng.choice(("start", "stop", "restart", "reset"))
                    chaos[verb] += 1
                    if verb == "reset":
                        m.reset_service(name)
                    else:
                        await getattr(m, f"{verb}_service")(name)
                if t % REVIVE_EVERY == 0:
                    for info in m.get_services_info():  # everyone who gave up flaps again
                        if info.status in (S.FAILED, S.STOPPED, S.COMPLETED):
                            chaos["revive"] += 1
                            await m.start_service(info.metric.name)
                while (event := reader.receive_nowait()) is not None:
                    if isinstance(event, ServiceStarting):
                        starting[event.service] += 1
                    elif isinstance(event, ServiceExited):
                        exited[event.service, event.outcome] += 1
                assert reader.lost == 0
                if t % checkpoint == 0:
                    assert all(n <= bound for n, bound in window_bounds(m))
                    assert len(list(iter(stalled.receive_nowait, None))) == STALLED_BUFFER
                    gc.collect()
                    objects.append(len(gc.get_objects()))
            nursery.cancel_scope.cancel()
        while (event := reader.receive_nowait()) is not None:
            if isinstance(event, ServiceStarting):
                starting[event.service] += 1
            elif isinstance(event, ServiceExited):
                exited[event.service, event.outcome] += 1

    assert trio.current_time() == HORIZON
    # live objects level off: the second half of the run holds no more than the first
    half = len(objects) // 2
    assert max(objects[half:]) <= max(objects[:half]) * 1.02, objects
    total_starts = 0
    for info in m.get_services_info():
        metric = info.metric
        flapper = flappers[metric.name]
        total_starts += metric.start_count
        assert metric.start_count == flapper.entries == starting[metric.name]
        assert metric.error_count == flapper.failures
        assert metric.success_count == flapper.returns + flapper.cancellations
        assert metric.error_count == sum(exited[metric.name, o] for o in ERROR_OUTCOMES)
        assert metric.success_count == sum(exited[metric.name, o] for o in SUCCESS_OUTCOMES)
        assert metric.start_count == sum(
            exited[metric.name, o] for o in (*ERROR_OUTCOMES, *SUCCESS_OUTCOMES)
        )
    assert total_starts > 50_000  # it really flapped
    assert heap_peak > SERVICES // 2  # the storms had most services in the timer at once
    record_property("unit", "run")
    record_property(
        "detail",
        f"{total_starts:,} service starts, {sum(chaos.values()):,} operator actions, "
        f"timer heap peak {heap_peak:,}",
    )
