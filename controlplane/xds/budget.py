"""How many responses, and how many of their bytes, the server writes at once.

A response is joined into one buffer only while it holds a share of the budget, and gRPC keeps its own copy
until the write completes: a count alone bounds memory only for small responses, and a cold start of a large
mesh sends every node tens of MB (64 pushes of a 9 MB listener would hold over 1 GB). Waiters are served in
order, so a large response is not overtaken forever by small ones; one larger than the whole byte budget
goes out alone.
"""

from __future__ import annotations

import asyncio
from collections import deque


class PushBudget:
    """`await budget.acquire(size)`, then `budget.release(size)` exactly once per acquire."""

    def __init__(self, *, pushes: int, max_bytes: int) -> None:
        if pushes < 1 or max_bytes < 1:
            raise ValueError("a push budget needs at least one push and one byte")
        self._max_bytes = max_bytes
        self._free_pushes = pushes
        self._free_bytes = max_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _charge(self, size: int) -> int:
        return min(size, self._max_bytes)

    def _fits(self, charge: int) -> bool:
        return self._free_pushes > 0 and self._free_bytes >= charge

    def _take(self, charge: int) -> None:
        self._free_pushes -= 1
        self._free_bytes -= charge

    async def acquire(self, size: int) -> None:
        charge = self._charge(size)
        if not self._waiters and self._fits(charge):
            self._take(charge)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((charge, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as we were cancelled: hand it on
            else:
                self._waiters.remove((charge, waiter))
                self._wake()  # a large waiter leaving may let smaller ones behind it go
            raise

    def release(self, size: int) -> None:
        self._free_pushes += 1
        self._free_bytes += self._charge(size)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            charge, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if not self._fits(charge):
                return
            self._waiters.popleft()
            self._take(charge)
            waiter.set_result(None)

    @property
    def free_bytes(self) -> int:
        return self._free_bytes

    @property
    def free_pushes(self) -> int:
        return self._free_pushes
