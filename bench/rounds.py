"""Confidence intervals for comparing two modes measured in interleaved rounds (bench.meshscene).

Samples inside one batch are not independent (a noisy second on the shared machine slows a whole batch),
so resampling single samples understates the uncertainty. The unit that is independent enough is the
round: round i of both modes ran back to back. The bootstrap here draws whole rounds with replacement,
the same round indices for both modes (paired), and recomputes the statistic over the drawn rounds.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.stats import EmptySamplesError, percentile

Rounds = Sequence[Sequence[float]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A statistic of the measured samples and its 95% bootstrap interval."""

    value: float
    low: float
    high: float

    def excludes(self, point: float) -> bool:
        return point < self.low or point > self.high


def _flatten(rounds: Rounds, picks: Sequence[int]) -> list[float]:
    return [sample for index in picks for sample in rounds[index]]


def paired_interval(
    a: Rounds,
    b: Rounds,
    statistic: Callable[[Sequence[float], Sequence[float]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> Interval:
    """`statistic(a samples, b samples)` and its 95% paired round-bootstrap interval.

    `a` and `b` hold the samples of each round; rounds are paired by index, so both need the same number
    of rounds. Seeded: the same samples give the same interval in every report.
    """
    if len(a) != len(b):
        raise ValueError(f"paired rounds differ in number: {len(a)} vs {len(b)}")
    if not any(a) or not any(b):
        raise EmptySamplesError("interval of no samples")
    every = range(len(a))
    value = statistic(_flatten(a, every), _flatten(b, every))
    rng = random.Random(seed)
    drawn: list[float] = []
    for _ in range(resamples):
        picks = rng.choices(every, k=len(a))
        first, second = _flatten(a, picks), _flatten(b, picks)
        if first and second:
            drawn.append(statistic(first, second))
    drawn.sort()
    return Interval(value=value, low=percentile(drawn, 2.5), high=percentile(drawn, 97.5))


def quantile_ratio(q: float) -> Callable[[Sequence[float], Sequence[float]], float]:
    """The statistic p_q(a) / p_q(b)."""

    def ratio(a: Sequence[float], b: Sequence[float]) -> float:
        return percentile(a, q) / percentile(b, q)

    return ratio


def quantile_difference(q: float) -> Callable[[Sequence[float], Sequence[float]], float]:
    """The statistic p_q(a) - p_q(b)."""

    def difference(a: Sequence[float], b: Sequence[float]) -> float:
        return percentile(a, q) - percentile(b, q)

    return difference
