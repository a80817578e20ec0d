"""Debouncing with a fake clock: quiet period, max wait, coalescing."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from controlplane.xds.debounce import Debouncer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._ids), future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        for _ in range(10):  # let woken tasks run
            await asyncio.sleep(0)


class Waits:
    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []

    def debounced(self, *, waited: float, notifications: int) -> None:
        self.seen.append((waited, notifications))


class Rig:
    def __init__(self, *, quiet: float = 1.0, max_wait: float = 5.0) -> None:
        self.clock = FakeClock()
        self.waits = Waits()
        self.debouncer: Debouncer[str] = Debouncer(
            quiet=quiet, max_wait=max_wait, clock=self.clock, sleep=self.clock.sleep, observer=self.waits
        )
        self.pushes: list[tuple[float, frozenset[str]]] = []

    async def push(self, reasons: frozenset[str]) -> None:
        self.pushes.append((self.clock.now, reasons))


async def run(rig: Rig) -> asyncio.Task[None]:
    task = asyncio.create_task(rig.debouncer.run(rig.push))
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_burst_is_pushed_once_after_the_quiet_period_with_its_wait_and_coalesced_count() -> None:
    rig = Rig()
    task = await run(rig)
    try:
        rig.debouncer.notify("config")
        await rig.clock.advance(0.5)
        rig.debouncer.notify("endpoints")
        rig.debouncer.notify("config")
        await rig.clock.advance(0.9)
        assert rig.pushes == []
        await rig.clock.advance(0.1)
        assert rig.pushes == [(1.5, frozenset({"config", "endpoints"}))]
        assert rig.waits.seen == [(1.5, 3)]
        rig.debouncer.notify("config")
        await rig.clock.advance(1.0)
        assert rig.waits.seen == [(1.5, 3), (1.0, 1)]
    finally:
        await stop(task)


async def test_a_steady_stream_of_changes_is_pushed_after_max_wait() -> None:
    rig = Rig(quiet=1.0, max_wait=2.0)
    task = await run(rig)
    try:
        for _ in range(5):  # at 0, 0.5, 1.0, 1.5 (pushed at 2.0), then 2.0 (the next push)
            rig.debouncer.notify("endpoints")
            await rig.clock.advance(0.5)
        assert [at for at, _ in rig.pushes] == [2.0]
        assert rig.waits.seen == [(2.0, 4)]
    finally:
        await stop(task)


def test_quiet_must_not_exceed_max_wait() -> None:
    with pytest.raises(ValueError, match="quiet"):
        Debouncer(quiet=2.0, max_wait=1.0)
