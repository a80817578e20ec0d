"""When a certificate holder renews: at half lifetime, and on failure a jittered exponential backoff that
never schedules past expiry. Pure functions (the caller passes the time and its random draws); the node
agent uses them too, so standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

# Renewal happens at half the lifetime, spread by up to ±5% of it so that certificates issued together
# (a node restart, a root rotation) do not all come back to the CA at the same instant.
DEFAULT_RENEWAL_SPREAD = 0.05


def _check_jitter(jitter: float) -> None:
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be a draw in [0, 1], got {jitter}")


def renewal_time(
    not_before: datetime, not_after: datetime, jitter: float, *, spread: float = DEFAULT_RENEWAL_SPREAD
) -> datetime:
    """When to renew a certificate valid from `not_before` to `not_after`.

    `jitter` is a uniform draw in [0, 1] (e.g. `random.random()`); 0.5 gives exactly half the lifetime,
    0 and 1 give half minus/plus `spread` of the lifetime.
    """
    _check_jitter(jitter)
    if not 0.0 <= spread < 0.5:
        raise ValueError(f"spread must be in [0, 0.5), got {spread}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        raise ValueError("not_after must be later than not_before")
    return not_before + lifetime * (0.5 + spread * (2.0 * jitter - 1.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Retry delays after failed renewals: `initial` doubled (times `multiplier`) per attempt up to `maximum`,
    each drawn uniformly from the upper half of that ceiling ("equal jitter"), so retries spread out but
    never collapse to zero."""

    initial: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=5)
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not timedelta(0) < self.initial <= self.maximum:
            raise ValueError("need 0 < initial <= maximum")
        if self.multiplier < 1.0:
            raise ValueError("multiplier must be at least 1")

    def ceiling(self, attempt: int) -> timedelta:
        """The largest delay before retry number `attempt` (0 for the first retry)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Bound the exponent so the float never overflows however long the CA stays away.
        factor = self.multiplier ** min(attempt, 64)
        seconds = min(self.initial.total_seconds() * factor, self.maximum.total_seconds())
        return timedelta(seconds=seconds)


def retry_delay(
    backoff: Backoff, attempt: int, jitter: float, *, now: datetime, not_after: datetime
) -> timedelta:
    """Delay before retry `attempt`, jittered by the draw `jitter` in [0, 1].

    While the current certificate is valid the retry is never scheduled past its expiry, so there is always
    one last attempt before it lapses; once expired, the plain backoff applies.
    """
    _check_jitter(jitter)
    ceiling = backoff.ceiling(attempt)
    delay = ceiling / 2 + (ceiling / 2) * jitter
    if now < not_after:
        delay = min(delay, not_after - now)
    return delay


def retry_schedule(
    backoff: Backoff, jitters: Iterable[float], *, start: datetime, not_after: datetime
) -> Iterator[datetime]:
    """The instants of successive retries after a failure at `start`, one per draw in `jitters`."""
    now = start
    for attempt, jitter in enumerate(jitters):
        now = now + retry_delay(backoff, attempt, jitter, now=now, not_after=not_after)
        yield now
