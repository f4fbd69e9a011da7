"""docs/parity.md has a row for every name of the Go API, and its Python names exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import trisup

PARITY = Path(__file__).resolve().parent.parent / "docs" / "parity.md"

# Every function, method, type, field, constant, variable and option of the Go listing.
GO_NAMES = [
    "IsFatal",
    "IsFatalErr",
    "IsNoRestartErr",
    "NoRestartErr",
    "ExitStatus",
    "ExitSuccess",
    "ExitError",
    "ExitNoUpgradeAvailable",
    "ExitRestart",
    "ExitUpgrade",
    "AsInt",
    "FatalErr",
    "Err",
    "Status",
    "AsFatalErr",
    "Manager",
    "Add",
    "AddWithConfig",
    "Delete",
    "GetServiceInfo",
    "GetServicesInfo",
    "Has",
    "OnClose",
    "RemoveServices",
    "ResetService",
    "RestartService",
    "RestartServices",
    "Run",
    "Serve",
    "ServeBackground",
    "Services",
    "StartService",
    "StopService",
    "Metric",
    "Name",
    "StartCount",
    "ErrorCount",
    "SuccessCount",
    "ConsecFailures",
    "LastError",
    "LastErrorTime",
    "LastStartTime",
    "LastStopTime",
    "CurrentUptime",
    "TotalUptime",
    "AverageUptime",
    "CreatedAt",
    "CurrentDelay",
    "RestartsInWindow",
    "Option",
    "WithAutoStart",
    "WithBackoff",
    "WithMaxRestarts",
    "WithRestartDelay",
    "WithRestartPolicy",
    "WithRestartWindow",
    "RestartPolicy",
    "RestartAlways",
    "RestartOnFailure",
    "RestartNever",
    "Service",
    "Error",
    "String",
    "ServiceConfig",
    "MaxRestarts",
    "RestartDelay",
    "MaxRestartDelay",
    "RestartWindow",
    "MaxRestartsInWindow",
    "BackoffMultiplier",
    "AutoStart",
    "ServiceInfo",
    "Stopped",
    "Failed",
    "RestartCount",
    "WindowRestarts",
    "CurrentDelayStr",
    "WindowStart",
    "LastServiceStart",
    "ServiceStatus",
    "StatusIdle",
    "StatusRunning",
    "StatusStopped",
    "StatusError",
    "StatusCrashing",
    "StatusFailed",
    "ErrServiceNotFound",
    "ErrServiceAlreadyExists",
    "ErrServiceStopped",
    "ErrServiceRunning",
    "ErrDoNotRestart",
    "ErrTerminateSupervisor",
]


def _rows() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for line in PARITY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1]))
    return rows


def test_every_go_name_has_a_row() -> None:
    """No Go name lacks a row in the parity table."""
    go_column = " ".join(go for go, _ in _rows())
    missing = [n for n in GO_NAMES if not re.search(rf"\b{n}\b", go_column)]
    assert missing == []


@pytest.mark.parametrize("name", sorted(n for n in trisup.__all__ if n != "__version__"))
def test_every_public_name_is_documented(name: str) -> None:
    """Every public trisup name appears in the parity page."""
    assert re.search(rf"\b{re.escape(name)}\b", PARITY.read_text(encoding="utf-8"))
