"""Benchmark: HBONE (issue 4): handshakes per second through a node Envoy, and HBONE's added latency.

On the data-path scene (bench.meshscene), in one run:
- handshakes: a client in an unmeshed pod on node1 (bench.hboneclient) opens complete new HBONE
  connections to node2's Envoy on 15008, as the source node's Envoy would for a new (source identity,
  destination node) pair: TCP, full mutual TLS with a workload certificate the mesh's CA issued (no session
  resumption), HTTP/2 CONNECT to the server pod, `200`; then closes. Pooling never hides a handshake here.
  With 1 connection at a time (latency) and with K at a time (rate);
- added latency: new connection + one GET from the meshed client through node1's Envoy, to the meshed
  server's Service (HBONE to node2) vs to an unmeshed twin's pod IP (plaintext passthrough), interleaved.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.benchmark import Benchmark, RunOptions
from bench.clientproc import BenchError
from bench.meshscene import (
    BENCH_NS,
    SERVER_PORT,
    Latencies,
    Mode,
    Scene,
    datapath_scene,
    datapath_unavailable_reason,
    interleaved_latency,
)
from bench.result import BenchResult, Figure, Params, skipped
from bench.stats import median_difference_interval, percentile
from controlplane.ca.authority import IssuedCertificate, load_or_generate_authority
from controlplane.ca.clock import SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.ca.store import FileCAStore
from controlplane.translate.hbone import server_name

NAME = "hbone"
TITLE = "HBONE: handshakes per second through a node Envoy, and added latency vs plaintext passthrough"
TRUST_DOMAIN = "cluster.local"
HBONE_PORT = 15008
LATENCY_MODES = (Mode.EBPF_PASSTHROUGH, Mode.MESH)


@dataclass(frozen=True, slots=True, kw_only=True)
class HboneCase:
    samples: int
    handshake_seconds: float
    concurrency: int = 4
    batch: int = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshakes:
    connections: int
    count: int
    seconds: float
    errors: int
    error: str
    latencies_us: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.count / self.seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class HboneMeasurement:
    case: HboneCase
    handshakes: tuple[Handshakes, ...]
    latencies: Latencies
    # node2's Envoy: TLS handshakes its listeners counted over the run (a cross-check of the client's count).
    envoy_handshakes: int


async def _client_credentials(scene: Scene, directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for the meshed client's identity from the mesh's own CA: (cert chain, key, bundle)."""
    authority = await load_or_generate_authority(
        FileCAStore(scene.mesh.workdir / "ca.pem"), TRUST_DOMAIN, SystemClock()
    )
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")]))
        .sign(key, hashes.SHA256())
    )
    issued = authority.sign(
        csr.public_bytes(serialization.Encoding.PEM), SpiffeId.for_workload(TRUST_DOMAIN, BENCH_NS, "client")
    )
    return _write_credentials(directory, issued, key)


def _write_credentials(
    directory: Path, issued: IssuedCertificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path, Path]:
    directory.mkdir(mode=0o700, exist_ok=True)
    cert, key_path, bundle = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.write_text(issued.certificate_pem + "".join(issued.chain_pem))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    bundle.write_text("".join(issued.trust_bundle_pem))
    return cert, key_path, bundle


async def measure_handshakes(
    scene: Scene, credentials: tuple[Path, Path, Path], connections: int, seconds: float
) -> Handshakes:
    cert, key, bundle = credentials
    node2 = scene.mesh.nodes[1]
    argv = [
        sys.executable,
        *("-m", "bench.hboneclient", "--host", node2.ip, "--port", str(HBONE_PORT)),
        *("--sni", server_name(SpiffeId.for_workload(TRUST_DOMAIN, BENCH_NS, "server"))),
        *("--authority", f"{scene.server.ip}:{SERVER_PORT}"),
        *("--cert", str(cert), "--key", str(key), "--ca", str(bundle)),
        *("--connections", str(connections), "--seconds", str(seconds)),
    ]
    result = await asyncio.to_thread(
        scene.topology.run, scene.plain_client.fabric, argv, timeout=seconds + 60
    )
    if result.returncode != 0:
        raise BenchError(f"the HBONE client failed: {result.stderr.strip()[-2000:]}")
    data = json.loads(result.stdout)
    return Handshakes(
        connections=connections,
        count=int(data["handshakes"]),
        seconds=float(data["seconds"]),
        errors=int(data["errors"]),
        error=str(data["error"]),
        latencies_us=tuple(float(v) for v in data["latencies_us"]),
    )


async def _envoy_handshakes(scene: Scene) -> int:
    envoy = scene.mesh.nodes[1].envoy
    if envoy is None:
        return 0
    stats = await asyncio.to_thread(envoy.stats)
    return sum(v for k, v in stats.items() if k.startswith("listener.") and k.endswith(".ssl.handshake"))


async def measure(case: HboneCase) -> HboneMeasurement:
    async with datapath_scene() as scene:
        credentials = await _client_credentials(scene, scene.mesh.workdir / "hbone-client")
        before = await _envoy_handshakes(scene)
        runs = []
        for connections in (1, case.concurrency):
            runs.append(await measure_handshakes(scene, credentials, connections, case.handshake_seconds))
        envoy_handshakes = await _envoy_handshakes(scene) - before
        latencies = await interleaved_latency(scene, LATENCY_MODES, case.samples, case.batch)
    if not any(r.count for r in runs):
        raise BenchError(f"no HBONE handshake succeeded: {runs[0].error}")
    return HboneMeasurement(
        case=case, handshakes=tuple(runs), latencies=latencies, envoy_handshakes=envoy_handshakes
    )


def figures(m: HboneMeasurement) -> list[Figure]:
    out: list[Figure] = []
    for run in m.handshakes:
        params: Params = {"connections at a time": run.connections}
        failed = f"; {run.errors} failed: {run.error}" if run.errors else ""
        out.append(
            Figure(
                name="new HBONE connections per second",
                unit="1/s",
                samples=(run.rate,),
                params=params,
                note=f"{run.count} in {run.seconds:.1f} s{failed}",
            )
        )
        out.append(
            Figure(
                name="new HBONE connection (TCP + mTLS + CONNECT 200)",
                unit="us",
                samples=run.latencies_us,
                params=params,
            )
        )
    samples = m.latencies.samples_us
    for mode, label in ((Mode.EBPF_PASSTHROUGH, "plaintext passthrough"), (Mode.MESH, "HBONE")):
        errors = m.latencies.errors[mode]
        out.append(
            Figure(
                name="new connection + GET via node1's Envoy",
                unit="us",
                samples=samples[mode],
                params={"upstream": label},
                note=f"{errors} failed: {m.latencies.first_error[mode]}" if errors else "",
            )
        )
    low, high = median_difference_interval(samples[Mode.MESH], samples[Mode.EBPF_PASSTHROUGH])
    for q, label in ((50, "p50"), (99, "p99")):
        added = percentile(samples[Mode.MESH], q) - percentile(samples[Mode.EBPF_PASSTHROUGH], q)
        note = (
            f"95% CI {low:+.0f}..{high:+.0f} us"
            if q == 50
            else "p99 of a few thousand samples is noise-bound"
        )
        out.append(Figure(name=f"HBONE added latency, {label}", unit="us", samples=(added,), note=note))
    return out


def cases(options: RunOptions) -> HboneCase:
    if options.quick:
        return HboneCase(samples=300, handshake_seconds=2.0)
    return HboneCase(samples=2000, handshake_seconds=5.0)


def run(options: RunOptions) -> BenchResult:
    reason = datapath_unavailable_reason()
    if reason is not None:
        return skipped(name=NAME, title=TITLE, reason=reason)
    case = cases(options)
    measured = asyncio.run(measure(case))
    rates = ", ".join(f"{r.rate:.0f}/s at {r.connections}" for r in measured.handshakes)
    added = statistics.median(measured.latencies.samples_us[Mode.MESH]) - statistics.median(
        measured.latencies.samples_us[Mode.EBPF_PASSTHROUGH]
    )
    print(f"{NAME}: handshakes {rates}; HBONE adds {added:.0f} us at p50", file=sys.stderr, flush=True)
    client_total = sum(r.count + r.errors for r in measured.handshakes)
    return BenchResult(
        name=NAME,
        title=TITLE,
        figures=tuple(figures(measured)),
        params={
            "seconds per handshake run": case.handshake_seconds,
            "latency samples per upstream": case.samples,
        },
        notes=(
            "Handshakes: bench.hboneclient in an unmeshed pod on node1 (Python's ssl, i.e. OpenSSL) opens "
            "complete HBONE connections to node2's Envoy (concurrency 1) on 15008: TCP, full mTLS (ECDSA "
            "P-256 workload certificates from the mesh's CA, no session resumption, ALPN h2, SNI of the "
            "server identity), HTTP/2 CONNECT to the server pod and its 200, then close. The client's "
            "threads and node2's Envoy share the machine's 2 vCPUs.",
            f"node2's Envoy counted {measured.envoy_handshakes} TLS handshakes on its listeners over the "
            f"handshake runs; the client attempted {client_total}.",
            "In the mesh, HBONE connections are pooled per (source identity, destination node): a new "
            "pod-to-pod connection normally rides an existing tunnel as a new CONNECT stream, so the "
            "added latency below is per request over a pooled tunnel (two extra HTTP/2 hops and the TLS "
            "record work), and a handshake is paid once per pool entry (and on max_connection_age).",
            "Added latency: the meshed client calls the Service VIP (HBONE to node2) or an unmeshed twin "
            "server's pod IP (Envoy passes it through in plaintext); same client, same redirect (eBPF), "
            "same node1 Envoy, interleaved in rounds.",
        ),
    )


BENCHMARK = Benchmark(name=NAME, title="HBONE: handshakes per second and added latency", run=run)
