"""ServiceConfig defaults, options, type checks and the seed's repair rules."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import trio
import trio.testing

import trisup
from trisup import RestartPolicy, ServiceConfig
from trisup._config import build_config, repair


def test_defaults_are_the_seeds() -> None:
    """The defaults are the seed's DefaultServiceConfig plus trisup's own fields."""
    c = ServiceConfig()
    assert c.restart_policy is RestartPolicy.ALWAYS
    assert (c.max_restarts, c.restart_delay, c.max_restart_delay) == (0, 1.0, 60.0)
    assert (c.restart_window, c.max_restarts_in_window, c.backoff_multiplier) == (300.0, 5, 2.0)
    assert c.auto_start is True
    assert (c.jitter, c.stop_timeout, c.grace_period) == (0.0, 10.0, 0.0)
    assert (c.start_timeout, c.critical) == (60.0, True)


def test_options_then_keywords() -> None:
    """Options apply in order, then keywords."""
    c = build_config(
        (
            trisup.with_restart_delay(2),
            trisup.with_backoff(30, 1.5),
            trisup.with_restart_window(100, 3),
            trisup.with_max_restarts(7),
            trisup.with_restart_policy(RestartPolicy.ON_FAILURE),
            trisup.with_auto_start(False),
            trisup.with_restart_delay(4),
            trisup.with_start_timeout(5),
        ),
        {"restart_delay": 5.0, "jitter": 0.5, "critical": False},
    )
    assert c.restart_delay == 5.0
    assert (c.max_restart_delay, c.backoff_multiplier) == (30.0, 1.5)
    assert (c.restart_window, c.max_restarts_in_window) == (100.0, 3)
    assert c.max_restarts == 7
    assert c.restart_policy is RestartPolicy.ON_FAILURE
    assert c.auto_start is False
    assert c.jitter == 0.5
    assert c.start_timeout == 5.0
    assert c.critical is False


def test_unknown_keyword() -> None:
    """An unknown keyword is a TypeError naming it."""
    with pytest.raises(TypeError, match="restart_dely"):
        build_config((), {"restart_dely": 1.0})


def test_non_option() -> None:
    """A positional argument that is not an Option is a TypeError."""
    with pytest.raises(TypeError, match="Option"):
        build_config((5,), {})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("restart_delay", "1", TypeError),
        ("restart_delay", True, TypeError),
        ("restart_delay", None, TypeError),
        ("restart_delay", math.nan, ValueError),
        ("max_restart_delay", math.inf, ValueError),
        ("restart_window", -math.inf, ValueError),
        ("backoff_multiplier", [2], TypeError),
        ("jitter", math.nan, ValueError),
        ("stop_timeout", math.inf, ValueError),
        ("max_restarts", 1.0, TypeError),
        ("max_restarts", False, TypeError),
        ("max_restarts_in_window", "5", TypeError),
        ("restart_policy", "always", TypeError),
        ("restart_policy", True, TypeError),
        ("restart_policy", 1.0, TypeError),
        ("auto_start", 1, TypeError),
        ("auto_start", "yes", TypeError),
        ("start_timeout", True, TypeError),
        ("start_timeout", "60", TypeError),
        ("start_timeout", [60], TypeError),
        ("start_timeout", math.nan, ValueError),
        ("start_timeout", math.inf, ValueError),
        ("start_timeout", 10**400, ValueError),
        ("critical", 1, TypeError),
        ("critical", None, TypeError),
        ("critical", "false", TypeError),
    ],
)
def test_bad_types_name_the_field(field: str, value: object, error: type[Exception]) -> None:
    """Wrong types, NaN and infinities are never repaired: an error names the field."""
    with pytest.raises(error, match=field):
        ServiceConfig(**{field: value})  # type: ignore[arg-type]  # deliberately wrong


def test_int_policy_accepted() -> None:
    """An int is accepted for restart_policy and becomes the enum."""
    assert ServiceConfig(restart_policy=2).restart_policy is RestartPolicy.NEVER  # type: ignore[arg-type]


def test_ints_for_durations() -> None:
    """Integer durations are accepted and stored as floats."""
    c = ServiceConfig(restart_delay=2, start_timeout=30)
    assert c.restart_delay == 2.0
    assert type(c.restart_delay) is float
    assert type(c.start_timeout) is float


def test_start_timeout_none_means_no_limit(caplog: pytest.LogCaptureFixture) -> None:
    """start_timeout=None is valid, never repaired, and settable by with_start_timeout."""
    caplog.set_level(logging.WARNING, logger="trisup")
    c = build_config((trisup.with_start_timeout(None),), {})
    assert c.start_timeout is None
    assert repair(c, "svc") is c
    assert build_config((), {"start_timeout": None}).start_timeout is None
    assert not caplog.records


def test_start_timeout_repair_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A start_timeout <= 0 becomes 60.0, logged with the field, the given and the used value."""
    caplog.set_level(logging.WARNING, logger="trisup")
    fixed = repair(ServiceConfig(start_timeout=0), "svc")
    assert fixed.start_timeout == 60.0
    [record] = caplog.records
    assert record.getMessage() == "invalid start_timeout=0.0 for service svc, using 60.0"
    assert (record.__dict__["given"], record.__dict__["used"]) == (0.0, 60.0)


@pytest.mark.parametrize(
    ("name", "policy"),
    [
        ("never", RestartPolicy.NEVER),
        ("NEVER", RestartPolicy.NEVER),
        ("on_failure", RestartPolicy.ON_FAILURE),
        ("On-Failure", RestartPolicy.ON_FAILURE),
        ("Always", RestartPolicy.ALWAYS),
    ],
)
def test_string_policy_keyword(name: str, policy: RestartPolicy) -> None:
    """A restart_policy keyword may be a policy's name in any case, as in TOML."""
    assert build_config((), {"restart_policy": name}).restart_policy is policy


async def test_string_policies_through_add(autojump_clock: trio.testing.MockClock) -> None:
    """add(restart_policy="never" / "on-failure" / "ALWAYS") runs each policy."""
    m = trisup.Manager()
    m.add(trisup.new_service("never", _boom), restart_policy="never")
    m.add(trisup.new_service("on_failure", _return), restart_policy="on-failure")
    m.add(trisup.new_service("always", _return), restart_policy="ALWAYS", max_restarts=1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await m.wait_status("never", trisup.ServiceStatus.FAILED)
            await m.wait_status("on_failure", trisup.ServiceStatus.COMPLETED)
            await m.wait_status("always", trisup.ServiceStatus.FAILED)
            assert trio.current_time() == 1
            nursery.cancel_scope.cancel()
    starts = {i.name: i.metric.start_count for i in m.get_services_info()}
    assert starts == {"never": 1, "on_failure": 1, "always": 2}


@pytest.mark.parametrize("name", ["sometimes", "", "on failure", "0"])
def test_unknown_policy_name(name: str) -> None:
    """An unknown policy name is a ValueError naming the field and the choices."""
    m = trisup.Manager()
    with pytest.raises(
        ValueError,
        match=r"^restart_policy must be one of 'always', 'on_failure', 'never', not ",
    ):
        m.add(trisup.new_service("svc", _serve), restart_policy=name)
    assert not m.has("svc")


def test_service_fields_lists_every_field() -> None:
    """The TypedDict of add's keywords has exactly the ServiceConfig fields, all optional."""
    names = {f.name for f in dataclasses.fields(ServiceConfig)}
    assert set(trisup.ServiceFields.__annotations__) == names
    assert trisup.ServiceFields.__optional_keys__ == names
    assert trisup.ServiceFields.__required_keys__ == frozenset()


async def _serve() -> None:
    await trio.sleep_forever()


async def _return() -> None:
    await trio.lowlevel.checkpoint()


async def _boom() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("boom")


ALWAYS = RestartPolicy.ALWAYS


@pytest.mark.parametrize(
    ("given", "repairs"),
    [
        ({"restart_policy": 7}, [("restart_policy", 7, ALWAYS)]),
        ({"restart_policy": -1}, [("restart_policy", -1, ALWAYS)]),
        ({"max_restarts": -3}, [("max_restarts", -3, 0)]),
        ({"max_restarts_in_window": -1}, [("max_restarts_in_window", -1, 0)]),
        ({"restart_delay": 0}, [("restart_delay", 0.0, 1.0)]),
        ({"restart_delay": -5}, [("restart_delay", -5.0, 1.0)]),
        ({"max_restart_delay": 0}, [("max_restart_delay", 0.0, 1.0)]),
        ({"restart_delay": 5, "max_restart_delay": 2}, [("max_restart_delay", 2.0, 5.0)]),
        # compared with the already-repaired restart_delay (1.0), 0.5 is too small
        (
            {"restart_delay": -1, "max_restart_delay": 0.5},
            [("restart_delay", -1.0, 1.0), ("max_restart_delay", 0.5, 1.0)],
        ),
        ({"restart_window": 0}, [("restart_window", 0.0, 300.0)]),
        ({"backoff_multiplier": 0.5}, [("backoff_multiplier", 0.5, 1.0)]),
        ({"jitter": -0.1}, [("jitter", -0.1, 0.0)]),
        ({"stop_timeout": 0}, [("stop_timeout", 0.0, 10.0)]),
        ({"stop_timeout": -1}, [("stop_timeout", -1.0, 10.0)]),
        ({"start_timeout": 0}, [("start_timeout", 0.0, 60.0)]),
        ({"start_timeout": -0.5}, [("start_timeout", -0.5, 60.0)]),
    ],
)
def test_repair(
    given: dict[str, object],
    repairs: list[tuple[str, object, object]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Out-of-range values get the seed's repair, logged at WARNING with given and used."""
    caplog.set_level(logging.WARNING, logger="trisup")
    config = ServiceConfig(**given)  # type: ignore[arg-type]  # test table
    fixed = repair(config, "svc")
    used = {field: value for field, _, value in repairs}
    assert fixed == ServiceConfig(**{**given, **used})  # type: ignore[arg-type]  # test table
    logged = [
        (
            r.levelno,
            r.__dict__["service"],
            r.__dict__["field"],
            r.__dict__["given"],
            r.__dict__["used"],
        )
        for r in caplog.records
    ]
    assert logged == [(logging.WARNING, "svc", *repaired) for repaired in repairs]
    assert [r.getMessage() for r in caplog.records] == [
        f"invalid {f}={g!r} for service svc, using {u!r}" for f, g, u in repairs
    ]


def test_valid_config_untouched(caplog: pytest.LogCaptureFixture) -> None:
    """A valid config is returned as is, with nothing logged."""
    caplog.set_level(logging.WARNING, logger="trisup")
    c = ServiceConfig(backoff_multiplier=1.0, max_restart_delay=1.0)
    assert repair(c, "svc") is c
    assert not caplog.records


def test_fractional_multiplier_and_cap_kept() -> None:
    """A multiplier of 1.5 and a cap equal to the delay are valid."""
    c = ServiceConfig(backoff_multiplier=1.5, restart_delay=2.0, max_restart_delay=2.0)
    assert repair(c, "x") is c
