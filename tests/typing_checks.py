# pyright: reportUnnecessaryTypeIgnoreComment=true
"""Static checks of the public signatures, for mypy and pyright (``nox -s typecheck``).

Never run: pytest does not collect this file. Each ``# type: ignore[code]`` line is an
error the checkers must report: mypy (``warn_unused_ignores`` under ``--strict``) and
pyright (``reportUnnecessaryTypeIgnoreComment``, set for this file above) both fail
if the error ever disappears. The lines without one must stay clean.
"""

from __future__ import annotations

import functools
from typing import assert_type

import trio

import trisup


async def worker(label: str) -> None:
    await trio.sleep_forever()


async def pair(label: str, count: int) -> None:
    await trio.sleep_forever()


async def ready(delay: float, *, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()


async def ready_by_default(
    delay: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()


def sync_worker(label: str) -> None:
    pass


def new_service_checks() -> None:
    """new_service is typed like nursery.start_soon: the arguments must fit the function."""
    assert_type(trisup.new_service("w", worker, "x"), trisup.Service)
    trisup.new_service("w", pair, "x", 1)
    trisup.new_service("w", ready, 1.5)
    trisup.new_service("w", ready_by_default, 1.5)
    trisup.new_service("w", trio.sleep_forever)
    trisup.new_service("w", trio.sleep, 1)
    trisup.new_service("w", functools.partial(worker, "x"))
    trisup.new_service("w", trisup.Manager().serve)

    trisup.new_service("w", worker, 42)  # type: ignore[arg-type]
    trisup.new_service("w", pair, 1, "x")  # type: ignore[arg-type, call-arg]
    trisup.new_service("w", worker, "x", "y")  # type: ignore[arg-type, call-arg]
    trisup.new_service("w", worker)  # type: ignore[call-arg, arg-type]
    trisup.new_service("w", ready, "soon")  # type: ignore[arg-type]
    trisup.new_service("w", sync_worker, "x")  # type: ignore[arg-type]
    trisup.new_service(1, worker, "x")  # type: ignore[call-overload]


def add_checks(m: trisup.Manager, svc: trisup.Service) -> None:
    """add's keywords are the ServiceConfig fields, with their types."""
    fields: trisup.ServiceFields = {"restart_delay": 0.5, "restart_policy": "never"}
    fields["start_timeout"] = None
    fields["critical"] = False
    fields["restart_policy"] = trisup.RestartPolicy.ON_FAILURE
    fields["restart_policy"] = 2
    fields["restart_dely"] = 1.0  # type: ignore[typeddict-unknown-key]
    fields["start_timeout"] = "60"  # type: ignore[typeddict-item]
    fields["critical"] = 1.0  # type: ignore[typeddict-item]
    m.add(svc, trisup.with_start_timeout(30), trisup.with_start_timeout(None))
    trisup.with_start_timeout("30")  # type: ignore[arg-type]


def error_checks() -> None:
    """The errors a service raises, and the start timeout's seconds."""
    assert_type(trisup.restart_now(), trisup.RestartNow)
    assert_type(trisup.restart_now("reload"), trisup.RestartNow)
    assert_type(trisup.ServiceStartTimeout(60.0).timeout, float)
    trisup.restart_now(ValueError("x"))  # type: ignore[arg-type]
