"""The shape of one benchmark: a name and a function that runs it and returns its figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.result import BenchResult


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    # The reduced set of `make bench-quick` (the whole quick run stays under 2 minutes).
    quick: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Benchmark:
    name: str
    title: str
    # Runs the benchmark to completion (it owns its event loop and child processes) and returns its figures.
    run: Callable[[RunOptions], BenchResult]
