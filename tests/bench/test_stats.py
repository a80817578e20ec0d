"""The percentile definition the benchmark report relies on."""

from __future__ import annotations

import math
import random

import pytest

from bench.stats import EmptySamplesError, Summary, median_difference_interval, percentile, summarize


def test_percentile_interpolates_linearly_between_ranks() -> None:
    samples = [10.0, 20.0, 30.0, 40.0]
    # Ranks (n - 1) * q / 100: p50 sits halfway between 20 and 30, p90 at rank 2.7.
    assert percentile(samples, 50) == pytest.approx(25.0)
    assert percentile(samples, 90) == pytest.approx(37.0)
    assert percentile(samples, 25) == pytest.approx(17.5)


def test_percentile_ends_are_min_and_max_and_order_does_not_matter() -> None:
    samples = [5.0, -1.0, 3.0, 9.5, 0.0]
    assert percentile(samples, 0) == -1.0
    assert percentile(samples, 100) == 9.5
    assert percentile(samples, 50) == 3.0


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([4.2], 0) == 4.2
    assert percentile([4.2], 99) == 4.2


def test_p99_of_a_hundred_samples_sits_just_below_the_max() -> None:
    samples = [float(i) for i in range(1, 101)]
    random.Random(7).shuffle(samples)
    # Rank 99 * 0.99 = 98.01 between the values 99 and 100.
    assert percentile(samples, 99) == pytest.approx(99.01)


@pytest.mark.parametrize("q", [-1.0, 100.5, math.nan])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0, 2.0], q)


def test_empty_samples_are_an_error() -> None:
    with pytest.raises(EmptySamplesError):
        percentile([], 50)
    with pytest.raises(EmptySamplesError):
        summarize([])


def test_summary_fields() -> None:
    summary = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert summary.count == 5
    assert summary.median == summary.p50 == 3.0
    assert summary.min == 1.0
    assert summary.max == 100.0
    assert summary.p99 == pytest.approx(96.16)  # rank 3.96 between 4 and 100
    assert summary.iqr == pytest.approx(4.0 - 2.0)
    assert summary.spread == pytest.approx(96.16 / 3.0)


def test_spread_of_zero_median() -> None:
    flat = Summary(count=2, median=0.0, p50=0.0, p99=0.0, min=0.0, max=0.0, iqr=0.0)
    assert flat.spread == 1.0
    tail = Summary(count=2, median=0.0, p50=0.0, p99=1.0, min=0.0, max=1.0, iqr=0.0)
    assert tail.spread == math.inf


def test_median_difference_interval_brackets_a_real_gap_and_excludes_zero() -> None:
    a = [10.0 + (i % 7) for i in range(200)]
    b = [20.0 + (i % 7) for i in range(200)]
    low, high = median_difference_interval(a, b)
    assert low <= -10.0 <= high
    assert high < 0
    # Same samples, same seed: the same interval.
    assert median_difference_interval(a, b) == (low, high)


def test_median_difference_interval_of_identical_samples_contains_zero() -> None:
    a = [float(i) for i in range(100)]
    low, high = median_difference_interval(a, list(a))
    assert low <= 0.0 <= high
