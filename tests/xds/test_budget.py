"""The push budget: responses written at once are bounded in number and in bytes, waiters go in order."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.xds.budget import PushBudget


async def _started(budget: PushBudget, size: int, log: list[int]) -> asyncio.Task[None]:
    async def take() -> None:
        await budget.acquire(size)
        log.append(size)

    task = asyncio.create_task(take())
    await asyncio.sleep(0)
    return task


async def test_bytes_bound_the_pushes_in_flight_and_waiters_go_in_order() -> None:
    budget = PushBudget(pushes=10, max_bytes=100)
    log: list[int] = []
    first = await _started(budget, 60, log)
    big = await _started(budget, 50, log)  # 60 + 50 > 100: waits
    small = await _started(budget, 10, log)  # would fit, but must not overtake the big one
    assert log == [60] and not big.done() and not small.done()
    budget.release(60)
    await asyncio.gather(first, big, small)
    assert log == [60, 50, 10]
    assert budget.free_bytes == 40 and budget.free_pushes == 8


async def test_the_count_still_bounds_small_pushes_and_an_oversized_one_goes_alone() -> None:
    budget = PushBudget(pushes=2, max_bytes=100)
    log: list[int] = []
    tasks = [await _started(budget, 1, log) for _ in range(3)]
    assert log == [1, 1]
    budget.release(1)
    budget.release(1)
    await asyncio.gather(*tasks)
    budget.release(1)
    huge = await _started(budget, 10_000, log)  # charged the whole budget, not refused
    await huge
    assert budget.free_bytes == 0
    blocked = await _started(budget, 1, log)
    assert not blocked.done()
    budget.release(10_000)
    await blocked
    assert budget.free_bytes == 99


async def test_a_cancelled_waiter_leaves_the_queue_and_lets_the_next_one_go() -> None:
    budget = PushBudget(pushes=10, max_bytes=100)
    log: list[int] = []
    await budget.acquire(90)
    big = await _started(budget, 50, log)
    small = await _started(budget, 10, log)
    assert log == []
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    await small
    assert log == [10] and budget.free_bytes == 0


def test_an_empty_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        PushBudget(pushes=0, max_bytes=1)
