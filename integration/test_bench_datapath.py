"""The data-path benchmarks (bench.datapath, bench.hbone, bench.envoy_memory) run end to end on the real
harness at tiny sizes: every mode takes its path and every figure is produced. No timing assertions."""

from __future__ import annotations

import pytest

from bench import datapath, envoy_memory, hbone
from bench.bpfstats import bpf_stats_unavailable_reason
from bench.meshscene import Mode, datapath_unavailable_reason

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]


@pytest.fixture(autouse=True)
def _needs_the_data_path() -> None:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"data-path benchmarks need the harness: {reason}")


async def test_datapath_measures_every_mode() -> None:
    case = datapath.DatapathCase(
        samples=8,
        batch=4,
        connections=2,
        rps_seconds=0.3,
        rps_rounds=1,
        bpf_samples=4,
        control_samples=4,
        rounds_per_process=1,
    )
    measured = await datapath.measure(case)

    for mode in Mode:
        assert len(measured.latencies.samples_us[mode]) == 8, (mode, measured.latencies.first_error[mode])
        assert measured.latencies.errors[mode] == 0
    assert all(measured.throughput.rps[mode][0] > 0 for mode in datapath.RPS_MODES)
    # The iptables pod's connections reached Envoy without an eBPF record: the getsockopt program fell
    # through to conntrack's answer (a miss), and the eBPF pod's were answered from the map (hits).
    counters = measured.agent_counters
    assert any("miss" in k and v > 0 for k, v in counters.items()), counters
    assert any("hit" in k and v > 0 for k, v in counters.items()), counters
    names = {f.name for f in datapath.figures(measured)}
    assert "mesh added latency, p50 (eBPF + HBONE - direct)" in names
    # A meshed pod's own IP (no Service) goes over HBONE too, reported next to the Service VIP.
    assert "HBONE to a meshed pod's IP - to its Service VIP, p50" in names
    assert measured.control is not None
    assert [len(measured.control.samples_us[mode]) for mode in measured.control.samples_us] == [4, 4]
    # Each mode paid only for its own redirect: node1 never tracked an eBPF connection (the DNAT rule,
    # and with it conntrack, existed only in iptables rounds), and did track the iptables pod's.
    assert measured.tracked_ebpf == 0 and measured.tracked_iptables > 0
    assert measured.iptables_toggles >= 2
    if bpf_stats_unavailable_reason() is None:
        # The redirect's programs ran: the eBPF pod's connections went through connect4 and sockops.
        programs = measured.bpf[Mode.MESH].programs
        assert programs["node1 connect4"].runs >= 4 and programs["node1 sockops"].runs >= 4, programs


async def test_hbone_handshakes_and_added_latency() -> None:
    measured = await hbone.measure(hbone.HboneCase(samples=6, batch=3, handshake_seconds=0.3, concurrency=2))

    assert all(run.count > 0 and run.errors == 0 for run in measured.handshakes), measured.handshakes
    assert measured.envoy_handshakes >= sum(run.count for run in measured.handshakes)
    assert {len(v) for v in measured.latencies.samples_us.values()} == {6}
    assert any(f.name == "HBONE added latency, p50" for f in hbone.figures(measured))


async def test_envoy_memory_compares_a_busy_node_with_a_one_pod_node() -> None:
    measured = await envoy_memory.measure(envoy_memory.MemoryCase(pods=4, service_accounts=2, services=2))

    assert measured.node.rss_mib > 0 and measured.sidecar.rss_mib > 0
    # node1 holds more local identities than node2, so more config.
    assert measured.node.resources > measured.sidecar.resources
    assert [f.name for f in envoy_memory.figures(measured)][-1] == "node Envoy / sidecar Envoys"
