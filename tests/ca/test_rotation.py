from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

import pytest

from controlplane.ca.rotation import Backoff, renewal_time, retry_delay, retry_schedule
from tests.ca.builders import START, FakeClock

DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        (0.5, timedelta(hours=12)),
        (0.0, timedelta(hours=10, minutes=48)),
        (1.0, timedelta(hours=13, minutes=12)),
    ],
)
def test_renewal_at_half_lifetime_with_spread(jitter: float, expected: timedelta) -> None:
    assert renewal_time(START, START + DAY, jitter) == START + expected


def test_renewal_stays_within_the_spread_for_any_draw() -> None:
    rng = random.Random(7)
    for _ in range(200):
        at = renewal_time(START, START + DAY, rng.random())
        assert START + DAY * 0.45 <= at <= START + DAY * 0.55


@pytest.mark.parametrize(
    ("not_after", "jitter", "spread"),
    [
        (START, 0.5, 0.05),
        (START - DAY, 0.5, 0.05),
        (START + DAY, 1.5, 0.05),
        (START + DAY, -0.1, 0.05),
        (START + DAY, 0.5, 0.5),
    ],
)
def test_renewal_rejects_bad_input(not_after: datetime, jitter: float, spread: float) -> None:
    with pytest.raises(ValueError):
        renewal_time(START, not_after, jitter, spread=spread)


def test_backoff_ceilings_grow_exponentially_and_cap() -> None:
    backoff = Backoff(initial=timedelta(seconds=1), maximum=timedelta(seconds=60))
    ceilings = [backoff.ceiling(n).total_seconds() for n in range(9)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.ceiling(10_000) == timedelta(seconds=60)


@pytest.mark.parametrize(("jitter", "seconds"), [(0.0, 4.0), (0.5, 6.0), (1.0, 8.0)])
def test_retry_delay_uses_the_upper_half_of_the_ceiling(jitter: float, seconds: float) -> None:
    backoff = Backoff(initial=timedelta(seconds=1), maximum=timedelta(seconds=60))
    delay = retry_delay(backoff, 3, jitter, now=START, not_after=START + DAY)
    assert delay == timedelta(seconds=seconds)


def test_retry_is_never_scheduled_past_expiry() -> None:
    backoff = Backoff(initial=timedelta(seconds=10), maximum=timedelta(minutes=10))
    not_after = START + timedelta(seconds=30)
    assert retry_delay(backoff, 5, 1.0, now=START, not_after=not_after) == timedelta(seconds=30)
    # Once expired there is nothing left to protect: the plain backoff applies.
    assert retry_delay(backoff, 5, 1.0, now=not_after, not_after=not_after) == timedelta(
        minutes=5, seconds=20
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": timedelta(0)},
        {"initial": timedelta(minutes=10), "maximum": timedelta(minutes=1)},
        {"multiplier": 0.5},
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_agent_loop_on_a_fake_clock_renews_before_expiry_through_an_outage() -> None:
    """Drive the renewal loop an agent runs: renew at half life; the CA is down for 11 hours around the
    first renewal; retries back off, every attempt lands before expiry, and the renewal succeeds as soon
    as the CA is back."""
    clock = FakeClock()
    rng = random.Random(1)
    backoff = Backoff(initial=timedelta(seconds=1), maximum=timedelta(minutes=5))
    not_before, not_after = clock.now(), clock.now() + DAY
    outage_end = clock.now() + timedelta(hours=23)
    attempts: list[datetime] = []
    renewals = 0
    failures = 0
    clock.current = renewal_time(not_before, not_after, rng.random())
    while renewals < 3:
        attempts.append(clock.now())
        assert clock.now() <= not_after, "an attempt was scheduled after the certificate expired"
        if clock.now() < outage_end:
            delay = retry_delay(backoff, failures, rng.random(), now=clock.now(), not_after=not_after)
            failures += 1
            clock.advance(delay)
            continue
        renewals += 1
        failures = 0
        not_before, not_after = clock.now(), clock.now() + DAY
        clock.current = renewal_time(not_before, not_after, rng.random())
    assert max(b - a for a, b in itertools.pairwise(attempts)) <= timedelta(hours=13.2)
    # During the outage the delays grew to the cap and stayed there.
    gaps = [b - a for a, b in itertools.pairwise(attempts) if b <= outage_end]
    assert max(gaps) <= backoff.maximum
    assert gaps[-1] >= backoff.maximum / 2
    # Recovery came within one capped retry of the CA's return.
    first_after = min(a for a in attempts if a >= outage_end)
    assert first_after - outage_end <= backoff.maximum


def test_retry_schedule_is_monotonic_and_bounded_by_expiry() -> None:
    backoff = Backoff(initial=timedelta(seconds=1), maximum=timedelta(hours=1))
    not_after = START + timedelta(hours=2)
    times = list(retry_schedule(backoff, [1.0] * 20, start=START, not_after=not_after))
    assert times == sorted(times)
    before_expiry = [t for t in times if t <= not_after]
    assert not_after in before_expiry, "the last retry before expiry must land exactly at expiry"
    # 1+2+4+...+2048 s ≈ 68 min, then the 1 h cap hits expiry.
    assert times[0] == START + timedelta(seconds=1)
