"""Jittered exponential backoff, and the sleep seam that lets tests skip the waiting."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Protocol


class Sleeper(Protocol):
    async def sleep(self, seconds: float) -> None: ...


class AsyncioSleeper:
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_: type[Sleeper] = AsyncioSleeper


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # +- this fraction, so many clients do not retry in lockstep

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number `attempt` (1 for the first retry)."""
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))
