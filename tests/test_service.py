"""new_service: what it accepts, what it refuses at once, and readiness passed through."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

import trisup
from trisup import ServiceStatus

S = ServiceStatus


def sync_worker(label: str) -> None:
    """A plain function: not a service."""


class SyncCallable:
    def __call__(self) -> None:
        """Not async."""


class AsyncCallable:
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, n: int) -> None:
        self.seen.append(n)
        await trio.sleep_forever()


async def collect(seen: list[object], value: object) -> None:
    seen.append(value)
    await trio.sleep_forever()


@pytest.mark.parametrize(
    ("fn", "shown"),
    [
        (sync_worker, "'sync_worker'"),
        (functools.partial(sync_worker, "x"), "'sync_worker'"),
        (SyncCallable(), "SyncCallable object at"),
        (lambda: trio.sleep(1), "'<lambda>'"),  # noqa: ASYNC105  # returns a coroutine
        (print, "'print'"),
    ],
)
def test_a_sync_callable_is_refused_naming_it(fn: object, shown: str) -> None:
    """A callable that is not async is a TypeError at new_service, naming it and the service."""
    with pytest.raises(TypeError) as caught:
        trisup.new_service("w", fn)  # type: ignore[call-arg, arg-type]  # refused on purpose
    message = str(caught.value)
    assert message.startswith("async_fn must be an async function (async def), not the sync")
    assert shown in message
    assert "(service 'w')" in message


def test_non_callable_is_refused() -> None:
    """A value that cannot be called is a TypeError naming async_fn."""
    with pytest.raises(TypeError, match=r"^async_fn must be callable, not int$"):
        trisup.new_service("w", 3)  # type: ignore[call-overload]  # refused on purpose


async def test_async_callables_are_accepted(autojump_clock: trio.testing.MockClock) -> None:
    """A partial of an async function, a bound async method and an async __call__ all run."""
    seen: list[object] = []
    obj = AsyncCallable()
    m = trisup.Manager()
    m.add(trisup.new_service("partial", functools.partial(collect, seen), "p"))
    m.add(trisup.new_service("nested", functools.partial(functools.partial(collect, seen), "n")))
    m.add(trisup.new_service("object", obj, 7))
    m.add(trisup.new_service("method", obj.__call__, 8))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(m.serve)
            await trio.testing.wait_all_tasks_blocked()
            assert {i.name: i.status for i in m.get_services_info()} == dict.fromkeys(
                ("partial", "nested", "object", "method"), S.RUNNING
            )
            nursery.cancel_scope.cancel()
    assert sorted(map(str, seen)) == ["n", "p"]
    assert sorted(obj.seen) == [7, 8]  # plain services start in one batch, in any order


async def ready_after(t: float, *, task_status: trio.TaskStatus[None]) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


async def ready_after_default(
    t: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.sleep(t)
    task_status.started()
    await trio.sleep_forever()


async def test_task_status_is_passed_through(autojump_clock: trio.testing.MockClock) -> None:
    """A function taking task_status (required or with a default) reports readiness."""
    m = trisup.Manager()
    m.add(trisup.new_service("required", ready_after, 1))
    m.add(trisup.new_service("default", ready_after_default, 2))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(m.serve)
            await m.wait_status("required", S.RUNNING)
            assert trio.current_time() == 1
            await trio.sleep(1)
            assert m.get_service_info("default").status is S.STARTING
            await m.wait_status("default", S.RUNNING)
            assert trio.current_time() == 3  # started once "required" was ready
            nursery.cancel_scope.cancel()
