"""bench.datapath's figures from a made-up measurement: every mode reported, the pod-IP mode next to the
Service VIP's, the RPS ratio from the medians."""

from __future__ import annotations

from bench.datapath import RPS_MODES, DatapathCase, DatapathMeasurement, Throughput, figures
from bench.meshscene import Latencies, Mode
from bench.result import Figure

ROUNDS = 4
BATCH = 5


def _rounds(base: float) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(base + i for i in range(BATCH)) for _ in range(ROUNDS))


def _measurement(p50_us: dict[Mode, float], rps: dict[Mode, float]) -> DatapathMeasurement:
    return DatapathMeasurement(
        case=DatapathCase(samples=ROUNDS * BATCH, batch=BATCH),
        latencies=Latencies(
            rounds_us={mode: _rounds(p50_us[mode] - 2) for mode in Mode},
            errors=dict.fromkeys(Mode, 0),
            first_error=dict.fromkeys(Mode, ""),
        ),
        throughput=Throughput(
            rps={mode: (rps[mode],) for mode in RPS_MODES},
            errors=dict.fromkeys(RPS_MODES, 0),
            cpu_ms_per_request={mode: {"client": 0.02} for mode in RPS_MODES},
        ),
        agent_counters={},
        bpf={},
    )


def _named(out: list[Figure], name: str) -> Figure:
    (found,) = [f for f in out if f.name == name]
    return found


def test_the_pod_ip_mode_is_reported_next_to_the_service_vip() -> None:
    p50 = dict.fromkeys(Mode, 500.0) | {Mode.MESH: 900.0, Mode.MESH_POD_IP: 1150.0}
    out = figures(_measurement(p50, {Mode.DIRECT: 10_000.0, Mode.MESH: 4_000.0}))

    per_mode = {f.params["mode"] for f in out if f.name == "new connection + GET"}
    assert per_mode == {mode.value for mode in Mode}
    pod_ip = _named(out, "HBONE to a meshed pod's IP - to its Service VIP, p50")
    assert pod_ip.samples == (250.0,)
    assert "1150 vs 900 us" in pod_ip.note


def test_rps_ratio_is_mesh_over_direct() -> None:
    out = figures(_measurement(dict.fromkeys(Mode, 500.0), {Mode.DIRECT: 10_000.0, Mode.MESH: 5_500.0}))

    ratio = _named(out, "requests per second, mesh / direct (medians)")
    assert ratio.samples == (0.55,)
    assert ratio.met is True
