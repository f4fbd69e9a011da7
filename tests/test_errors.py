"""The error tree and the helpers that find errors inside groups and cause chains."""

from __future__ import annotations

import pytest

import trisup
from trisup import ExitStatus


def test_messages() -> None:
    """Errors carry the seed's messages."""
    assert str(trisup.ServiceNotFound("x")) == "service not found, name=x"
    assert str(trisup.ServiceAlreadyExists("x")) == "service already exists, name=x"
    assert isinstance(trisup.ServiceNotFound("x"), LookupError)
    assert isinstance(trisup.ServiceAlreadyExists("x"), ValueError)
    for cls in (trisup.ServiceStopped, trisup.ServiceRunning):
        assert issubclass(cls, trisup.SupervisorError)
    assert issubclass(trisup.ServiceStopTimeout, trisup.SupervisorError)
    assert str(trisup.ServiceStopped()) == "service is stopped"
    assert str(trisup.ServiceRunning("a")) == "service is running, name=a"


def test_no_restart() -> None:
    """no_restart() wraps an error as cause and message."""
    assert str(trisup.no_restart()) == "do not restart"
    assert trisup.no_restart().__cause__ is None
    err = ValueError("bad input")
    wrapped = trisup.no_restart(err)
    assert wrapped.__cause__ is err
    assert str(wrapped) == "bad input"
    assert trisup.is_no_restart(wrapped)
    assert not trisup.is_no_restart(err)
    assert not trisup.is_no_restart(None)


def test_restart_now() -> None:
    """restart_now(reason) is a RestartNow whose str is the reason, or "restart now"."""
    assert issubclass(trisup.RestartNow, Exception)
    assert not issubclass(trisup.RestartNow, trisup.SupervisorError)
    bare = trisup.restart_now()
    assert type(bare) is trisup.RestartNow
    assert str(bare) == "restart now"
    assert str(trisup.RestartNow()) == "restart now"
    assert str(trisup.restart_now("config reloaded")) == "config reloaded"
    assert bare.__cause__ is None
    assert trisup.restart_now() is not trisup.restart_now()


def test_service_start_timeout() -> None:
    """ServiceStartTimeout keeps the seconds and says "not ready within Ns"."""
    assert issubclass(trisup.ServiceStartTimeout, trisup.SupervisorError)
    err = trisup.ServiceStartTimeout(60.0)
    assert str(err) == "not ready within 60s"
    assert err.timeout == 60.0
    assert str(trisup.ServiceStartTimeout(0.5)) == "not ready within 0.5s"
    assert str(trisup.ServiceStartTimeout(1.25)) == "not ready within 1.25s"


def test_as_fatal() -> None:
    """as_fatal wraps, keeps an existing FatalError, and str never raises."""
    err = RuntimeError("disk gone")
    fatal = trisup.as_fatal(err, ExitStatus.RESTART)
    assert fatal.error is err
    assert fatal.status is ExitStatus.RESTART
    assert str(fatal) == "disk gone"
    assert trisup.as_fatal(fatal, ExitStatus.ERROR) is fatal
    none = trisup.as_fatal(None, ExitStatus.UPGRADE)
    assert none.error is None
    assert str(none) == "fatal error (exit status 4)"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    unprintable = trisup.as_fatal(Unprintable(), ExitStatus.ERROR)
    assert str(unprintable) == "<Unprintable with unprintable message>"


def test_fatal_present_in_groups_and_causes() -> None:
    """is_fatal / is_fatal_err look through groups and __cause__, not __context__."""
    fatal = trisup.as_fatal(ValueError("x"), ExitStatus.ERROR)
    group = ExceptionGroup("g", [KeyError("k"), ExceptionGroup("inner", [fatal])])
    assert trisup.is_fatal(group)
    assert trisup.is_fatal_err(group)
    caused = RuntimeError("outer")
    caused.__cause__ = fatal
    assert trisup.is_fatal(caused)
    context_only = RuntimeError("while handling")
    context_only.__context__ = fatal
    assert not trisup.is_fatal(context_only)
    assert not trisup.is_fatal_err(context_only)
    term = trisup.TerminateSupervisor()
    assert not trisup.is_fatal(term)
    assert trisup.is_fatal_err(ExceptionGroup("g", [term]))
    assert not trisup.is_fatal(None)
    assert not trisup.is_fatal_err(ValueError())


def test_cause_cycle_terminates() -> None:
    """A cyclic cause chain does not hang the helpers."""
    a = ValueError("a")
    b = ValueError("b")
    a.__cause__ = b
    b.__cause__ = a
    assert not trisup.is_fatal(a)


@pytest.mark.parametrize("status", list(ExitStatus))
def test_fatal_status_kept(status: ExitStatus) -> None:
    """FatalError keeps each exit status."""
    assert trisup.FatalError(None, status).status is status
