"""Benchmark: resident memory of the control plane holding S Services for N nodes (issues 3 and 7).

Each case runs in a fresh interpreter (`python -m bench.cpmemory --services S --nodes N`, which prints one
JSON object), so one case's heap and the allocator's retained pages cannot inflate another's. The child
builds bench.translate's synthetic mesh (10 endpoints per Service, 5 workloads per node) into the real
objects the control plane keeps: a `MeshState` holding the model, a `SnapshotPublisher` (its translator memo
and interner) and a `SnapshotCache` (every node's snapshot), pushes once, and reads VmRSS and VmHWM from
/proc/self/status. The breakdown counts the distinct resources held across all snapshots (shared ones once)
and their encoded bytes (the Any plus the wire fragments around it), by type.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from bench.benchmark import Benchmark, RunOptions
from bench.clientproc import BenchError
from bench.memory import peak_rss_mib, release_freed_memory, rss_mib
from bench.result import BenchResult, Figure, Target, at_most
from bench.translate import MeshShape, build_mesh
from controlplane.meshstate import MeshState, PushReason
from controlplane.metrics import ControlPlaneMetrics
from controlplane.publisher import SnapshotPublisher
from controlplane.translate.translator import Translator
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resource import Resource

NAME = "cpmemory"
TITLE = "Control plane memory holding 1,000 and 10,000 Services"
TARGET_SOURCE = "issue 7"
# Issue 7: <= 300 MB at 1,000 Services x 100 nodes, <= 2 GB at 10,000 Services x 1,000 nodes (MB = MiB here,
# the stricter reading).
TARGETS_MIB: dict[tuple[int, int], float] = {(1000, 100): 300.0, (10_000, 1000): 2048.0}
# The largest case is attempted only if it fits: a time limit, and an address-space cap well inside the
# machine's available memory so a miss ends the child with MemoryError instead of waking the OOM killer.
LARGEST_TIME_LIMIT_S = 180.0
CASE_TIME_LIMIT_S = 600.0
_MEMORY_SHARE = 0.6
# Other work shares the machine: never more than this, whatever is free.
MEMORY_CAP_MAX = 12 * 2**30


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeBytes:
    type_name: str
    resources: int
    bytes: int
    # Node snapshots that hold at least one resource of the type (shared sets count once per node).
    held_by_nodes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryMeasurement:
    services: int
    nodes: int
    baseline_rss_mib: float
    model_rss_mib: float
    rss_mib: float
    # After dropping the publisher (translator memo, interner): the snapshots and the model alone.
    cache_only_rss_mib: float
    peak_rss_mib: float
    push_s: float
    resources: int
    resource_bytes: int
    by_type: tuple[TypeBytes, ...]
    largest: str
    largest_bytes: int
    # The largest resource compared on two nodes: its top-level fields that differ, with their share of its
    # bytes (the rest is the same on both, so every per-node copy repeats it); empty with one node.
    largest_differs_in: tuple[str, ...]
    largest_differing_share: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MemoryMeasurement:
        raw = json.loads(text)
        raw["by_type"] = tuple(TypeBytes(**t) for t in raw["by_type"])
        raw["largest_differs_in"] = tuple(raw["largest_differs_in"])
        return cls(**raw)


def _encoded_bytes(r: Resource) -> int:
    return len(r.any_bytes) + len(r.sotw_prefix) + len(r.delta_prefix) + len(r.delta_suffix)


def count_resources(cache: SnapshotCache) -> tuple[TypeBytes, ...]:
    """Distinct resources (by identity: the pool shares equal ones) across every node's snapshot, by type."""
    seen: dict[int, Resource] = {}
    holders: dict[str, int] = {}
    for node in cache.node_ids():
        snapshot = cache.get(node)
        if snapshot is None:
            continue
        for type_url, named in snapshot.resources.items():
            if len(named):
                holders[type_url] = holders.get(type_url, 0) + 1
            for r in named.values():
                seen[id(r)] = r
    totals: dict[str, tuple[int, int]] = {}
    for r in seen.values():
        count, size = totals.get(r.type_url, (0, 0))
        totals[r.type_url] = (count + 1, size + _encoded_bytes(r))
    return tuple(
        TypeBytes(type_name=t.rsplit(".", 1)[-1], resources=c, bytes=b, held_by_nodes=holders.get(t, 0))
        for t, (c, b) in sorted(totals.items(), key=lambda item: -item[1][1])
    )


async def measure(shape: MeshShape) -> MemoryMeasurement:
    """Build, push once and measure in this process (meaningful only in a fresh one: see `main`)."""
    release_freed_memory()
    baseline = rss_mib()
    state = MeshState(sources=["bench"], on_change=lambda _: None)
    state.snapshot = build_mesh(shape)
    release_freed_memory()
    model = rss_mib()
    cache = SnapshotCache()
    publisher = SnapshotPublisher(
        state=state, translator=Translator(), cache=cache, metrics=ControlPlaneMetrics(CollectorRegistry())
    )
    started = time.perf_counter()
    result = await publisher.push(frozenset({PushReason.INITIAL}))
    push_s = time.perf_counter() - started
    if result.nodes != shape.nodes:
        raise BenchError(f"pushed {result.nodes} nodes, expected {shape.nodes}")
    # What stays resident, not the garbage of the push (the peak below says what the push itself needed).
    release_freed_memory()
    held = rss_mib()
    by_type = count_resources(cache)
    peak = peak_rss_mib()
    largest = _largest(cache)
    differs_in, differing_share = _per_node_part(cache, largest)
    del publisher, result
    release_freed_memory()
    return MemoryMeasurement(
        services=shape.services,
        nodes=shape.nodes,
        baseline_rss_mib=baseline,
        model_rss_mib=model,
        rss_mib=held,
        cache_only_rss_mib=rss_mib(),
        peak_rss_mib=peak,
        push_s=push_s,
        resources=sum(t.resources for t in by_type),
        resource_bytes=sum(t.bytes for t in by_type),
        by_type=by_type,
        largest=f"{largest.type_url.rsplit('.', 1)[-1]} {largest.name!r}",
        largest_bytes=_encoded_bytes(largest),
        largest_differs_in=differs_in,
        largest_differing_share=differing_share,
    )


def _largest(cache: SnapshotCache) -> Resource:
    snapshots = [s for s in map(cache.get, sorted(cache.node_ids())) if s is not None]
    resources = (r for s in snapshots for named in s.resources.values() for r in named.values())
    return max(resources, key=_encoded_bytes)


def _available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise BenchError("no MemAvailable in /proc/meminfo")


def _memory_cap() -> int:
    return min(int(_available_bytes() * _MEMORY_SHARE), MEMORY_CAP_MAX)


def _per_node_part(cache: SnapshotCache, resource: Resource) -> tuple[tuple[str, ...], float]:
    """Which top-level fields of `resource` differ between two nodes' copies, and their share of its bytes."""
    copies: list[Message] = []
    for node in sorted(cache.node_ids())[:2]:
        snapshot = cache.get(node)
        held = None if snapshot is None else snapshot.of_type(resource.type_url).get(resource.name)
        if held is not None:
            copies.append(held.message())
    if len(copies) < 2:
        return (), 0.0
    first, second = copies
    differing = [f.name for f, value in first.ListFields() if value != getattr(second, f.name)]
    total = first.ByteSize()
    for name in differing:
        first.ClearField(name)
    return tuple(differing), (total - first.ByteSize()) / total if total else 0.0


def measure_in_child(shape: MeshShape, time_limit_s: float) -> MemoryMeasurement:
    """Run one case in a fresh interpreter; BenchError if it runs out of time or of its memory cap."""
    argv = [sys.executable, "-m", "bench.cpmemory", "--services", str(shape.services)]
    argv += ["--nodes", str(shape.nodes), "--memory-cap", str(_memory_cap())]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=time_limit_s, check=False)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the child
        raise BenchError(f"{shape.services} x {shape.nodes} took over {time_limit_s:g} s") from exc
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise BenchError(f"{shape.services} x {shape.nodes} failed: {tail[0]}")
    return MemoryMeasurement.from_json(done.stdout)


def _figures(m: MemoryMeasurement) -> list[Figure]:
    params = {"services": m.services, "nodes": m.nodes}
    goal = TARGETS_MIB.get((m.services, m.nodes))
    target: Target | None = None if goal is None else at_most(goal, source=TARGET_SOURCE)
    breakdown = "; ".join(f"{t.type_name} {t.resources} = {t.bytes / 2**20:.1f} MiB" for t in m.by_type)
    return [
        Figure(
            name="RSS holding the config",
            unit="MiB",
            samples=(m.rss_mib,),
            params=params,
            target=target,
            note=f"baseline (imports) {m.baseline_rss_mib:.0f} MiB, with the model {m.model_rss_mib:.0f} MiB",
        ),
        Figure(
            name="of which snapshots and model (publisher dropped)",
            unit="MiB",
            samples=(m.cache_only_rss_mib,),
            params=params,
            note="the rest is the translator's memo (protobuf messages) and the publisher's interner",
        ),
        Figure(name="peak RSS (VmHWM), in the push", unit="MiB", samples=(m.peak_rss_mib,), params=params),
        Figure(name="first push (translate + serialize)", unit="s", samples=(m.push_s,), params=params),
        Figure(
            name="distinct resources held, encoded",
            unit="MiB",
            samples=(m.resource_bytes / 2**20,),
            params=params,
            note=f"{m.resources} resources: {breakdown}",
        ),
        Figure(
            name="largest resource",
            unit="KiB",
            samples=(m.largest_bytes / 1024,),
            params=params,
            note=m.largest,
        ),
    ]


def attempt_largest(base: MemoryMeasurement, largest: MeshShape) -> tuple[list[Figure], str]:
    """Measure the largest case if a linear extrapolation from `base` (same Services, fewer nodes) says it
    fits the time limit and the memory cap; otherwise say why not, with the extrapolation."""
    scale = largest.nodes / base.nodes
    # Everything above the model grows with the nodes here (the mesh-wide part is a few MiB): an upper bound.
    rss_estimate = base.model_rss_mib + (base.rss_mib - base.model_rss_mib) * scale
    time_estimate = base.push_s * scale
    cap_mib = _memory_cap() / 2**20
    where = f"{largest.services:,} Services x {largest.nodes:,} nodes"
    estimate = (
        f"extrapolated linearly from {base.nodes} nodes: about {rss_estimate / 1024:.1f} GiB RSS and a "
        f"{time_estimate:.0f} s first push"
    )
    if time_estimate > LARGEST_TIME_LIMIT_S or rss_estimate > cap_mib:
        return [], (
            f"{where} (issue 7's 2 GB target) not measured, it does not fit this run's limits "
            f"({LARGEST_TIME_LIMIT_S:g} s, {cap_mib / 1024:.1f} GiB): {estimate}."
        )
    try:
        # The estimate decided whether to try; the figures are the measurement.
        return _figures(measure_in_child(largest, LARGEST_TIME_LIMIT_S)), f"{where}: measured."
    except BenchError as exc:
        return [], f"{where} not measured: {exc}; {estimate}."


def run(options: RunOptions) -> BenchResult:
    cases = [MeshShape(services=1000, nodes=100), MeshShape(services=10_000, nodes=100)]
    if options.quick:
        cases = [MeshShape(services=1000, nodes=100)]
    figures: list[Figure] = []
    notes: list[str] = []
    measured: list[MemoryMeasurement] = []
    for shape in cases:
        m = measure_in_child(shape, CASE_TIME_LIMIT_S)
        measured.append(m)
        figures += _figures(m)
        print(f"{NAME} {shape.services}x{shape.nodes}: {m.rss_mib:.0f} MiB", file=sys.stderr, flush=True)
    if not options.quick:
        more, note = attempt_largest(measured[-1], MeshShape(services=10_000, nodes=1000))
        figures += more
        notes.append(note)
    for m in measured:
        listeners = next((t for t in m.by_type if t.type_name == "Listener"), None)
        if listeners is not None:
            notes.append(
                f"{m.services:,} x {m.nodes}: listeners are {100 * listeners.bytes / m.resource_bytes:.1f}% "
                f"of the encoded bytes ({listeners.resources} distinct, {listeners.bytes / 2**20:.0f} MiB); "
                f"the largest resource is {m.largest}, {m.largest_bytes / 2**20:.2f} MiB"
                + (
                    f"; between two nodes its copies differ only in {', '.join(m.largest_differs_in)}, "
                    f"{100 * m.largest_differing_share:.1f}% of its bytes: every node repeats the rest."
                    if m.largest_differs_in
                    else ", shared by every node."
                )
            )
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures),
        params={"endpoints per service": 10, "workloads per node": 5},
        notes=(
            "Each case in a fresh interpreter: a MeshState holding bench.translate's synthetic mesh, a "
            "SnapshotPublisher and a SnapshotCache after one push, no xDS streams. RSS is read after a "
            "gc.collect and malloc_trim; the peak (VmHWM) includes the push's transient garbage.",
            "Distinct resources: every Resource held by some node snapshot, counted once (the pool shares "
            "equal ones), with its Any bytes (the wire fragments around them are a few bytes). The rest of "
            "the RSS is the model, the translator's memo (protobuf messages) and Python objects.",
            *notes,
        ),
    )


BENCHMARK = Benchmark(name=NAME, title=TITLE, run=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpmemory", description=__doc__)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--memory-cap", type=int, default=0, help="address-space limit in bytes (0: none)")
    args = parser.parse_args(argv)
    if args.memory_cap:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_cap, args.memory_cap))
    measurement = asyncio.run(measure(MeshShape(services=args.services, nodes=args.nodes)))
    print(measurement.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
