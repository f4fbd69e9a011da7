"""Shared helpers for the trisup tests."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import cast

import pytest
from hypothesis import settings

pytest_plugins = ["trisup.testing"]


@pytest.fixture(autouse=True)
def _quiet_trisup_logs() -> Iterator[None]:
    """Keep tracebacks of intentionally failing services out of the test output."""
    logger = logging.getLogger("trisup")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    yield
    logger.setLevel(previous)


@pytest.fixture(autouse=True)
def _private_runtime_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's `trisup run` puts its control socket in a directory of its own.

    The default, ``$XDG_RUNTIME_DIR/trisup/<name>.sock``, would otherwise be shared by
    every test (and every test run on the machine) using the same manager name.
    """
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))


# ---- hypothesis: HYPOTHESIS_PROFILE=fuzz (nox -s fuzz) searches far longer ------------

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("fuzz", max_examples=5_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---- the reliability summary: tools/reliability_report.py makes docs/reliability.md ----
# A test marked ``reliability(kind, holds)`` (``holds`` defaults to its docstring) is one
# row of the table; it may record "cases" (how many it tried), "unit" and "detail" with
# ``record_property``. With TRISUP_RELIABILITY_JSON set, the rows are written there.

_RELIABILITY: dict[str, dict[str, object]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(kind, holds=docstring): a row of docs/reliability.md"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("reliability")
    if marker is not None:
        args: list[object] = list(marker.args)
        doc = (getattr(item, "obj", None).__doc__ or "").strip().splitlines()
        holds = args[1] if len(args) > 1 else (doc[0] if doc else item.name)
        item.user_properties.append(("reliability", (str(args[0]), str(holds))))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    what: object = props.get("reliability")
    if not isinstance(what, tuple) or not (report.when == "call" or report.failed):
        return
    kind, holds = (str(part) for part in cast("tuple[object, ...]", what))
    entry = _RELIABILITY.setdefault(report.nodeid, {"test": report.nodeid, "passed": True})
    entry.update(kind=kind, holds=holds)
    for key in ("cases", "unit", "detail"):
        if key in props:
            entry[key] = props[key]
    entry["passed"] = bool(entry["passed"]) and report.passed


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("TRISUP_RELIABILITY_JSON")
    if path and _RELIABILITY:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(list(_RELIABILITY.values()), out, indent=1)
