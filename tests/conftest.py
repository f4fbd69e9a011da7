"""Shared helpers for the trisup tests."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["trisup.testing"]


@pytest.fixture(autouse=True)
def _quiet_trisup_logs() -> Iterator[None]:
    """Keep tracebacks of intentionally failing services out of the test output."""
    logger = logging.getLogger("trisup")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    yield
    logger.setLevel(previous)


# ---- the reliability summary: docs/reliability.md is generated from it ------------------

_RELIABILITY: dict[str, dict[str, object]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(kind, holds): a reliability case, listed in docs/reliability.md"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("reliability")
    if marker is not None:
        item.user_properties.append(("reliability", tuple(marker.args)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    what = props.get("reliability")
    if not isinstance(what, tuple) or not (report.when == "call" or report.failed):
        return
    entry = _RELIABILITY.setdefault(report.nodeid, {"passed": True})
    kind, holds = what  # pyright: ignore[reportUnknownVariableType]
    entry.update(kind=kind, holds=holds, cases=props.get("cases", 1), test=report.nodeid)
    entry["passed"] = bool(entry["passed"]) and report.passed


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("TRISUP_RELIABILITY_JSON")
    if path and _RELIABILITY:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(list(_RELIABILITY.values()), out, indent=1)
