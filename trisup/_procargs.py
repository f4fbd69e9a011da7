"""The checks of `ProcessService`'s arguments (pure).

Each returns the value to use, or raises a `TypeError` / `ValueError` that names
the argument.
"""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Iterable, Mapping, Sequence

from ._status import ExitStatus

__all__ = [
    "RELAUNCH_CODES",
    "argv_of",
    "env_of",
    "fatal_codes_of",
    "pattern_of",
    "seconds",
    "signal_of",
]

RELAUNCH_CODES = frozenset({int(ExitStatus.RESTART), int(ExitStatus.UPGRADE)})
"""Exit codes that ask for a relaunch at once, not counted as a failure."""


def seconds(param: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{param} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{param} must be positive and finite, not {value!r}")
    return float(value)


def argv_of(argv: object) -> tuple[str, ...]:
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        raise TypeError(
            f"argv must be a sequence of strings, not {type(argv).__name__}"
            " (split a command line with shlex.split)"
        )
    items: Sequence[object] = argv  # pyright: ignore[reportUnknownVariableType]
    if not items:
        raise ValueError("argv must not be empty")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"argv must hold strings only, not {type(item).__name__}")
        if "\0" in item:
            raise ValueError(f"argv[{i}] holds a NUL byte, which no program can receive: {item!r}")
    return tuple(str(item) for item in items)


def env_of(env: object) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of strings, not {type(env).__name__}")
    pairs: Mapping[object, object] = env  # pyright: ignore[reportUnknownVariableType]
    result: dict[str, str] = {}
    for key, value in pairs.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env must map strings to strings, not {key!r}: {value!r}")
        if not key or "=" in key or "\0" in key:
            raise ValueError(
                f"env name {key!r} is not a variable name (empty, or holds '=' or a NUL byte)"
            )
        if "\0" in value:
            raise ValueError(f"env value of {key} holds a NUL byte: {value!r}")
        result[key] = value
    return result


def pattern_of(pattern: object) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern  # pyright: ignore[reportUnknownVariableType]
    if not isinstance(pattern, str):
        raise TypeError(f"ready_pattern must be a str or re.Pattern, not {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"ready_pattern is not a valid regular expression: {exc}") from None


def signal_of(value: object) -> signal.Signals:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"stop_signal must be a signal number, not {type(value).__name__}")
    try:
        return signal.Signals(value)
    except ValueError:
        raise ValueError(f"stop_signal must be a signal number, not {value!r}") from None


def fatal_codes_of(codes: object) -> frozenset[int]:
    if isinstance(codes, (str, bytes)) or not isinstance(codes, Iterable):
        raise TypeError(f"fatal_exit_codes must be a collection of ints, not {codes!r}")
    items: Iterable[object] = codes  # pyright: ignore[reportUnknownVariableType]
    result: set[int] = set()
    for code in items:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"fatal_exit_codes must hold ints, not {code!r}")
        if not 1 <= code <= 255 or code in RELAUNCH_CODES:
            raise ValueError(
                f"fatal_exit_codes must be exit codes from 1 to 255 other than 3 and 4, not {code}"
            )
        result.add(code)
    return frozenset(result)
