"""The outcome rules of SPEC §4, decided from the error alone (pure, table-driven)."""

from __future__ import annotations

import pytest
import trio

from trisup import ExitStatus, TerminateSupervisor, as_fatal, no_restart
from trisup._outcome import Outcome, classify, escapes


def cancelled() -> trio.Cancelled:
    """A `trio.Cancelled` made outside a run (its constructor is private)."""
    return trio.Cancelled._create(source="explicit")  # pyright: ignore[reportPrivateUsage]


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


BOOM = ValueError("boom")

CASES: list[tuple[str, BaseException | None, bool, Outcome]] = [
    ("return", None, False, Outcome.CLEAN),
    ("return after a stop", None, True, Outcome.STOPPED),
    ("a failure", BOOM, False, Outcome.FAILURE),
    ("a failure after a stop", BOOM, True, Outcome.STOPPED),
    ("the stop's Cancelled", cancelled(), True, Outcome.STOPPED),
    ("a leaked Cancelled", cancelled(), False, Outcome.FAILURE),
    ("TimeoutError", TimeoutError(), False, Outcome.FAILURE),
    ("TooSlowError", trio.TooSlowError(), False, Outcome.FAILURE),
    ("KeyboardInterrupt", KeyboardInterrupt(), False, Outcome.ESCAPE),
    ("KeyboardInterrupt after a stop", KeyboardInterrupt(), True, Outcome.ESCAPE),
    (
        "SystemExit in a group",
        BaseExceptionGroup("g", [BOOM, SystemExit(1)]),
        False,
        Outcome.ESCAPE,
    ),
    (
        "KeyboardInterrupt beside a stop's Cancelled",
        BaseExceptionGroup("g", [cancelled(), KeyboardInterrupt()]),
        True,
        Outcome.ESCAPE,
    ),
    ("a fatal error", as_fatal(BOOM, ExitStatus.ERROR), False, Outcome.FATAL),
    ("TerminateSupervisor", TerminateSupervisor(), False, Outcome.FATAL),
    (
        "a fatal error deep in a group",
        ExceptionGroup(
            "g", [ValueError(), ExceptionGroup("h", [as_fatal(None, ExitStatus.ERROR)])]
        ),
        False,
        Outcome.FATAL,
    ),
    (
        "a fatal cause",
        caused(ValueError("x"), as_fatal(None, ExitStatus.ERROR)),
        False,
        Outcome.FATAL,
    ),
    ("a fatal error after a stop", as_fatal(BOOM, ExitStatus.ERROR), True, Outcome.STOPPED),
    ("no_restart()", no_restart(), False, Outcome.NO_RESTART),
    (
        "a group of no_restart()",
        ExceptionGroup("g", [no_restart(), no_restart()]),
        False,
        Outcome.NO_RESTART,
    ),
    ("no_restart(err)", no_restart(BOOM), False, Outcome.NO_RESTART_FAILURE),
    ("raise no_restart() from err", caused(no_restart(), BOOM), False, Outcome.NO_RESTART_FAILURE),
    (
        "no_restart() beside a failure",
        ExceptionGroup("g", [no_restart(), ValueError()]),
        False,
        Outcome.NO_RESTART_FAILURE,
    ),
    (
        "fatal beats no_restart",
        ExceptionGroup("g", [no_restart(), as_fatal(None, ExitStatus.ERROR)]),
        False,
        Outcome.FATAL,
    ),
    (
        "a group of failures",
        ExceptionGroup("g", [ValueError(), KeyError()]),
        False,
        Outcome.FAILURE,
    ),
]


@pytest.mark.parametrize(
    ("error", "stopped", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_classify(error: BaseException | None, stopped: bool, expected: Outcome) -> None:
    """Each kind of ending, with and without a stop, has exactly one outcome."""
    assert classify(error, stopped=stopped) is expected


def test_escapes_looks_through_groups_only() -> None:
    """A BaseException escapes wherever it sits in a group; a cause does not count."""
    assert escapes(KeyboardInterrupt())
    assert escapes(BaseExceptionGroup("g", [ValueError(), BaseExceptionGroup("h", [SystemExit()])]))
    assert not escapes(ExceptionGroup("g", [ValueError()]))
    assert not escapes(cancelled())
    assert not escapes(caused(ValueError(), KeyboardInterrupt()))


def test_outcome_values_are_the_event_names() -> None:
    """The values are the ``outcome`` strings of `ServiceExited`."""
    assert [o.value for o in Outcome] == [
        "escape",
        "stopped",
        "clean",
        "fatal",
        "no_restart",
        "no_restart_failure",
        "failure",
    ]
