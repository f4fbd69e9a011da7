"""Hostile TOML: any document `trisup run` might be given fails cleanly or loads.

Random text, and well-formed documents whose tables and keys hold values of every
TOML type (NaN, infinities, huge integers, nested tables, unicode keys): loading
either succeeds or raises `ConfigError` naming the file; no other exception escapes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trisup._tomlconfig import ConfigError, parse_config

FILE = "hostile.toml"
KEYS = [
    "command", "argv", "cwd", "env", "restart_policy", "max_restarts", "restart_delay",
    "max_restart_delay", "restart_window", "max_restarts_in_window", "backoff_multiplier",
    "auto_start", "jitter", "stop_timeout", "grace_period", "depends_on", "ready_pattern",
    "ready_after", "stop_signal", "kill_after", "name", "bind", "prefix", "token", "bogus",
    "start_timeout", "critical",
]  # fmt: skip
_EXAMPLES: Counter[str] = Counter()
# any character TOML can hold: everything but lone surrogates
_chars = st.characters(exclude_categories=["Cs"])


def _toml_str(text: str) -> str:
    """A TOML basic string holding *text* (JSON's escapes, DEL escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _scalar() -> st.SearchStrategy[str]:
    """TOML literals of every scalar type, hostile ones included."""
    return st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e308", "-0.0", "0.5", "1e-320"]),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.booleans().map(lambda b: "true" if b else "false"),
        st.text(_chars, max_size=20).map(_toml_str),  # JSON strings are TOML basic strings
        st.sampled_from(["1979-05-27T07:32:00Z", "07:32:00", "1979-05-27"]),
    )


def _value() -> st.SearchStrategy[str]:
    scalar = _scalar()
    return st.one_of(
        scalar,
        st.lists(scalar, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.sampled_from(KEYS), scalar, max_size=3).map(
            lambda d: "{" + ", ".join(f"{_toml_str(k)} = {v}" for k, v in d.items()) + "}"
        ),
    )


def _table(header: str) -> st.SearchStrategy[str]:
    key = st.one_of(st.sampled_from(KEYS), st.text(_chars, min_size=1, max_size=8))
    return st.dictionaries(key, _value(), max_size=6).map(
        lambda d: f"[{header}]\n" + "".join(f"{_toml_str(k)} = {v}\n" for k, v in d.items())
    )


_name = st.text(_chars, min_size=1, max_size=10).map(_toml_str)
documents = st.lists(
    st.one_of(
        _table("manager"),
        _table("http"),
        _name.flatmap(lambda n: _table(f"services.{n}")),
        _table("services"),
        _table("unknown"),
    ),
    max_size=5,
    unique_by=lambda table: table.split("\n", 1)[0],  # a table defined twice is not TOML
).map("\n".join)

HOSTILE = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)


def _check(text: str, tmp: Path) -> None:
    try:
        parse_config(text, file=FILE, base_dir=tmp)
    except ConfigError as exc:
        assert str(exc).startswith(f"{FILE}: "), str(exc)
        assert exc.file == FILE


def _count(record_property: Callable[[str, object], None], key: str) -> None:
    _EXAMPLES[key] += 1
    record_property("cases", _EXAMPLES[key])
    record_property("unit", "examples")


@pytest.mark.reliability(
    "hostile input: TOML files",
    "random text: loads, or a ConfigError naming the file; nothing else escapes",
)
@HOSTILE
@given(text=st.text(max_size=200))
def test_random_text(
    text: str,
    tmp_path_factory: pytest.TempPathFactory,
    record_property: Callable[[str, object], None],
) -> None:
    """Arbitrary text is loaded or rejected with a ConfigError naming the file."""
    _check(text, Path("."))
    _count(record_property, "text")


@pytest.mark.reliability(
    "hostile input: TOML files",
    "well-formed documents with hostile tables, keys and values of every TOML type: "
    "loads, or a ConfigError naming file, table and key; nothing else escapes",
)
@HOSTILE
@given(text=documents)
def test_hostile_documents(text: str, record_property: Callable[[str, object], None]) -> None:
    """Documents with any keys and value types load or fail with a ConfigError."""
    _check(text, Path("."))
    _count(record_property, "documents")
