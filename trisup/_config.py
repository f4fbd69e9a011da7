"""`ServiceConfig`, the ``with_*`` options, type checks and the seed's repair rules.

Pure: no trio import. Types are checked when a config is built (a wrong type,
NaN or an infinity is a `TypeError` / `ValueError` naming the field); values out
of range are repaired by `repair` when a service is added, each repair logged at
WARNING with the field, the given and the used value.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypedDict, final

from ._backoff import Schedule, preview
from ._errors import safe_repr
from ._status import RestartPolicy

__all__ = [
    "Option",
    "ServiceConfig",
    "ServiceFields",
    "build_config",
    "parse_policy",
    "repair",
    "seconds",
    "with_auto_start",
    "with_backoff",
    "with_max_restarts",
    "with_restart_delay",
    "with_restart_policy",
    "with_restart_window",
    "with_start_timeout",
]

logger = logging.getLogger("trisup")

_INT_FIELDS = ("max_restarts", "max_restarts_in_window")
_FLOAT_FIELDS = (
    "restart_delay",
    "max_restart_delay",
    "restart_window",
    "backoff_multiplier",
    "jitter",
    "stop_timeout",
    "grace_period",
)
_BOOL_FIELDS = ("auto_start", "critical")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """How one service is restarted and stopped. Durations are float seconds.

    Attributes:
        restart_policy: when to restart (an ``int`` is accepted).
        max_restarts: restart budget since the last manual start, restart or
            reset; 0 means unlimited.
        restart_delay: the first backoff delay.
        max_restart_delay: the backoff cap.
        restart_window: the sliding window of ``max_restarts_in_window``, and the
            uptime after which a run counts as healthy and resets the backoff.
        max_restarts_in_window: restarts allowed within the window; 0 means no limit.
        backoff_multiplier: how each delay grows.
        auto_start: start when the manager serves (or at once if it already does).
        jitter: each delay is multiplied by a uniform factor in ``[1, 1 + jitter]``.
        stop_timeout: how long a stop waits for this service to exit.
        grace_period: how long a stop lets the service wind down on its own (it
            sees ``trisup.current_service().stop_requested`` set) before it is
            cancelled; 0 cancels at once.
        start_timeout: how long an attempt may take to report ready (call
            ``task_status.started()``, or enter ``serve`` for a plain service)
            before it is cancelled and counted as a failure; ``None`` for no limit.
        critical: whether readiness summaries (``/readyz``) count this service.
    """

    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    max_restarts: int = 0
    restart_delay: float = 1.0
    max_restart_delay: float = 60.0
    restart_window: float = 300.0
    max_restarts_in_window: int = 5
    backoff_multiplier: float = 2.0
    auto_start: bool = True
    jitter: float = 0.0
    stop_timeout: float = 10.0
    grace_period: float = 0.0
    start_timeout: float | None = 60.0
    critical: bool = True

    def schedule(
        self,
        failures: int,
        *,
        now: float = 0.0,
        restarts: int = 0,
        window_times: Iterable[float] = (),
        delay: float | None = None,
    ) -> Schedule:
        """Preview the restarts of a service that fails at once, up to *failures* times.

        Answers "how long until it gives up?": the start times (jitter not
        applied; each delay may be up to ``1 + jitter`` times longer), when it
        is marked ``FAILED`` and why (the runner's reason), or whether it is
        restarted for ever. The arithmetic is the runner's own (`_backoff`).
        Out-of-range values are previewed as repaired.

        By default the service starts afresh at time 0. To preview from a
        service's state: its next attempt at *now*, the restarts counted since
        its last manual start (*restarts*), the times of those still in the
        window (*window_times*) and the delay before its next restart (*delay*).

        Raises:
            ValueError: *failures* is not a non-negative int.
        """
        c = repair(self, "schedule", log=False)
        return preview(
            failures=failures,
            restart_delay=c.restart_delay,
            max_restart_delay=c.max_restart_delay,
            backoff_multiplier=c.backoff_multiplier,
            max_restarts=c.max_restarts,
            restart_window=c.restart_window,
            max_restarts_in_window=c.max_restarts_in_window,
            jitter=c.jitter,
            now=now,
            restarts=restarts,
            window_times=window_times,
            delay=delay,
        )

    def __post_init__(self) -> None:
        policy: object = self.restart_policy
        if isinstance(policy, bool) or not isinstance(policy, int):
            raise TypeError(
                f"restart_policy must be a RestartPolicy or int, not {type(policy).__name__}"
            )
        if policy in _POLICY_VALUES:
            object.__setattr__(self, "restart_policy", RestartPolicy(policy))
        for field in _INT_FIELDS:
            value: object = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field} must be an int, not {type(value).__name__}")
        for field in _FLOAT_FIELDS:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{field} must be a number of seconds, not {type(value).__name__}")
            if not finite(value):
                raise ValueError(f"{field} must be finite, not {safe_repr(value)}")
            object.__setattr__(self, field, float(value))
        timeout: object = self.start_timeout
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                kind = type(timeout).__name__
                raise TypeError(f"start_timeout must be a number of seconds or None, not {kind}")
            if not finite(timeout):
                raise ValueError(f"start_timeout must be finite, not {safe_repr(timeout)}")
            object.__setattr__(self, "start_timeout", float(timeout))
        for field in _BOOL_FIELDS:
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise TypeError(f"{field} must be a bool, not {type(value).__name__}")


def seconds(field: str, value: object) -> float:
    """*value* as a positive, finite number of seconds.

    Raises:
        TypeError: not a number (a bool is not one).
        ValueError: not positive, or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, not {type(value).__name__}")
    if not finite(value) or value <= 0:
        raise ValueError(f"{field} must be positive and finite, not {safe_repr(value)}")
    return float(value)


def finite(value: float) -> bool:
    """Whether *value* is finite and fits in a float (an int may be too large)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


_POLICY_VALUES = frozenset(int(p) for p in RestartPolicy)
_POLICY_NAMES = {p.name.lower(): p for p in RestartPolicy}
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(ServiceConfig))


class ServiceFields(TypedDict, total=False):
    """The keywords of `Manager.add`: the `ServiceConfig` fields, each optional.

    ``restart_policy`` also takes an ``int`` or a policy's name (``"never"``,
    ``"on_failure"``, ``"always"``, any case), as in a TOML file.

    .. versionadded:: 0.1.0
    """

    restart_policy: RestartPolicy | int | str
    max_restarts: int
    restart_delay: float
    max_restart_delay: float
    restart_window: float
    max_restarts_in_window: int
    backoff_multiplier: float
    auto_start: bool
    jitter: float
    stop_timeout: float
    grace_period: float
    start_timeout: float | None
    critical: bool


def parse_policy(name: str) -> RestartPolicy:
    """The policy called *name*: ``"never"``, ``"on_failure"`` (or ``"on-failure"``), any case.

    Raises:
        ValueError: no policy has that name.
    """
    policy = _POLICY_NAMES.get(name.lower().replace("-", "_"))
    if policy is None:
        choices = ", ".join(repr(p) for p in _POLICY_NAMES)
        raise ValueError(f"restart_policy must be one of {choices}, not {safe_repr(name)}")
    return policy


@final
@dataclass(frozen=True, slots=True)
class Option:
    """A change to a `ServiceConfig`, made by one of the ``with_*`` functions."""

    changes: tuple[tuple[str, object], ...]

    def apply(self, config: ServiceConfig) -> ServiceConfig:
        """Return *config* with this option's changes."""
        return dataclasses.replace(config, **dict(self.changes))  # type: ignore[arg-type]  # values are checked by __post_init__


def with_auto_start(auto_start: bool) -> Option:
    """Start the service when the manager serves (``True``) or only on request."""
    return Option((("auto_start", auto_start),))


def with_backoff(max_delay: float, multiplier: float) -> Option:
    """Set the backoff cap and the multiplier."""
    return Option((("max_restart_delay", max_delay), ("backoff_multiplier", multiplier)))


def with_max_restarts(n: int) -> Option:
    """Set the restart budget (0 = unlimited)."""
    return Option((("max_restarts", n),))


def with_restart_delay(delay: float) -> Option:
    """Set the first backoff delay."""
    return Option((("restart_delay", delay),))


def with_restart_policy(policy: RestartPolicy) -> Option:
    """Set the restart policy."""
    return Option((("restart_policy", policy),))


def with_restart_window(window: float, max_restarts: int) -> Option:
    """Set the sliding window and the restarts allowed within it (0 = no limit)."""
    return Option((("restart_window", window), ("max_restarts_in_window", max_restarts)))


def with_start_timeout(seconds: float | None) -> Option:
    """Set how long an attempt may take to report ready (``None``: no limit).

    .. versionadded:: 0.1.0
    """
    return Option((("start_timeout", seconds),))


def build_config(options: tuple[object, ...], fields: Mapping[str, object]) -> ServiceConfig:
    """Build a config from the defaults, *options* in order, then keyword *fields*.

    A string ``restart_policy`` among *fields* is a policy's name (`parse_policy`).

    Raises:
        TypeError: an option is not an `Option`, a keyword is not a field, or a
            value has the wrong type.
        ValueError: a value is NaN or infinite, or a policy name is unknown.
    """
    config = ServiceConfig()
    for option in options:
        if not isinstance(option, Option):
            raise TypeError(f"options must be trisup Option objects, not {type(option).__name__}")
        config = option.apply(config)
    unknown = sorted(set(fields) - FIELD_NAMES)
    if unknown:
        raise TypeError(f"unknown ServiceConfig field: {', '.join(unknown)}")
    if fields:
        policy = fields.get("restart_policy")
        if isinstance(policy, str):
            fields = {**fields, "restart_policy": parse_policy(policy)}
        config = dataclasses.replace(config, **fields)  # type: ignore[arg-type]  # checked by __post_init__
    return config


def repair(config: ServiceConfig, service: str, *, log: bool = True) -> ServiceConfig:
    """Apply the seed's repair rules, logging each at WARNING; return the result."""
    if not isinstance(config, ServiceConfig):
        raise TypeError(f"config must be a ServiceConfig, not {type(config).__name__}")
    fixed: dict[str, object] = {}

    def fix(field: str, given: object, used: object) -> None:
        fixed[field] = used
        if not log:
            return
        logger.warning(
            "invalid %s=%r for service %s, using %r",
            field,
            given,
            service,
            used,
            extra={
                "service": service,
                "event": "config_repaired",
                "field": field,
                "given": given,
                "used": used,
            },
        )

    c = config
    if int(c.restart_policy) not in _POLICY_VALUES:
        fix("restart_policy", c.restart_policy, RestartPolicy.ALWAYS)
    if c.max_restarts < 0:
        fix("max_restarts", c.max_restarts, 0)
    if c.max_restarts_in_window < 0:
        fix("max_restarts_in_window", c.max_restarts_in_window, 0)
    delay = c.restart_delay
    if delay <= 0:
        delay = 1.0
        fix("restart_delay", c.restart_delay, delay)
    if c.max_restart_delay <= 0 or c.max_restart_delay < delay:
        fix("max_restart_delay", c.max_restart_delay, delay)
    if c.restart_window <= 0:
        fix("restart_window", c.restart_window, 300.0)
    if c.backoff_multiplier < 1:
        fix("backoff_multiplier", c.backoff_multiplier, 1.0)
    if c.jitter < 0:
        fix("jitter", c.jitter, 0.0)
    if c.stop_timeout <= 0:
        fix("stop_timeout", c.stop_timeout, 10.0)
    if c.grace_period < 0:
        fix("grace_period", c.grace_period, 0.0)
    if c.start_timeout is not None and c.start_timeout <= 0:
        fix("start_timeout", c.start_timeout, 60.0)
    if not fixed:
        return config
    return dataclasses.replace(config, **fixed)  # type: ignore[arg-type]  # values chosen above
