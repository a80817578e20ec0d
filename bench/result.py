"""What a benchmark returns: figures (named samples with an optional target) grouped in a result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from bench.stats import Summary, summarize

ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue]

_NO_PARAMS: Params = MappingProxyType({})


class Statistic(StrEnum):
    """Which summary statistic a target constrains."""

    MEDIAN = "median"
    P99 = "p99"
    MAX = "max"

    def of(self, summary: Summary) -> float:
        match self:
            case Statistic.MEDIAN:
                return summary.median
            case Statistic.P99:
                return summary.p99
            case Statistic.MAX:
                return summary.max


class Comparison(StrEnum):
    AT_MOST = "<="
    AT_LEAST = ">="


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    statistic: Statistic
    comparison: Comparison
    value: float
    # Where the goal comes from, e.g. "issue 7".
    source: str = ""

    def met(self, summary: Summary) -> bool:
        observed = self.statistic.of(summary)
        if self.comparison is Comparison.AT_MOST:
            return observed <= self.value
        return observed >= self.value

    def __str__(self) -> str:
        return f"{self.statistic} {self.comparison} {self.value:g}"


def at_most(value: float, statistic: Statistic = Statistic.MEDIAN, *, source: str = "") -> Target:
    return Target(statistic=statistic, comparison=Comparison.AT_MOST, value=value, source=source)


def at_least(value: float, statistic: Statistic = Statistic.MEDIAN, *, source: str = "") -> Target:
    return Target(statistic=statistic, comparison=Comparison.AT_LEAST, value=value, source=source)


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured quantity for one case: every sample, in `unit`."""

    name: str
    unit: str
    samples: tuple[float, ...]
    # The case this figure belongs to (e.g. variant and client count), shown next to its name.
    params: Params = field(default_factory=lambda: _NO_PARAMS)
    target: Target | None = None
    note: str = ""

    @property
    def summary(self) -> Summary:
        return summarize(self.samples)

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target."""
        if self.target is None:
            return None
        return self.target.met(self.summary)


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    """Everything one benchmark measured in one run."""

    name: str
    title: str
    figures: tuple[Figure, ...]
    # Settings shared by every case (sizes, counts).
    params: Params = field(default_factory=lambda: _NO_PARAMS)
    # Sentences for the report: what is and is not included, costs, observations.
    notes: tuple[str, ...] = ()
    # Filled in by the runner.
    ran_at: str = ""
    duration_s: float = 0.0
    command: str = ""


def skipped(*, name: str, title: str, reason: str) -> BenchResult:
    """The result of a benchmark that cannot run here (e.g. it needs root): no figures, the reason."""
    return BenchResult(name=name, title=title, figures=(), notes=(f"Skipped: {reason}.",))
