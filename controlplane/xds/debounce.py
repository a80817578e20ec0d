"""Coalesce bursts of change notifications into one push."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Hashable)


class DebounceObserver(Protocol):
    """Told about each push the debouncer lets through (metrics)."""

    def debounced(self, *, waited: float, notifications: int) -> None:
        """`waited`: seconds from the first pending notify to the push; `notifications`: how many notifies
        the push coalesced (1: none merged)."""


class Debouncer(Generic[R]):
    """Push after `quiet` seconds without a new notify, or `max_wait` after the first pending one."""

    def __init__(
        self,
        *,
        quiet: float = 0.1,
        max_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observer: DebounceObserver | None = None,
    ) -> None:
        if quiet < 0 or max_wait < quiet:
            raise ValueError("need 0 <= quiet <= max_wait")
        self._quiet = quiet
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._observer = observer
        self._notifications = 0
        self._pending: set[R] = set()
        self._first = 0.0
        self._last = 0.0
        self._wake = asyncio.Event()

    def notify(self, reason: R) -> None:
        now = self._clock()
        if not self._pending:
            self._first = now
        self._pending.add(reason)
        self._notifications += 1
        self._last = now
        self._wake.set()

    @property
    def pending(self) -> frozenset[R]:
        return frozenset(self._pending)

    async def run(self, push: Callable[[frozenset[R]], Awaitable[None]]) -> None:
        """Run until cancelled. Notifies that arrive while `push` runs are coalesced into the next push."""
        while True:
            await self._wake.wait()
            while True:
                deadline = min(self._last + self._quiet, self._first + self._max_wait)
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                await self._sleep(remaining)
            reasons = frozenset(self._pending)
            self._pending.clear()
            self._wake.clear()
            notifications, self._notifications = self._notifications, 0
            if self._observer is not None:
                self._observer.debounced(waited=self._clock() - self._first, notifications=notifications)
            logger.debug("debounced push reasons=%s", sorted(map(str, reasons)))
            await push(reasons)
