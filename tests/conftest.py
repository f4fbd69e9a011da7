"""Shared helpers for the trisup tests."""

from __future__ import annotations

import logging
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
