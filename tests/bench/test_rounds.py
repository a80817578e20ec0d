"""The paired round bootstrap (bench.rounds) and the data-path round order (bench.meshscene)."""

from __future__ import annotations

import random

import pytest

from bench.meshscene import Mode, round_order
from bench.rounds import Interval, paired_interval, quantile_difference, quantile_ratio
from bench.stats import EmptySamplesError


def _rounds(rng: random.Random, center: float, count: int = 40, size: int = 25) -> list[list[float]]:
    return [[rng.gauss(center, 10.0) for _ in range(size)] for _ in range(count)]


def test_a_real_gap_gives_an_interval_that_excludes_a_tie() -> None:
    rng = random.Random(1)
    slow, fast = _rounds(rng, 130.0), _rounds(rng, 100.0)
    gap = paired_interval(slow, fast, quantile_difference(50))
    assert 25.0 < gap.value < 35.0
    assert gap.low <= gap.value <= gap.high
    assert gap.excludes(0.0)
    ratio = paired_interval(fast, slow, quantile_ratio(50))
    assert ratio.high < 1.0


def test_identical_distributions_give_an_interval_around_a_tie() -> None:
    rng = random.Random(2)
    gap = paired_interval(_rounds(rng, 100.0), _rounds(rng, 100.0), quantile_difference(50))
    assert not gap.excludes(0.0)


def test_pairing_cancels_noise_shared_by_a_round() -> None:
    # Each round shifts both modes alike (a noisy second on the machine): paired draws keep the shift
    # out of the difference, so the interval stays as narrow as the within-round noise allows.
    rng = random.Random(3)
    shifts = [rng.choice((0.0, 500.0)) for _ in range(40)]
    a = [[shift + 110.0 + rng.gauss(0, 1) for _ in range(25)] for shift in shifts]
    b = [[shift + 100.0 + rng.gauss(0, 1) for _ in range(25)] for shift in shifts]
    gap = paired_interval(a, b, quantile_difference(50))
    assert gap.excludes(0.0)


def test_the_interval_is_seeded_and_needs_paired_nonempty_rounds() -> None:
    rng = random.Random(4)
    a, b = _rounds(rng, 100.0), _rounds(rng, 101.0)
    assert paired_interval(a, b, quantile_ratio(99)) == paired_interval(a, b, quantile_ratio(99))
    with pytest.raises(ValueError, match="differ in number"):
        paired_interval(a, b[:-1], quantile_ratio(50))
    with pytest.raises(EmptySamplesError):
        paired_interval([[]], [[1.0]], quantile_ratio(50))


def test_interval_excludes_only_points_outside_it() -> None:
    interval = Interval(value=1.0, low=0.5, high=1.5)
    assert interval.excludes(0.4) and interval.excludes(1.6)
    assert not interval.excludes(0.5) and not interval.excludes(1.5)


def test_round_order_rotates_and_keeps_the_iptables_modes_together() -> None:
    modes = tuple(Mode)
    orders = [round_order(modes, index) for index in range(12)]
    for order in orders:
        assert sorted(order) == sorted(modes)
        positions = [i for i, mode in enumerate(order) if mode.needs_iptables]
        assert positions == list(range(positions[0], positions[0] + len(positions)))
    # Every mode leads some round, and the iptables block changes its inner order too.
    assert {order[0] for order in orders} >= {mode for mode in modes if not mode.needs_iptables}
    assert len({tuple(m for m in order if m.needs_iptables) for order in orders}) == 3
