"""The `Service` protocol and `new_service`, which makes a service of a function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVarTuple, final, overload, runtime_checkable

import trio
from trio import TaskStatus

from ._errors import safe_repr

__all__ = [
    "FunctionService",
    "Service",
    "accepts_task_status",
    "check_service",
    "is_async_callable",
    "new_service",
]

PosArgsT = TypeVarTuple("PosArgsT")


@runtime_checkable
class Service(Protocol):
    """What a manager supervises: a name and an async ``serve`` method.

    ``serve`` may take a keyword argument ``task_status``; a service that does
    is ``STARTING`` until it calls ``task_status.started()``, as with
    ``nursery.start``. A `Manager` is itself a service.
    """

    @property
    def name(self) -> str:
        """The service's name, unique within its manager."""
        ...

    @property
    def serve(self) -> Callable[..., Awaitable[None]]:
        """Run the service until it returns, raises or is cancelled."""
        ...


def _takes_task_status(fn: Callable[..., object]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get("task_status")
    return param is not None and param.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def accepts_task_status(service: Service) -> bool:
    """Whether *service* reports readiness through ``task_status``."""
    if isinstance(service, FunctionService):
        return service.accepts_task_status
    return _takes_task_status(service.serve)


@final
class FunctionService:
    """A service that runs ``async_fn(*args)``; made by `new_service`."""

    __slots__ = ("_args", "_fn", "accepts_task_status", "name")

    def __init__(
        self, name: str, async_fn: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        self.name = name
        self._fn = async_fn
        self._args = args
        self.accepts_task_status = _takes_task_status(async_fn)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Call the function, passing ``task_status`` on if it accepts one."""
        if self.accepts_task_status:
            await self._fn(*self._args, task_status=task_status)
        else:
            await self._fn(*self._args)

    def call(self, task_status: TaskStatus[None] | None) -> Awaitable[object]:
        """The function's awaitable, passed *task_status* if given (what the runner awaits)."""
        if task_status is None:
            return self._fn(*self._args)
        return self._fn(*self._args, task_status=task_status)

    def __repr__(self) -> str:
        return f"<FunctionService {self.name!r} {getattr(self._fn, '__qualname__', self._fn)!r}>"


class _ReportsReady(Protocol[*PosArgsT]):
    """An async function of *PosArgsT* that requires a ``task_status`` keyword."""

    def __call__(self, *args: *PosArgsT, task_status: TaskStatus[None]) -> Awaitable[object]: ...


def is_async_callable(fn: object) -> bool:
    """Whether *fn* is an async function, a partial of one, or has an async ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType]
    if inspect.iscoroutinefunction(fn):
        return True
    return inspect.iscoroutinefunction(type(fn).__call__)  # an object with `async def __call__`


def _describe(fn: object) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func  # pyright: ignore[reportUnknownMemberType]
    name = getattr(fn, "__qualname__", None)
    return repr(name) if isinstance(name, str) else safe_repr(fn)


@overload
def new_service(
    name: str, async_fn: Callable[[*PosArgsT], Awaitable[object]], *args: *PosArgsT
) -> Service: ...
@overload
def new_service(name: str, async_fn: _ReportsReady[*PosArgsT], *args: *PosArgsT) -> Service: ...
def new_service(name: str, async_fn: Callable[..., Awaitable[object]], *args: object) -> Service:
    """Make a service named *name* that runs ``await async_fn(*args)``.

    Typed like ``nursery.start_soon``: *args* must fit *async_fn*'s positional
    parameters. If *async_fn* takes a ``task_status`` keyword, readiness is
    passed through.

    Raises:
        TypeError: *name* is not a non-empty string, or *async_fn* is not an
            async function (``async def``, a `functools.partial` of one, or an
            object whose ``__call__`` is one); the message names it.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"service name must be a non-empty str, not {safe_repr(name)}")
    if not callable(async_fn):
        raise TypeError(f"async_fn must be callable, not {type(async_fn).__name__}")
    if not is_async_callable(async_fn):
        raise TypeError(
            f"async_fn must be an async function (async def), not the sync callable"
            f" {_describe(async_fn)} (service {name!r}); pass the async function and its"
            f" arguments, not a call or a lambda that returns a coroutine"
        )
    return FunctionService(name, async_fn, *args)


def check_service(service: object) -> Service:
    """*service*, checked to be a `Service` with a non-empty str name.

    Raises:
        TypeError: it is not a service, or its name is not a non-empty str.
    """
    if not isinstance(service, Service):
        raise TypeError(
            f"service must have a 'name' and an async 'serve' method, not {type(service).__name__}"
        )
    name: object = service.name
    if not isinstance(name, str) or not name:
        raise TypeError(f"service name must be a non-empty str, not {safe_repr(name)}")
    if not callable(service.serve):
        raise TypeError(f"service {name!r}: 'serve' is not callable")
    return service
