"""Durations parsed once from Gateway API (`1h2m3s4ms`) or Go (`1.5s`, `300us`) text, in nanoseconds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_UNITS: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
# GEP-2257: what a Gateway API duration field accepts.
_GATEWAY_RE: Final = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_GO_PART_RE: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
# Go's time.Duration is an int64 of nanoseconds; larger values are errors there too.
_MAX_NANOS: Final = 2**63 - 1


class DurationError(ValueError):
    """Text that is not a duration; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Duration:
    """A non-negative span of time in whole nanoseconds (exact, hashable, ordered)."""

    nanoseconds: int

    def __post_init__(self) -> None:
        if not 0 <= self.nanoseconds <= _MAX_NANOS:
            raise DurationError(f"duration out of range: {self.nanoseconds}ns")

    @classmethod
    def of(cls, *, hours: int = 0, minutes: int = 0, seconds: int = 0, milliseconds: int = 0) -> Duration:
        total_ms = ((hours * 60 + minutes) * 60 + seconds) * 1000 + milliseconds
        return cls(nanoseconds=total_ms * 1_000_000)

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Go's `time.ParseDuration` syntax (a superset of GEP-2257), rejecting negative values."""
        if not isinstance(text, str) or not text:
            raise DurationError("empty duration")
        body = text
        if body[0] in "+-":
            if body[0] == "-" and body[1:] not in ("0",) and not _all_zero(body[1:]):
                raise DurationError(f"negative duration {text!r}")
            body = body[1:]
        if body == "0":
            return cls(nanoseconds=0)
        total = 0
        pos = 0
        while pos < len(body):
            match = _GO_PART_RE.match(body, pos)
            if match is None or (not match.group(1) and not match.group(2)):
                raise DurationError(
                    f"invalid duration {text!r}: expected numbers with units (h, m, s, ms, us, ns)"
                )
            whole, frac, unit = match.group(1), match.group(2) or "", match.group(3)
            scale = _UNITS[unit]
            total += int(whole or "0") * scale
            if frac:
                total += int(frac) * scale // 10 ** len(frac)
            pos = match.end()
        if total > _MAX_NANOS:
            raise DurationError(f"duration {text!r} is too long")
        return cls(nanoseconds=total)

    @classmethod
    def parse_gateway(cls, text: str) -> Duration:
        """Gateway API's GEP-2257 format: up to four `<1-5 digits><h|m|s|ms>` parts, e.g. `1h30m`, `500ms`."""
        if not isinstance(text, str) or not _GATEWAY_RE.match(text):
            raise DurationError(f"invalid Gateway API duration {text!r}: expected e.g. 10s, 500ms, 1h30m")
        return cls.parse(text)

    @property
    def total_seconds(self) -> float:
        return self.nanoseconds / 1e9

    @property
    def milliseconds(self) -> int:
        """Whole milliseconds, rounded down (Envoy takes most timeouts at millisecond precision)."""
        return self.nanoseconds // 1_000_000

    def seconds_and_nanos(self) -> tuple[int, int]:
        """The (seconds, nanos) pair of a protobuf `google.protobuf.Duration`."""
        return divmod(self.nanoseconds, 1_000_000_000)

    def __bool__(self) -> bool:
        return self.nanoseconds != 0

    def __str__(self) -> str:
        if self.nanoseconds == 0:
            return "0s"
        rest = self.nanoseconds
        parts = []
        for unit in ("h", "m", "s", "ms", "us", "ns"):
            count, rest = divmod(rest, _UNITS[unit])
            if count:
                parts.append(f"{count}{unit}")
        return "".join(parts)


def _all_zero(text: str) -> bool:
    try:
        return Duration.parse(text).nanoseconds == 0
    except DurationError:
        return False
