"""The outcome rules of SPEC §4, decided from the error alone (pure, table-driven)."""

from __future__ import annotations

import pytest
import trio

from trisup import ExitStatus, TerminateSupervisor, as_fatal, no_restart, restart_now
from trisup._outcome import AttemptOutcome, classify, escapes


def cancelled() -> trio.Cancelled:
    """A `trio.Cancelled` made outside a run (its constructor is private)."""
    return trio.Cancelled._create(source="explicit")  # pyright: ignore[reportPrivateUsage]


def caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


BOOM = ValueError("boom")

CASES: list[tuple[str, BaseException | None, bool, AttemptOutcome]] = [
    ("return", None, False, AttemptOutcome.CLEAN),
    ("return after a stop", None, True, AttemptOutcome.STOPPED),
    ("a failure", BOOM, False, AttemptOutcome.FAILURE),
    ("a failure after a stop", BOOM, True, AttemptOutcome.STOPPED),
    ("the stop's Cancelled", cancelled(), True, AttemptOutcome.STOPPED),
    ("a leaked Cancelled", cancelled(), False, AttemptOutcome.FAILURE),
    ("TimeoutError", TimeoutError(), False, AttemptOutcome.FAILURE),
    ("TooSlowError", trio.TooSlowError(), False, AttemptOutcome.FAILURE),
    ("KeyboardInterrupt", KeyboardInterrupt(), False, AttemptOutcome.ESCAPE),
    ("KeyboardInterrupt after a stop", KeyboardInterrupt(), True, AttemptOutcome.ESCAPE),
    (
        "SystemExit in a group",
        BaseExceptionGroup("g", [BOOM, SystemExit(1)]),
        False,
        AttemptOutcome.ESCAPE,
    ),
    (
        "KeyboardInterrupt beside a stop's Cancelled",
        BaseExceptionGroup("g", [cancelled(), KeyboardInterrupt()]),
        True,
        AttemptOutcome.ESCAPE,
    ),
    ("a fatal error", as_fatal(BOOM, ExitStatus.ERROR), False, AttemptOutcome.FATAL),
    ("TerminateSupervisor", TerminateSupervisor(), False, AttemptOutcome.FATAL),
    (
        "a fatal error deep in a group",
        ExceptionGroup(
            "g", [ValueError(), ExceptionGroup("h", [as_fatal(None, ExitStatus.ERROR)])]
        ),
        False,
        AttemptOutcome.FATAL,
    ),
    (
        "a fatal cause",
        caused(ValueError("x"), as_fatal(None, ExitStatus.ERROR)),
        False,
        AttemptOutcome.FATAL,
    ),
    ("a fatal error after a stop", as_fatal(BOOM, ExitStatus.ERROR), True, AttemptOutcome.STOPPED),
    ("no_restart()", no_restart(), False, AttemptOutcome.NO_RESTART),
    (
        "a group of no_restart()",
        ExceptionGroup("g", [no_restart(), no_restart()]),
        False,
        AttemptOutcome.NO_RESTART,
    ),
    ("no_restart(err)", no_restart(BOOM), False, AttemptOutcome.NO_RESTART_FAILURE),
    (
        "raise no_restart() from err",
        caused(no_restart(), BOOM),
        False,
        AttemptOutcome.NO_RESTART_FAILURE,
    ),
    (
        "no_restart() beside a failure",
        ExceptionGroup("g", [no_restart(), ValueError()]),
        False,
        AttemptOutcome.NO_RESTART_FAILURE,
    ),
    (
        "fatal beats no_restart",
        ExceptionGroup("g", [no_restart(), as_fatal(None, ExitStatus.ERROR)]),
        False,
        AttemptOutcome.FATAL,
    ),
    ("restart_now()", restart_now(), False, AttemptOutcome.RESTART_NOW),
    ("restart_now(reason)", restart_now("reload"), False, AttemptOutcome.RESTART_NOW),
    ("restart_now() after a stop", restart_now(), True, AttemptOutcome.STOPPED),
    (
        "a nested group of restart_now()",
        ExceptionGroup("g", [restart_now(), ExceptionGroup("h", [restart_now("x")])]),
        False,
        AttemptOutcome.RESTART_NOW,
    ),
    (
        "raise restart_now() from err: the cause says why",
        caused(restart_now(), BOOM),
        False,
        AttemptOutcome.RESTART_NOW,
    ),
    (
        "restart_now() beside a failure",
        ExceptionGroup("g", [restart_now(), ValueError()]),
        False,
        AttemptOutcome.FAILURE,
    ),
    (
        "restart_now() beside a leaked Cancelled",
        BaseExceptionGroup("g", [restart_now(), cancelled()]),
        False,
        AttemptOutcome.FAILURE,
    ),
    (
        "restart_now() beside no_restart()",
        ExceptionGroup("g", [restart_now(), no_restart()]),
        False,
        AttemptOutcome.NO_RESTART_FAILURE,
    ),
    (
        "fatal beats restart_now",
        ExceptionGroup("g", [restart_now(), as_fatal(None, ExitStatus.ERROR)]),
        False,
        AttemptOutcome.FATAL,
    ),
    (
        "a fatal cause of restart_now()",
        caused(restart_now(), TerminateSupervisor()),
        False,
        AttemptOutcome.FATAL,
    ),
    (
        "KeyboardInterrupt beside restart_now()",
        BaseExceptionGroup("g", [restart_now(), KeyboardInterrupt()]),
        False,
        AttemptOutcome.ESCAPE,
    ),
    (
        "a group of failures",
        ExceptionGroup("g", [ValueError(), KeyError()]),
        False,
        AttemptOutcome.FAILURE,
    ),
]


@pytest.mark.parametrize(
    ("error", "stopped", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_classify(error: BaseException | None, stopped: bool, expected: AttemptOutcome) -> None:
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
    assert [o.value for o in AttemptOutcome] == [
        "escape",
        "stopped",
        "clean",
        "fatal",
        "restart_now",
        "no_restart",
        "no_restart_failure",
        "failure",
    ]
