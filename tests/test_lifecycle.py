"""The lifecycle's pure rules (trisup/_lifecycle.py): the status of each phase, the moves."""

from __future__ import annotations

import pytest

from trisup import Phase, ServiceStatus
from trisup._lifecycle import LIVE, MOVES, status_of

P = Phase
S = ServiceStatus

# (phase, held, consec_failures, ready) -> status, SPEC §4 first match wins
STATUS_TABLE = [
    (P.RUNNING, True, 3, True, S.STOPPED),  # held wins over everything
    (P.FAILED, True, 0, False, S.STOPPED),
    (P.IDLE, True, 0, False, S.STOPPED),
    (P.FAILED, False, 1, False, S.FAILED),
    (P.COMPLETED, False, 0, False, S.COMPLETED),
    (P.STARTING, False, 0, False, S.STARTING),
    (P.STARTING, False, 2, False, S.STARTING),  # not ready yet: starting, failures or not
    (P.STOPPING, False, 0, False, S.STARTING),  # stopped before it was ready
    (P.STOPPING, False, 0, True, S.RUNNING),
    (P.STOPPING, False, 1, True, S.CRASHING),
    (P.RUNNING, False, 0, True, S.RUNNING),
    (P.RUNNING, False, 1, True, S.CRASHING),
    (P.BACKOFF, False, 0, False, S.RUNNING),  # waiting to restart after a clean exit
    (P.BACKOFF, False, 1, False, S.CRASHING),
    (P.GROUP_WAIT, False, 0, False, S.RUNNING),
    (P.GROUP_WAIT, False, 1, False, S.CRASHING),
    (P.WAITING_DEPS, False, 0, False, S.IDLE),
    (P.WAITING_DEPS, False, 1, False, S.ERROR),
    (P.IDLE, False, 0, False, S.IDLE),
    (P.IDLE, False, 1, False, S.ERROR),  # e.g. a shutdown during a backoff wait
]


@pytest.mark.parametrize(("phase", "held", "consec", "ready", "status"), STATUS_TABLE)
def test_status_of(
    phase: Phase, held: bool, consec: int, ready: bool, status: ServiceStatus
) -> None:
    """Each phase gives the status of SPEC §4's rules."""
    assert status_of(phase, held=held, consec_failures=consec, ready=ready) is status


def test_every_phase_has_its_moves_and_removed_is_final() -> None:
    """The table names every phase; nothing leaves REMOVED; every other phase may be removed."""
    assert set(MOVES) == set(Phase)
    assert MOVES[P.REMOVED] == frozenset()
    assert all(P.REMOVED in MOVES[p] for p in Phase if p is not P.REMOVED)


def test_only_an_attempt_in_serve_passes_stopping() -> None:
    """STOPPING is entered only from an attempt (starting or running), never from a park."""
    assert {p for p in Phase if P.STOPPING in MOVES[p]} == {P.STARTING, P.RUNNING}


def test_a_task_ends_only_in_an_ended_phase_and_no_ended_phase_skips_starting() -> None:
    """A live task ends in idle/completed/failed/removed; an ended one goes on only by a spawn."""
    for phase in LIVE:
        assert MOVES[phase] - LIVE <= {P.IDLE, P.COMPLETED, P.FAILED, P.REMOVED}
    for phase in set(Phase) - LIVE - {P.REMOVED}:
        assert MOVES[phase] & LIVE == {P.STARTING}


def test_moves() -> None:
    """A move outside the table is not allowed (`ServiceState._move` raises on one)."""
    assert P.BACKOFF in MOVES[P.RUNNING]
    assert P.RUNNING not in MOVES[P.IDLE]  # a start passes STARTING (the spawn)
    assert P.STOPPING not in MOVES[P.BACKOFF]
