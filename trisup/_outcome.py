"""The outcome rules of SPEC §4: what the end of an attempt is, from the error alone.

Pure: `classify` looks at what ``serve`` raised (or ``None`` for a return) and
whether a stop was requested, and names the outcome. The runner applies it: the
counters, the status, the restart decision (which also depends on the policy).

=====================  ==============================================  ==========
outcome                when (first match wins)                         rule
=====================  ==============================================  ==========
``ESCAPE``             a ``BaseException`` other than ``Cancelled``    1
                       anywhere in it (``KeyboardInterrupt``, ...)
``STOPPED``            a stop was requested (whatever else ended it)   2
``CLEAN``              ``serve`` returned                              6
``FATAL``              a ``TerminateSupervisor`` / ``FatalError``      3
                       present (in groups and ``__cause__`` chains)
``RESTART_NOW``        every leaf a ``RestartNow`` (a cause is kept:   RestartNow
                       it says why; beside other errors: rules 4, 5)
``NO_RESTART``         every leaf a ``DoNotRestart`` without a cause   4
``NO_RESTART_FAILURE`` a ``DoNotRestart`` present, but not cleanly     4
``FAILURE``            any other ``Exception`` (also a ``Cancelled``   5
                       that leaked out of the service's own scopes)
=====================  ==============================================  ==========
"""

from __future__ import annotations

import enum

import trio

from ._errors import (
    DoNotRestart,
    RestartNow,
    TerminateSupervisor,
    children,
    is_fatal_err,
    is_no_restart,
)

__all__ = [
    "CLEAN",
    "ESCAPE",
    "FAILURE",
    "FATAL",
    "NO_RESTART",
    "NO_RESTART_FAILURE",
    "RESTART_NOW",
    "STOPPED",
    "AttemptOutcome",
    "classify",
    "escapes",
]


class AttemptOutcome(enum.Enum):
    """How an attempt ended; the value is the ``outcome`` of its `ServiceExited` event.

    Not ``outcome.Outcome`` (the captured result of a call, which ``serve_background``
    hands back); this is the rule that result falls under.
    """

    ESCAPE = "escape"
    STOPPED = "stopped"
    CLEAN = "clean"
    FATAL = "fatal"
    RESTART_NOW = "restart_now"
    NO_RESTART = "no_restart"
    NO_RESTART_FAILURE = "no_restart_failure"
    FAILURE = "failure"


# The members as module constants, for the code that runs once per attempt: an Enum
# member looked up on its class costs ~70 ns on Python 3.11, a global ~5 ns.
ESCAPE, STOPPED, CLEAN = AttemptOutcome.ESCAPE, AttemptOutcome.STOPPED, AttemptOutcome.CLEAN
FATAL, RESTART_NOW = AttemptOutcome.FATAL, AttemptOutcome.RESTART_NOW
NO_RESTART, NO_RESTART_FAILURE = AttemptOutcome.NO_RESTART, AttemptOutcome.NO_RESTART_FAILURE
FAILURE = AttemptOutcome.FAILURE


def escapes(error: BaseException) -> bool:
    """Whether *error* holds a ``BaseException`` that must not be caught."""
    members = children(error)
    if members is not None:
        return any(escapes(e) for e in members)
    return not isinstance(error, (Exception, trio.Cancelled))


def _clean_no_restart(error: BaseException) -> bool:
    """Whether every leaf is a `DoNotRestart` without a cause."""
    members = children(error)
    if members is not None:
        return all(_clean_no_restart(e) for e in members)
    return isinstance(error, DoNotRestart) and error.__cause__ is None


def _restart_now(error: BaseException) -> bool:
    """Whether every leaf is a `RestartNow`."""
    members = children(error)
    if members is not None:
        return all(_restart_now(e) for e in members)
    return isinstance(error, RestartNow)


# What a plain failure is not: a group (its leaves decide), a cancellation, an
# exception the rules name, or a non-Exception (which escapes)
_SPECIAL = (BaseExceptionGroup, trio.Cancelled, TerminateSupervisor, RestartNow, DoNotRestart)


def classify(error: BaseException | None, *, stopped: bool) -> AttemptOutcome:
    """The outcome of an attempt that raised *error* (``None``: it returned).

    *stopped*: a stop of the attempt was requested before it ended.
    """
    if error is None:
        return STOPPED if stopped else CLEAN
    if error.__cause__ is None and isinstance(error, Exception) and not isinstance(error, _SPECIAL):
        return STOPPED if stopped else FAILURE  # the common case: a plain Exception
    if escapes(error):
        return ESCAPE
    if stopped:
        return STOPPED
    if is_fatal_err(error):
        return FATAL
    if _restart_now(error):
        return RESTART_NOW
    if is_no_restart(error):
        return NO_RESTART if _clean_no_restart(error) else NO_RESTART_FAILURE
    return FAILURE
