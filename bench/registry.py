"""The benchmarks `python -m bench` knows. Adding one: a module with a `BENCHMARK`, and its line below."""

from __future__ import annotations

from bench import ca, cpmemory, datapath, envoy_memory, hbone, translate, xds_push, xds_scale
from bench.benchmark import Benchmark

BENCHMARKS: tuple[Benchmark, ...] = (
    xds_push.BENCHMARK,
    translate.BENCHMARK,
    cpmemory.BENCHMARK,
    xds_scale.BENCHMARK,
    datapath.BENCHMARK,
    hbone.BENCHMARK,
    envoy_memory.BENCHMARK,
    ca.BENCHMARK,
)


def find(name: str) -> Benchmark:
    for benchmark in BENCHMARKS:
        if benchmark.name == name:
            return benchmark
    known = ", ".join(b.name for b in BENCHMARKS)
    raise KeyError(f"no benchmark named {name!r}; known: {known}")
