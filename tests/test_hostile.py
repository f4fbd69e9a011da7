"""Hostile input: hypothesis throws any value at every way a service is configured.

Every input surface gets values of any type (None, bools, huge and negative ints, NaN,
infinities, strings, containers, arbitrary objects, enum members of the wrong enum) and
unknown keys. What must hold: the call either succeeds, with every duration repaired to
a positive finite number, or raises only `TypeError` / `ValueError` naming the offending
field; a rejected call registers nothing; the manager is unaffected (the services
registered before are untouched and it still serves).

A new input surface (a TOML file, an HTTP route) is one more entry in ``SURFACES``: a
function that feeds the generated fields to the manager the way that surface would.
"""

from __future__ import annotations

import dataclasses
import decimal
import fractions
import functools
import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

import trisup
from trisup import RestartPolicy, ServiceStatus

S = ServiceStatus
EXAMPLES = settings().max_examples  # the profile's: 300 in CI, more with HYPOTHESIS_PROFILE=fuzz
FIELDS = tuple(f.name for f in dataclasses.fields(trisup.ServiceConfig))

HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Values of any type. Huge ints are given by their size: repr() of an int with more than
# 4,300 digits raises, and the test must not trip over its own reporting.
hostile_values: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=1, max_value=5_000).map(lambda digits: 10**digits),
    st.integers(min_value=1, max_value=5_000).map(lambda digits: -(10**digits)),
    st.floats(),  # NaN, infinities, subnormals, -0.0
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 0.0]),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.complex_numbers(allow_nan=True),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.sampled_from([*RestartPolicy, *ServiceStatus, trisup.ExitStatus.RESTART]),
    st.builds(object),
    st.just(random.Random()),
)
field_names = st.sampled_from(FIELDS)
unknown_keys = st.text(min_size=0, max_size=8).filter(lambda k: k not in FIELDS)
hostile_fields = st.dictionaries(
    st.one_of(field_names, field_names, unknown_keys), hostile_values, min_size=1, max_size=4
)


def shown(value: object) -> str:
    """A repr that never raises (huge ints are shown by their size)."""
    if isinstance(value, int) and abs(value) > 10**100:
        return f"<int of {value.bit_length()} bits>"
    return repr(value)


_EXAMPLES: Counter[str] = Counter()


def count(record_property: Callable[[str, object], None], key: str) -> None:
    """Count one more example of a hypothesis test, for the reliability summary."""
    _EXAMPLES[key] += 1
    record_property("cases", _EXAMPLES[key])
    record_property("unit", "examples")


def sentinel_manager() -> tuple[trisup.Manager, trisup.ServiceInfo]:
    m = trisup.Manager("hostile")
    m.add(trisup.new_service("sentinel", trio.sleep_forever), restart_delay=0.5)
    return m, m.get_service_info("sentinel")


def check_outcome(
    m: trisup.Manager,
    before: trisup.ServiceInfo,
    call: Callable[[], object],
    named: set[str],
    name: str = "svc",
) -> bool:
    """Run *call*; check the only outcomes allowed. Return whether it was accepted."""
    try:
        call()
    except (TypeError, ValueError) as exc:
        message = str(exc)
        assert any(n in message for n in named), f"{message!r} names none of {sorted(named)}"
        assert not m.has(name), "a rejected call registered the service"
        accepted = False
    else:
        accepted = m.has(name)
    assert m.get_service_info("sentinel") == before, "the sentinel was touched"
    assert [s.name for s in m.services()] == ["sentinel", *([name] if accepted else [])]
    if accepted:
        info = m.get_service_info(name)
        assert 0 < info.current_delay < math.inf
        assert info.status in (S.IDLE, S.STOPPED)
    return accepted


def still_serves(m: trisup.Manager) -> None:
    """The manager serves as before: the sentinel runs, nothing breaks."""

    async def main() -> None:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                await nursery.start(m.serve)
                assert await m.wait_status("sentinel", S.RUNNING) is S.RUNNING
                nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ---------------------------------------------------------------- the surfaces

Surface = Callable[[trisup.Manager, dict[str, object]], None]


def via_keywords(m: trisup.Manager, fields: dict[str, object]) -> None:
    m.add(trisup.new_service("svc", trio.sleep_forever), **fields)  # type: ignore[arg-type]  # hostile


def via_config(m: trisup.Manager, fields: dict[str, object]) -> None:
    config = trisup.ServiceConfig(**fields)  # type: ignore[arg-type]  # hostile on purpose
    m.add_with_config(trisup.new_service("svc", trio.sleep_forever), config)


OPTION_MAKERS: dict[str, Callable[[object], trisup.Option]] = {
    "auto_start": trisup.with_auto_start,  # type: ignore[dict-item]  # hostile on purpose
    "max_restarts": trisup.with_max_restarts,  # type: ignore[dict-item]
    "restart_delay": trisup.with_restart_delay,  # type: ignore[dict-item]
    "restart_policy": trisup.with_restart_policy,  # type: ignore[dict-item]
    "max_restart_delay": lambda v: trisup.with_backoff(v, 2.0),  # type: ignore[arg-type]
    "backoff_multiplier": lambda v: trisup.with_backoff(60.0, v),  # type: ignore[arg-type]
    "restart_window": lambda v: trisup.with_restart_window(v, 5),  # type: ignore[arg-type]
    "max_restarts_in_window": lambda v: trisup.with_restart_window(300.0, v),  # type: ignore[arg-type]
    "start_timeout": trisup.with_start_timeout,  # type: ignore[dict-item]
}


def via_options(m: trisup.Manager, fields: dict[str, object]) -> None:
    options = [OPTION_MAKERS[k](v) for k, v in fields.items() if k in OPTION_MAKERS]
    rest = {k: v for k, v in fields.items() if k not in OPTION_MAKERS}
    m.add(trisup.new_service("svc", trio.sleep_forever), *options, **rest)  # type: ignore[arg-type]  # hostile


SURFACES: dict[str, Surface] = {
    "add(**fields)": via_keywords,
    "add_with_config(ServiceConfig(...))": via_config,
    "add(*with_options)": via_options,
}


@pytest.mark.reliability(
    "hostile input: configuration",
    "any type, NaN, infinities, huge numbers and unknown keys through add(**fields), "
    "ServiceConfig and the with_* options: accepted with every duration repaired, or only "
    "TypeError/ValueError naming the field; nothing registered; the manager unaffected",
)
@pytest.mark.parametrize("surface", list(SURFACES))
@HOSTILE
@given(fields=hostile_fields)
def test_hostile_fields(
    surface: str, fields: dict[str, object], record_property: Callable[[str, object], None]
) -> None:
    """Hostile field values and keys are accepted and repaired or rejected cleanly."""
    m, before = sentinel_manager()
    check_outcome(m, before, lambda: SURFACES[surface](m, fields), set(fields) | {"option"})
    count(record_property, surface)


@pytest.mark.reliability(
    "hostile input: configuration",
    "any type, NaN, infinities, huge numbers and unknown keys through add(**fields), "
    "ServiceConfig and the with_* options: accepted with every duration repaired, or only "
    "TypeError/ValueError naming the field; nothing registered; the manager unaffected",
)
@settings(HOSTILE, max_examples=max(EXAMPLES // 10, 20))
@given(fields=hostile_fields)
def test_manager_still_serves_after_hostile_add(
    fields: dict[str, object], record_property: Callable[[str, object], None]
) -> None:
    """After a hostile add, accepted or not, the manager serves its services as before."""
    m, before = sentinel_manager()
    check_outcome(m, before, lambda: via_keywords(m, fields), set(fields) | {"option"})
    still_serves(m)
    count(record_property, "serves")


class Impostor:
    """Something that looks a little like a service."""

    def __init__(self, name: object, serve: object) -> None:
        self.name = name
        self.serve = serve


@pytest.mark.reliability(
    "hostile input: services and options",
    "any object as the service, its name or serve, as an option, as depends_on or as the "
    "config of add_with_config: only TypeError/ValueError naming it; nothing registered",
)
@HOSTILE
@given(
    name=hostile_values | st.sampled_from(["", "svc"]),
    serve=hostile_values | st.just(trio.sleep_forever),
    option=hostile_values,
    depends_on=hostile_values | st.lists(hostile_values, max_size=2),
    config=hostile_values,
)
def test_hostile_service_objects(
    name: object,
    serve: object,
    option: object,
    depends_on: object,
    config: object,
    record_property: Callable[[str, object], None],
) -> None:
    """A bad service, name, option, depends_on or config is rejected, naming what is wrong."""
    good = trisup.new_service("svc", trio.sleep_forever)
    impostor = name if isinstance(name, str) else "svc"  # registered under its name, if any
    calls: list[tuple[Callable[[trisup.Manager], object], set[str], str]] = [
        (lambda m: m.add(Impostor(name, serve)), {"service", "name", "serve"}, impostor),  # type: ignore[arg-type]
        (lambda m: m.add(good, option), {"option"}, "svc"),  # type: ignore[arg-type]
        (lambda m: m.add(good, depends_on=depends_on), {"depends_on"}, "svc"),  # type: ignore[arg-type]
        (lambda m: m.add_with_config(good, config), {"config"}, "svc"),  # type: ignore[arg-type]
        (lambda m: trisup.new_service(name, serve), {"name", "async_fn"}, "svc"),  # type: ignore[call-overload]
    ]
    for call, named, registered_as in calls:
        m, before = sentinel_manager()
        check_outcome(m, before, functools.partial(call, m), named, registered_as)
    count(record_property, "objects")


@pytest.mark.reliability(
    "hostile input: Manager()",
    "any value for every Manager() argument: a manager, or only TypeError/ValueError "
    "naming the argument",
)
@HOSTILE
@given(
    arguments=st.dictionaries(
        st.sampled_from(["name", "stop_timeout", "rng", "strategy", "intensity", "period"]),
        hostile_values,
        min_size=1,
    )
)
def test_hostile_manager_arguments(
    arguments: dict[str, object], record_property: Callable[[str, object], None]
) -> None:
    """Manager() takes its arguments or names the bad one."""
    try:
        m = trisup.Manager(**arguments)  # type: ignore[arg-type]  # hostile on purpose
    except (TypeError, ValueError) as exc:
        assert any(k in str(exc) for k in arguments), (str(exc), sorted(arguments))
    else:
        assert 0 < m.stop_timeout < math.inf
    count(record_property, "manager")


EDGES: dict[str, Callable[[object], bool]] = {
    "NaN": lambda v: isinstance(v, float) and math.isnan(v),
    "inf": lambda v: isinstance(v, float) and v == math.inf,
    "-inf": lambda v: isinstance(v, float) and v == -math.inf,
    "an int too large for a float": lambda v: type(v) is int and abs(v) > 2**1024,
    "a Decimal NaN": lambda v: isinstance(v, decimal.Decimal) and v.is_nan(),
    "a Fraction": lambda v: isinstance(v, fractions.Fraction) and v.denominator > 1,
}


@pytest.mark.parametrize("edge", list(EDGES))
def test_hostile_values_cover_the_edges(edge: str) -> None:
    """The generated values include what the issue lists: NaN, infinities, huge numbers."""
    found = find(hostile_values, EDGES[edge], settings=settings(derandomize=True, database=None))
    assert EDGES[edge](found)
    with pytest.raises((TypeError, ValueError), match="restart_delay"):
        trisup.ServiceConfig(restart_delay=found)  # type: ignore[arg-type]


def test_shown_never_calls_repr_of_a_huge_int() -> None:
    """A huge int is shown by its size (its repr would raise)."""
    assert shown(10**5000) == "<int of 16610 bits>"
    assert shown(-(10**101)) == "<int of 336 bits>"
    assert shown(10**100) == repr(10**100)
