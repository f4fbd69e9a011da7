"""The console's ASGI app over a served manager, for the HTTP tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
import trio

import trisup
from trisup.http import ConsoleService


@asynccontextmanager
async def serving(
    manager: trisup.Manager,
) -> AsyncGenerator[tuple[ConsoleService, httpx.AsyncClient]]:
    """Serve *manager* with a console added last; yield it and an in-process client."""
    console = ConsoleService(manager, bind="127.0.0.1:0")
    manager.add(console)
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.serve)
        transport = httpx.ASGITransport(app=console.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
            yield console, c
        nursery.cancel_scope.cancel()
