"""Percentiles and the summary every benchmark figure reports."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class EmptySamplesError(ValueError):
    """A summary of no samples was asked for."""


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between closest ranks.

    The same definition as numpy's default ("linear", Hyndman-Fan type 7): with n sorted samples the
    percentile sits at rank (n - 1) * q / 100, so p0 is the minimum, p100 the maximum and p50 the median.
    """
    if not samples:
        raise EmptySamplesError("percentile of no samples")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    count: int
    median: float
    p50: float
    p99: float
    min: float
    max: float
    # Interquartile range: p75 - p25.
    iqr: float

    @property
    def spread(self) -> float:
        """p99 / p50: how far the tail sits from the middle (1.0 for a single sample; inf if p50 is 0)."""
        if self.p50 == 0:
            return 1.0 if self.p99 == 0 else math.inf
        return self.p99 / self.p50


def summarize(samples: Iterable[float]) -> Summary:
    values = sorted(samples)
    if not values:
        raise EmptySamplesError("summary of no samples")
    median = percentile(values, 50)
    return Summary(
        count=len(values),
        median=median,
        p50=median,
        p99=percentile(values, 99),
        min=values[0],
        max=values[-1],
        iqr=percentile(values, 75) - percentile(values, 25),
    )


def median_difference_interval(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 400, seed: int = 0
) -> tuple[float, float]:
    """A 95% bootstrap interval for median(a) - median(b): whether a p50 gap is more than noise.

    Seeded, so the same samples give the same interval in every report.
    """
    if not a or not b:
        raise EmptySamplesError("median difference of no samples")
    rng = random.Random(seed)
    differences = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(resamples)
    )
    return percentile(differences, 2.5), percentile(differences, 97.5)
