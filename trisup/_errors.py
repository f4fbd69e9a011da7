"""The exceptions trisup raises and the helpers that recognise them.

::

    Exception
    ├── SupervisorError
    │   ├── ServiceNotFound (also LookupError)
    │   ├── ServiceAlreadyExists (also ValueError)
    │   ├── ServiceStopped
    │   ├── ServiceRunning
    │   ├── ServiceStopTimeout
    │   ├── ServiceStartTimeout      an attempt was not ready within start_timeout
    │   └── RestartIntensityExceeded a manager gave up
    ├── DoNotRestart                 raised by a service: end without a restart
    ├── RestartNow                   raised by a service: be restarted at once
    └── TerminateSupervisor          raised by a service: end the whole tree
        └── FatalError               ... with an ExitStatus

An exception is *present* in another when it is that exception, anything in its
``__cause__`` chain, or any leaf of an ``ExceptionGroup``, recursively. The
``__context__`` chain is not followed: an error raised while handling a
``FatalError`` is not fatal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast, final

from ._status import ExitStatus

__all__ = [
    "DoNotRestart",
    "FatalError",
    "RestartIntensityExceeded",
    "RestartNow",
    "ServiceAlreadyExists",
    "ServiceNotFound",
    "ServiceRunning",
    "ServiceStartTimeout",
    "ServiceStopTimeout",
    "ServiceStopped",
    "SupervisorError",
    "TerminateSupervisor",
    "as_fatal",
    "find_terminate",
    "is_fatal",
    "is_fatal_err",
    "is_no_restart",
    "no_restart",
    "present",
    "restart_now",
    "safe_repr",
]


class SupervisorError(Exception):
    """Base class of the errors trisup raises."""


@final
class ServiceNotFound(SupervisorError, LookupError):
    """No service is registered under the name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"service not found, name={name}")
        self.service = name


@final
class ServiceAlreadyExists(SupervisorError, ValueError):
    """A service with the name is already registered; it is left untouched."""

    def __init__(self, name: str) -> None:
        super().__init__(f"service already exists, name={name}")
        self.service = name


class ServiceStopped(SupervisorError):
    """The service is stopped (kept for parity with the Go package)."""

    def __init__(self, name: str = "") -> None:
        super().__init__(f"service is stopped, name={name}" if name else "service is stopped")


class ServiceRunning(SupervisorError):
    """The service is running (kept for parity with the Go package)."""

    def __init__(self, name: str = "") -> None:
        super().__init__(f"service is running, name={name}" if name else "service is running")


@final
class ServiceStopTimeout(SupervisorError):
    """A stop did not see the service exit within its ``stop_timeout``.

    The service stays stopped and is never restarted; its task is reaped by the
    manager's nursery once it exits.
    """

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"service did not stop within {timeout:g}s, name={name}")
        self.service = name
        self.timeout = timeout


@final
class ServiceStartTimeout(SupervisorError):
    """An attempt did not report ready within its ``start_timeout``.

    The failure recorded for that attempt (the attempt is cancelled): it counts
    like any failure and the service's restart policy applies.

    Attributes:
        timeout: the ``start_timeout`` in seconds.

    .. versionadded:: 0.1.0
    """

    def __init__(self, timeout: float) -> None:
        super().__init__(f"not ready within {timeout:g}s")
        self.timeout = timeout


@final
class RestartIntensityExceeded(SupervisorError):
    """Too many automatic restarts within a manager's ``period``: it gave up.

    Its ``__cause__`` is an `ExceptionGroup` of the recent failures. A parent
    manager treats it like any failure of the child manager, so failures
    escalate up a supervision tree.
    """

    def __init__(self, manager: str, reason: str) -> None:
        super().__init__(f"manager {manager} gave up: {reason}")
        self.manager = manager
        self.reason = reason


class DoNotRestart(Exception):
    """Raised by a service to end without being restarted.

    Without a ``__cause__`` the end is clean (``COMPLETED``); with one it is a
    failure that is not retried (``FAILED``).
    """

    def __str__(self) -> str:
        if self.__cause__ is not None:
            return _safe_str(self.__cause__)
        if self.args:
            return _safe_str(self.args[0])
        return "do not restart"


def no_restart(err: BaseException | None = None) -> DoNotRestart:
    """Return a `DoNotRestart` whose ``__cause__`` and ``str`` are those of *err*."""
    exc = DoNotRestart()
    exc.__cause__ = err
    return exc


class RestartNow(Exception):
    """Raised by a service to be restarted at once.

    Counted as a start, not as a failure: no backoff growth, ``consec_failures``
    unchanged, and not counted against ``max_restarts``, the restart window or
    the manager's intensity. An attempt that raises it within its first second
    waits ``restart_delay`` first, so a loop never spins. A group whose every
    leaf is a `RestartNow` counts as one; beside other errors it is a failure.

    .. versionadded:: 0.1.0
    """

    def __str__(self) -> str:
        if self.args:
            return _safe_str(self.args[0])
        return "restart now"


def restart_now(reason: str | None = None) -> RestartNow:
    """Return a `RestartNow` whose ``str`` is *reason* (``"restart now"`` without one).

    .. versionadded:: 0.1.0
    """
    return RestartNow() if reason is None else RestartNow(reason)


class TerminateSupervisor(Exception):
    """Raised by a service to terminate its manager, and the tree above it."""

    def __str__(self) -> str:
        if self.args:
            return _safe_str(self.args[0])
        return "terminate supervisor"


class FatalError(TerminateSupervisor):
    """A fatal error: it ends the whole supervision tree with an exit status.

    Attributes:
        error: the underlying error, or ``None``.
        status: the `ExitStatus` the program should exit with.
    """

    def __init__(self, error: BaseException | None, status: ExitStatus = ExitStatus.ERROR) -> None:
        super().__init__(error, status)
        self.error = error
        self.status = ExitStatus(status)

    def __str__(self) -> str:
        if self.error is None:
            return f"fatal error (exit status {int(self.status)})"
        return _safe_str(self.error)


def as_fatal(err: BaseException | None, status: ExitStatus) -> FatalError:
    """Wrap *err* in a `FatalError` with *status*; a `FatalError` is returned as is."""
    if isinstance(err, FatalError):
        return err
    fatal = FatalError(err, status)
    if err is not None:
        fatal.__cause__ = err
    return fatal


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:  # a broken __str__ must not hide the error it describes
        return f"<{type(obj).__name__} with unprintable message>"


def safe_repr(obj: object) -> str:
    """``repr(obj)`` for an error message; never raises (a huge int, a broken ``__repr__``)."""
    try:
        return repr(obj)
    except Exception:
        if isinstance(obj, int):  # repr refuses ints of more than 4,300 digits
            return f"<an int of {obj.bit_length()} bits>"
        return f"<{type(obj).__name__} with unprintable repr>"


def children(exc: BaseException) -> tuple[BaseException, ...] | None:
    """The members of an exception group, or ``None`` for any other exception."""
    if isinstance(exc, BaseExceptionGroup):
        return cast("BaseExceptionGroup[BaseException]", exc).exceptions
    return None


def _single(error: BaseException) -> BaseException:
    """*error*, or the one error a group of one holds (recursively)."""
    members = children(error)
    while members is not None and len(members) == 1:
        error = members[0]
        members = children(error)
    return error


def error_message(error: BaseException) -> str:
    """An error's own message; a group of one error speaks for that error.

    A wrapper that speaks for the error it wraps (see `shown_error`) gives that
    error's. An empty message gives the type's name, so a real failure is never blank.
    """
    error = shown_error(error)
    try:
        return str(error) or type(error).__name__
    except Exception:
        return f"<{type(error).__name__} with unprintable message>"


def present(exc: BaseException) -> Iterator[BaseException]:
    """Yield every exception present in *exc* (see the module docstring)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current: BaseException | None = stack.pop()
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            members = children(current)
            if members is not None:
                stack.extend(reversed(members))
            yield current
            current = current.__cause__


def find_terminate(exc: BaseException) -> TerminateSupervisor | None:
    """Return the first `FatalError` present, else the first `TerminateSupervisor`."""
    first: TerminateSupervisor | None = None
    for item in present(exc):
        if isinstance(item, FatalError):
            return item
        if first is None and isinstance(item, TerminateSupervisor):
            first = item
    return first


def is_fatal(exc: BaseException | None) -> bool:
    """Whether a `FatalError` is present in *exc*."""
    return exc is not None and any(isinstance(e, FatalError) for e in present(exc))


def is_fatal_err(exc: BaseException | None) -> bool:
    """Whether a `FatalError` or a `TerminateSupervisor` is present in *exc*."""
    return exc is not None and any(isinstance(e, TerminateSupervisor) for e in present(exc))


def is_no_restart(exc: BaseException | None) -> bool:
    """Whether a `DoNotRestart` is present in *exc*."""
    return exc is not None and any(isinstance(e, DoNotRestart) for e in present(exc))


def shown_error(error: BaseException) -> BaseException:
    """The error whose message `error_message` gives: the one a message is about.

    A group of one error gives that error; a `DoNotRestart` with a ``__cause__`` and
    a `FatalError` wrapping an error give the wrapped error (their message is its
    message), so the type named beside a message is the type of what failed.
    """
    while True:
        error = _single(error)
        if isinstance(error, DoNotRestart) and error.__cause__ is not None:
            error = error.__cause__
        elif isinstance(error, FatalError) and error.error is not None:
            error = error.error
        else:
            return error


def type_name(error: BaseException) -> str:
    """The name of the type of `shown_error` (*error*): ``"FileNotFoundError"``.

    Its ``__qualname__`` (``"Outer.Inner"`` for a nested class), or its ``__name__`` for
    a class defined inside a function.
    """
    kind = type(shown_error(error))
    name = kind.__qualname__
    return kind.__name__ if "<locals>" in name else name


def typed(kind: str, message: str) -> str:
    """A message with its type, as a person reads it: ``"FileNotFoundError: /etc/x"``.

    The type alone when the message is empty or is the type's name; the message
    alone without a type.

    >>> typed("ValueError", "bad"), typed("ValueError", ""), typed("", "bad")
    ('ValueError: bad', 'ValueError', 'bad')
    """
    if not kind:
        return message
    if not message or message == kind:
        return kind
    return f"{kind}: {message}"


def error_text(error: BaseException) -> str:
    """*error*'s message with its type: ``typed(type_name(error), error_message(error))``."""
    return typed(type_name(error), error_message(error))
