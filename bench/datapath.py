"""Benchmark: the data path, pod to pod across nodes (issues 5 and 7), on the integration MeshHarness.

Real kernel, real eBPF redirect, real node Envoys with the translator's config, HBONE mTLS between nodes
(bench.meshscene draws the pods). In one run, interleaved in rounds so noise hits every mode alike:

- new connection + one HTTP GET, timed by the client inside its pod, for each mode: direct (pod IP, neither
  pod meshed); eBPF + HBONE (the mesh: Service VIP, eBPF redirect, HBONE to the other node); iptables +
  HBONE (same Envoy and config, a DNAT in node1's PREROUTING instead of eBPF); eBPF + HBONE to the meshed
  server's own pod IP (no Service: the outbound_pods hops, next to the Service VIP's); both redirects to an
  unmeshed pod IP, which Envoy passes through in plaintext (the redirect's cost without HBONE); and direct
  again while the DNAT rule is installed (what conntrack + NAT hooks cost a forwarded connection). Each mode
  pays only for its own mechanism (bench.meshscene: the rule exists only in iptables rounds, the iptables
  client is outside the cgroup nodemesh's programs attach to);
- eBPF vs iptables at p50 and p99 with 95% intervals from a paired bootstrap over rounds (bench.rounds);
- requests per second over K keep-alive connections for T seconds, direct vs the mesh;
- the kernel's own run time of each nodemesh BPF program per new connection, per mode (bench.bpfstats), so
  the redirect's cost is measured directly rather than read off latency differences it is far below.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from bench.benchmark import Benchmark, RunOptions
from bench.bpfstats import ProgramRuns, bpf_stats, bpf_stats_unavailable_reason, difference, snapshot
from bench.meshscene import (
    Latencies,
    Mode,
    PodClient,
    Route,
    Scene,
    datapath_scene,
    datapath_unavailable_reason,
    interleaved_latency,
    process_cpu_s,
    round_order,
)
from bench.result import BenchResult, Figure, Params, at_least, at_most, skipped
from bench.rounds import Interval, paired_interval, quantile_difference, quantile_ratio
from bench.stats import percentile

NAME = "datapath"
TITLE = "Data path: pod to pod across nodes, direct vs the mesh (eBPF + HBONE) vs an iptables redirect"
TARGET_SOURCE = "issues 5, 7"
ADDED_P50_TARGET_US = 1000.0
RPS_RATIO_TARGET = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class DatapathCase:
    samples: int
    batch: int = 50
    connections: int = 4
    rps_seconds: float = 5.0
    rps_rounds: int = 3
    # New connections per mode with the kernel's BPF run statistics on (0: not measured).
    bpf_samples: int = 100
    # Samples per client process of the A/A control (0: not measured).
    control_samples: int = 0
    # Rounds after which every client process is replaced by a fresh one (0: never).
    rounds_per_process: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DatapathMeasurement:
    case: DatapathCase
    latencies: Latencies
    throughput: Throughput
    # The node1 agent's original-destination counters after the run (eBPF map hits and fall-throughs).
    agent_counters: Mapping[str, float]
    # Per mode; empty when bpftool or the stats sysctl is missing.
    bpf: Mapping[Mode, BpfCost]
    # eBPF + HBONE from the benchmark's client process and from a second one in the same pod (A/A).
    control: Latencies | None = None
    # node1's conntrack entries after the run, of the eBPF pod (must be 0: no conntrack in eBPF rounds)
    # and of the iptables pod; and how often the rounds installed or removed the DNAT rule.
    tracked_ebpf: int = 0
    tracked_iptables: int = 0
    iptables_toggles: int = 0
    # TIME_WAIT sockets in the eBPF and the iptables client pods right after the timed runs.
    time_wait_ebpf: int = 0
    time_wait_iptables: int = 0


RPS_MODES = (Mode.DIRECT, Mode.MESH)


@dataclass(frozen=True, slots=True, kw_only=True)
class Throughput:
    rps: Mapping[Mode, tuple[float, ...]]
    errors: Mapping[Mode, int]
    # Per mode: CPU milliseconds per request of each process on the path (client, Envoys, server).
    cpu_ms_per_request: Mapping[Mode, Mapping[str, float]]


async def measure_rps(scene: Scene, case: DatapathCase) -> Throughput:
    rates: dict[Mode, list[float]] = {mode: [] for mode in RPS_MODES}
    errors = dict.fromkeys(RPS_MODES, 0)
    requests = dict.fromkeys(RPS_MODES, 0)
    cpu: dict[Mode, dict[str, float]] = {mode: {} for mode in RPS_MODES}
    for index in range(case.rps_rounds):
        order = RPS_MODES if index % 2 == 0 else tuple(reversed(RPS_MODES))
        for mode in order:
            await scene.prepare(mode)
            route = scene.routes[mode]
            pids = scene.pids(mode)
            before = {role: process_cpu_s(pid) for role, pid in pids.items()}
            answer = await route.client.command(route.rps(case.connections, case.rps_seconds))
            for role, pid in pids.items():
                cpu[mode][role] = cpu[mode].get(role, 0.0) + process_cpu_s(pid) - before[role]
            done = int(str(answer["requests"]))
            requests[mode] += done
            rates[mode].append(done / float(str(answer["seconds"])))
            errors[mode] += int(str(answer["errors"]))
    return Throughput(
        rps={mode: tuple(values) for mode, values in rates.items()},
        errors=errors,
        cpu_ms_per_request={
            mode: {role: 1000 * s / max(requests[mode], 1) for role, s in cpu[mode].items()}
            for mode in RPS_MODES
        },
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BpfCost:
    """What the nodemesh programs of both nodes ran during `connections` new connections of one mode."""

    connections: int
    # Keyed "<node> <hook>".
    programs: Mapping[str, ProgramRuns]

    @property
    def ns_per_connection(self) -> float:
        return sum(p.run_time_ns for p in self.programs.values()) / max(self.connections, 1)

    def describe(self) -> str:
        n = max(self.connections, 1)
        return "; ".join(
            f"{key} {p.runs / n:.1f} runs x {p.run_time_ns / max(p.runs, 1):.0f} ns"
            for key, p in sorted(self.programs.items())
        )


def _by_hook(runs: Mapping[str, ProgramRuns]) -> dict[str, ProgramRuns]:
    """'<pin dir>/progs/<hook>-<digest>' keys to '<node> <hook>' (pin dirs end in the node's name)."""
    out: dict[str, ProgramRuns] = {}
    for pin, value in runs.items():
        hook = pin.rsplit("/", 1)[-1].rsplit("-", 1)[0]
        node = pin.split("/progs/", 1)[0].rsplit("-", 1)[-1]
        out[f"{node} {hook}"] = value
    return out


async def measure_bpf_cost(scene: Scene, case: DatapathCase) -> dict[Mode, BpfCost]:
    """Per mode, one batch of new connections between two snapshots of the programs' run statistics."""
    pin_dirs = [scene.topology.pin_dir(node.fabric) for node in scene.mesh.nodes]
    out: dict[Mode, BpfCost] = {}
    with bpf_stats():
        for mode in round_order(tuple(Mode), 0):
            await scene.prepare(mode)
            route = scene.routes[mode]
            before = await asyncio.to_thread(snapshot, pin_dirs)
            answer = await route.client.command(route.latency(case.bpf_samples))
            after = await asyncio.to_thread(snapshot, pin_dirs)
            connections = len(_samples(answer)) + int(str(answer["errors"]))
            out[mode] = BpfCost(connections=connections, programs=_by_hook(difference(before, after)))
    await scene.iptables.set(False)
    return out


def _samples(answer: Mapping[str, object]) -> list[object]:
    samples = answer["samples_us"]
    return samples if isinstance(samples, list) else []


async def measure_control(scene: Scene, case: DatapathCase) -> Latencies:
    """The same path (eBPF + HBONE, same pod) from two client processes, interleaved like the modes: how far
    apart two identical clients land says how large a difference between modes means anything."""
    mesh = scene.routes[Mode.MESH]
    twin = await asyncio.to_thread(PodClient, scene.topology, mesh.client.pod)
    # interleaved_latency walks routes by Mode: the EBPF_PASSTHROUGH slot (no iptables) carries the twin.
    routes = {Mode.MESH: mesh, Mode.EBPF_PASSTHROUGH: Route(client=twin, host=mesh.host, port=mesh.port)}
    try:
        return await interleaved_latency(
            scene,
            tuple(routes),
            case.control_samples,
            case.batch,
            routes,
            rounds_per_process=case.rounds_per_process,
        )
    finally:
        await asyncio.to_thread(twin.stop)


async def _agent_counters(scene: Scene) -> dict[str, float]:
    agent = scene.mesh.nodes[0].agent
    if agent is None:
        return {}
    metrics = await asyncio.to_thread(agent.metrics)
    return {name: value for name, value in metrics.items() if "origdst" in name or "original" in name}


async def measure(case: DatapathCase) -> DatapathMeasurement:
    async with datapath_scene() as scene:
        latencies = await interleaved_latency(
            scene, tuple(Mode), case.samples, case.batch, rounds_per_process=case.rounds_per_process
        )
        time_wait_ebpf = await asyncio.to_thread(scene.time_wait, scene.ebpf_client)
        time_wait_iptables = await asyncio.to_thread(scene.time_wait, scene.iptables_client)
        throughput = await measure_rps(scene, case)
        measure_bpf = case.bpf_samples > 0 and bpf_stats_unavailable_reason() is None
        bpf = await measure_bpf_cost(scene, case) if measure_bpf else {}
        control = await measure_control(scene, case) if case.control_samples > 0 else None
        counters = await _agent_counters(scene)
        tracked_ebpf = await asyncio.to_thread(scene.tracked, scene.ebpf_client)
        tracked_iptables = await asyncio.to_thread(scene.tracked, scene.iptables_client)
    return DatapathMeasurement(
        case=case,
        latencies=latencies,
        throughput=throughput,
        agent_counters=counters,
        bpf=bpf,
        control=control,
        tracked_ebpf=tracked_ebpf,
        tracked_iptables=tracked_iptables,
        iptables_toggles=scene.iptables.toggles,
        time_wait_ebpf=time_wait_ebpf,
        time_wait_iptables=time_wait_iptables,
    )


def verdict(interval: Interval, tie: float) -> str:
    """What a 95% interval of eBPF-vs-iptables (or on-vs-off) says relative to `tie`."""
    if interval.high < tie:
        return "lower, beyond noise"
    if interval.low > tie:
        return "higher, beyond noise"
    return "no difference distinguishable from noise"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def figures(m: DatapathMeasurement) -> list[Figure]:
    samples = m.latencies.samples_us
    out: list[Figure] = []
    for mode in Mode:
        errors = m.latencies.errors[mode]
        out.append(
            Figure(
                name="new connection + GET",
                unit="us",
                samples=samples[mode],
                params={"mode": mode.value},
                note=f"{errors} failed: {m.latencies.first_error[mode]}" if errors else "",
            )
        )

    def p(mode: Mode, q: float) -> float:
        return percentile(samples[mode], q)

    blocks = m.latencies.blocks_us
    added = paired_interval(blocks[Mode.MESH], blocks[Mode.DIRECT], quantile_difference(50))
    out.append(
        Figure(
            name="mesh added latency, p50 (eBPF + HBONE - direct)",
            unit="us",
            samples=(added.value,),
            target=at_most(ADDED_P50_TARGET_US, source=TARGET_SOURCE),
            note=f"95% CI {added.low:.0f}..{added.high:.0f} us",
        )
    )
    for destination, ebpf, iptables in (
        ("HBONE", Mode.MESH, Mode.IPTABLES_HBONE),
        ("passthrough", Mode.EBPF_PASSTHROUGH, Mode.IPTABLES_PASSTHROUGH),
    ):
        params: Params = {"destination": destination}
        for q, label in ((50, "p50"), (99, "p99")):
            ratio = paired_interval(blocks[ebpf], blocks[iptables], quantile_ratio(q))
            gap = paired_interval(blocks[ebpf], blocks[iptables], quantile_difference(q))
            out.append(
                Figure(
                    name=f"eBPF / iptables redirect, {label}",
                    unit="x",
                    samples=(ratio.value,),
                    params=params,
                    target=at_most(1.0, source=TARGET_SOURCE),
                    note=f"{p(ebpf, q):.0f} vs {p(iptables, q):.0f} us; ratio 95% CI {ratio.low:.3f}.."
                    f"{ratio.high:.3f}, gap {gap.value:+.0f} us (CI {gap.low:+.0f}..{gap.high:+.0f}): "
                    f"{verdict(ratio, 1.0)}",
                )
            )
    pod_ip = paired_interval(blocks[Mode.MESH_POD_IP], blocks[Mode.MESH], quantile_difference(50))
    out.append(
        Figure(
            name="HBONE to a meshed pod's IP - to its Service VIP, p50",
            unit="us",
            samples=(pod_ip.value,),
            note=f"{p(Mode.MESH_POD_IP, 50):.0f} vs {p(Mode.MESH, 50):.0f} us; 95% CI {pod_ip.low:+.0f}.."
            f"{pod_ip.high:+.0f} us: {verdict(pod_ip, 0.0)} (per new connection, the pod IP's TCP path "
            "opens four internal connections on node1, a CONNECT stream and node2's inbound_http "
            "connection; the Service port's HTTP pool reuses its tunnels)",
        )
    )
    conntrack = paired_interval(blocks[Mode.DIRECT_CONNTRACK], blocks[Mode.DIRECT], quantile_difference(50))
    out.append(
        Figure(
            name="conntrack + NAT hooks on node1, p50 (direct with the DNAT rule installed - without)",
            unit="us",
            samples=(conntrack.value,),
            note=f"95% CI {conntrack.low:+.1f}..{conntrack.high:+.1f} us: {verdict(conntrack, 0.0)}",
        )
    )
    if m.control is not None:
        first, twin = m.control.blocks_us[Mode.MESH], m.control.blocks_us[Mode.EBPF_PASSTHROUGH]
        control = paired_interval(first, twin, quantile_difference(50))
        out.append(
            Figure(
                name="A/A control: eBPF + HBONE from two client processes in one pod, p50 difference",
                unit="us",
                samples=(control.value,),
                note=f"95% CI {control.low:+.0f}..{control.high:+.0f} us: {verdict(control, 0.0)} (two "
                "identical clients: a difference here is the method's own bias)",
            )
        )
    rps = m.throughput.rps
    for mode in RPS_MODES:
        errors = m.throughput.errors[mode]
        cpu = ", ".join(
            f"{role} {ms * 1000:.0f}" for role, ms in m.throughput.cpu_ms_per_request[mode].items()
        )
        out.append(
            Figure(
                name="requests per second, keep-alive",
                unit="1/s",
                samples=rps[mode],
                params={"mode": mode.value, "connections": m.case.connections},
                note=f"CPU us per request: {cpu}" + (f"; {errors} failed" if errors else ""),
            )
        )
    for mode, cost in m.bpf.items():
        out.append(
            Figure(
                name="BPF run time per new connection (both nodes, all nodemesh programs)",
                unit="ns",
                samples=(cost.ns_per_connection,),
                params={"mode": mode.value},
                note=cost.describe(),
            )
        )
    for destination, ebpf, iptables in (
        ("HBONE", Mode.MESH, Mode.IPTABLES_HBONE),
        ("passthrough", Mode.EBPF_PASSTHROUGH, Mode.IPTABLES_PASSTHROUGH),
    ):
        if ebpf in m.bpf and iptables in m.bpf:
            extra = m.bpf[ebpf].ns_per_connection - m.bpf[iptables].ns_per_connection
            out.append(
                Figure(
                    name="BPF run time per new connection, eBPF - iptables mode (the redirect's own)",
                    unit="ns",
                    samples=(extra,),
                    params={"destination": destination},
                    note="kernel-timed run time (bpf_stats), vs the iptables path's conntrack + NAT, which "
                    "no counter here times (see the conntrack figure above)",
                )
            )
    out.append(
        Figure(
            name="requests per second, mesh / direct (medians)",
            unit="x",
            samples=(_ratio(statistics.median(rps[Mode.MESH]), statistics.median(rps[Mode.DIRECT])),),
            target=at_least(RPS_RATIO_TARGET, source=TARGET_SOURCE),
        )
    )
    return out


def cases(options: RunOptions) -> DatapathCase:
    if options.quick:
        return DatapathCase(
            samples=400,
            rps_seconds=2.0,
            rps_rounds=1,
            bpf_samples=100,
            control_samples=400,
            rounds_per_process=2,
        )
    return DatapathCase(
        samples=6000,
        rps_seconds=5.0,
        rps_rounds=3,
        bpf_samples=500,
        control_samples=3000,
        rounds_per_process=5,
    )


def _progress(m: DatapathMeasurement) -> str:
    medians = ", ".join(
        f"{mode.value} {statistics.median(m.latencies.samples_us[mode]):.0f} us" for mode in Mode
    )
    rps = ", ".join(f"{mode.value} {statistics.median(m.throughput.rps[mode]):.0f}/s" for mode in RPS_MODES)
    return f"{NAME}: p50 {medians}; {rps}"


def run(options: RunOptions) -> BenchResult:
    reason = datapath_unavailable_reason()
    if reason is not None:
        return skipped(name=NAME, title=TITLE, reason=reason)
    case = cases(options)
    measured = asyncio.run(measure(case))
    print(_progress(measured), file=sys.stderr, flush=True)
    counters = ", ".join(f"{k} = {v:.0f}" for k, v in sorted(measured.agent_counters.items()))
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures(measured)),
        params={
            "samples per mode": case.samples,
            "batch per mode and round": case.batch,
            "keep-alive connections": case.connections,
            "seconds per rps round": case.rps_seconds,
            "rps rounds": case.rps_rounds,
            "connections per mode with BPF run statistics on": case.bpf_samples,
            "A/A control samples per client": case.control_samples,
            "rounds per client process": case.rounds_per_process,
        },
        notes=(
            "Two nodes of the integration fabric (network namespaces on one machine, veths and a bridge), "
            "each with its own Envoy (concurrency 1) and node agent, the control plane in the benchmark "
            "process; everything shares the machine's cores, so compare modes within this run.",
            "Latency: each sample is a new TCP connection, one HTTP/1.1 GET and the whole response, timed "
            "inside the client pod (bench.podclient); every mode's server is a Python echo server on "
            "node2 (the meshed one for HBONE modes, an unmeshed twin otherwise). Modes run in rounds "
            "of one batch each, the order rotated every round (the iptables modes kept together); one "
            "warm-up batch per mode is discarded.",
            "eBPF + HBONE is the mesh: the client calls the Service VIP, connect4 redirects to node1's "
            "Envoy, which opens (or reuses) an HBONE tunnel (mTLS, HTTP/2 CONNECT) to node2's Envoy. The "
            "iptables modes use a second client pod with the same namespace and service account (so the "
            "same Envoy config) that is not in the eBPF map: a DNAT in node1's PREROUTING sends its "
            "connections to Envoy's 15001 and Envoy reads SO_ORIGINAL_DST from conntrack (the getsockopt "
            "program on Envoy's cgroup misses its map and leaves the kernel's answer).",
            "eBPF + HBONE, pod IP: the same client calls the meshed server's own pod IP (no Service), so "
            "node1's Envoy takes it from outbound_services on to outbound_pods (the pod's identity: SNI "
            "and SAN) and outbound_pod_nodes (its node) before hbone_originate, at TCP level: each new "
            "connection opens its own internal connections and CONNECT stream (and node2 its own "
            "inbound_http connection), where the Service port's HTTP pool hands a new connection a pooled "
            "tunnel; the figure next to the Service VIP's says what that costs a new connection.",
            "Each mode pays only for its own mechanism. The DNAT rule (and the nat table iptables-nft "
            "makes for it) exists only while an iptables mode runs, so node1 has no conntrack or NAT hooks "
            "in the other modes' rounds (conntrack hooks a netns only while a rule needs it); node1's "
            f"conntrack held {measured.tracked_ebpf} entries of the eBPF pod after the run (0: none of "
            f"its connections was tracked) and {measured.tracked_iptables} of the iptables pod; the rule "
            f"was installed or removed {measured.iptables_toggles} times. The iptables pod's client runs "
            "outside node1's "
            "pod cgroup, so connect4, sockops and getpeername4 never run on its sockets; Envoy's cgroup "
            "keeps getsockopt and sockops in both modes (one Envoy serves both).",
            "eBPF vs iptables: the ratio of each mode's p50 (p99) over all its samples; the 95% intervals "
            "come from a paired bootstrap over rounds (bench.rounds: whole rounds drawn with replacement, "
            "the same rounds for both modes, since samples within a batch are not independent). 'Beyond "
            "noise' means the interval excludes a tie; the target counts as met on the point estimate.",
            "Passthrough modes call the unmeshed server's pod IP: Envoy proxies them in plaintext (TCP), "
            "so they isolate the redirect itself.",
            "Reading eBPF vs iptables: the passthrough pair isolates the redirect, and there eBPF is faster "
            "at p50 and p99 beyond noise (it needs no conntrack entry or NAT on any packet; its own BPF work "
            "is the few microseconds per connection below). Through HBONE the same difference sits under "
            "the mTLS path's own spread, so that pair ties within noise: what separates the two redirects "
            "is a few microseconds, and HBONE's intervals are tens wide. Before the outbound listener took "
            "4 ports, the eBPF pod's single (pod, Envoy:15001) port space filled with TIME_WAIT sockets and "
            "its p99 was 2-3 times iptables'.",
            "Requests per second: K threads in the client pod, one keep-alive connection each, GET after "
            "GET; the Python client and server and both Envoys share 2 vCPUs, so the ratio is the mesh's "
            "cost relative to an unproxied path on the same machine, not a capacity figure. The CPU each "
            "process on the path used per request (from /proc over the rounds) says where the time goes.",
            "Gap and plan, keep-alive requests per second (target: the mesh >= 0.5 x direct): the profile is "
            "the CPU per request above. No request opens a connection or a tunnel (Envoy stats: every "
            "cluster's upstream requests grow, its connections do not); perf on the (stripped) Envoy splits "
            "its time 59% user space, 37% kernel, about 5 syscalls per request per Envoy. By path, node1's "
            "Envoy costs about 41 us per request for plaintext passthrough, 48 us for HBONE to a pod IP (TCP "
            "tunnelled) and 89 us for HBONE to a Service VIP: the source-side HTTP connection manager is "
            "about 40 us of it. HCM knobs (request ids, Envoy headers, the fault filter, idle timeouts) "
            "moved it by less than the A/A noise. Plan: carry plain HTTP/1 Service ports that no HTTPRoute "
            "or TrafficPolicy touches as TCP on the source node (L7 stays at the destination: RBAC, XFCC, "
            "request metrics), as Istio ambient does without a waypoint; measured side by side: node1's "
            "Envoy 98 -> 44 us per request, the ratio 0.50-0.51 against 0.35-0.49. It gives up per-request "
            "balancing of keep-alive HTTP/1 connections at the source, so it is a product decision, not "
            "yet made.",
            "BPF run time: after the timed runs, one batch of new connections per mode with "
            "kernel.bpf_stats_enabled on (restored after; it adds two clock reads to every program run, "
            "included in the figures); bpftool's run_cnt and run_time_ns of the run's pinned programs, "
            "before and after, give each program's runs per connection and ns per run. Both nodes' "
            "programs count (node2's sockops and getpeername4 run on the server side in every mode, direct "
            "included; node1's on Envoy's sockets in every proxied mode).",
            "Client processes: where the scheduler places a process on the 2 shared vCPUs has moved one "
            "client's p50 by 10-50 us against an identical twin, more than any redirect costs, so every "
            "client process is replaced by a fresh one after each few rounds, and the intervals draw whole "
            "process generations (a few rounds each) rather than single samples or rounds.",
            "A/A control: after the timed runs, eBPF + HBONE from the benchmark's client and from a second, "
            "identical one in the same pod, interleaved and restarted the same way: how far apart two "
            "identical clients land is the method's own bias; a mode difference within it means nothing.",
            f"TIME_WAIT sockets right after the timed runs: {measured.time_wait_ebpf} in the eBPF pod "
            "(towards Envoy's outbound ports, which connect4 picks by destination: one ephemeral port "
            "space per port; with one port, this pod's p99 was 2-3 times the iptables pod's, its single "
            f"space 65% full), {measured.time_wait_iptables} in the iptables pod (its peers are the VIP "
            "and the server, two port spaces).",
            f"node1 agent counters after the run: {counters or 'none found'}.",
        ),
    )


BENCHMARK = Benchmark(name=NAME, title="Data path: direct vs mesh vs iptables", run=run)
