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
``NO_RESTART``         every leaf a ``DoNotRestart`` without a cause   4
``NO_RESTART_FAILURE`` a ``DoNotRestart`` present, but not cleanly     4
``FAILURE``            any other ``Exception`` (also a ``Cancelled``   5
                       that leaked out of the service's own scopes)
=====================  ==============================================  ==========
"""

from __future__ import annotations

import enum

import trio

from ._errors import DoNotRestart, children, is_fatal_err, is_no_restart

__all__ = [
    "CLEAN",
    "ESCAPE",
    "FAILURE",
    "FATAL",
    "NO_RESTART",
    "NO_RESTART_FAILURE",
    "STOPPED",
    "Outcome",
    "classify",
    "escapes",
]


class Outcome(enum.Enum):
    """How an attempt ended; the value is the ``outcome`` of its `ServiceExited` event."""

    ESCAPE = "escape"
    STOPPED = "stopped"
    CLEAN = "clean"
    FATAL = "fatal"
    NO_RESTART = "no_restart"
    NO_RESTART_FAILURE = "no_restart_failure"
    FAILURE = "failure"


# The members as module constants, for the code that runs once per attempt: an Enum
# member looked up on its class costs ~70 ns on Python 3.11, a global ~5 ns.
ESCAPE, STOPPED, CLEAN, FATAL = Outcome.ESCAPE, Outcome.STOPPED, Outcome.CLEAN, Outcome.FATAL
NO_RESTART, NO_RESTART_FAILURE = Outcome.NO_RESTART, Outcome.NO_RESTART_FAILURE
FAILURE = Outcome.FAILURE


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


def classify(error: BaseException | None, *, stopped: bool) -> Outcome:
    """The outcome of an attempt that raised *error* (``None``: it returned).

    *stopped*: a stop of the attempt was requested before it ended.
    """
    if error is None:
        return STOPPED if stopped else CLEAN
    if escapes(error):
        return ESCAPE
    if stopped:
        return STOPPED
    if is_fatal_err(error):
        return FATAL
    if is_no_restart(error):
        return NO_RESTART if _clean_no_restart(error) else NO_RESTART_FAILURE
    return FAILURE
