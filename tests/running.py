"""Run a component (anything with `async def run()` that runs until cancelled) for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol


class Runnable(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...


@contextlib.asynccontextmanager
async def running(component: Runnable) -> AsyncIterator[asyncio.Task[None]]:
    """The component's `run()` as a task, cancelled and awaited when the block ends."""
    task = asyncio.create_task(component.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
