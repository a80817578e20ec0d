"""Benchmark: certificate issuance, CSRs signed per second (issues 4 and 7: target >= 500/s).

- `sign`: CertificateAuthority.sign called back to back in this process on pre-generated CSRs (P-256 keys):
  parse and verify the CSR, build the leaf, ECDSA-sign it, PEM-encode it;
- `grpc`: the same through the real CertificateService end to end: a grpc.aio server on loopback in this
  process (bootstrap-token node authentication, placement check, signing, the issued-certificate record),
  and the node agent's own GrpcCertificateClient in a child process (`bench.caclient`) keeping C requests in
  flight. Rate = requests / wall time of the signing phase.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from bench.benchmark import Benchmark, RunOptions
from bench.caclient import make_csrs
from bench.clientproc import BenchError
from bench.result import BenchResult, Figure, Params, at_least
from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.authorization import BootstrapTokenAuthenticator, StaticPlacement
from controlplane.ca.clock import SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.ca.service import CertificateService

NAME = "ca"
TRUST_DOMAIN = "cluster.local"
NODE = "bench-node"
IDENTITY = SpiffeId.for_workload(TRUST_DOMAIN, "bench", "client")
RATE_TARGET = 500.0
TARGET_SOURCE = "issues 4, 7"
CLIENT_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CaCase:
    count: int
    concurrency: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class CaMeasurement:
    case: CaCase
    sign_s: tuple[float, ...]
    sign_wall_s: float
    grpc_s: tuple[float, ...]
    grpc_wall_s: float

    @property
    def sign_rate(self) -> float:
        return len(self.sign_s) / self.sign_wall_s

    @property
    def grpc_rate(self) -> float:
        return len(self.grpc_s) / self.grpc_wall_s


def _authority() -> CertificateAuthority:
    clock = SystemClock()
    return CertificateAuthority(generate_root(TRUST_DOMAIN, clock), clock=clock)


def measure_sign(authority: CertificateAuthority, csrs: Sequence[str]) -> tuple[tuple[float, ...], float]:
    """Per-call seconds and the wall time of signing every CSR in turn."""
    authority.sign(csrs[0], IDENTITY)  # warm up: first-call imports and caches
    samples = []
    started = time.perf_counter()
    for csr in csrs[1:]:
        t0 = time.perf_counter()
        authority.sign(csr, IDENTITY)
        samples.append(time.perf_counter() - t0)
    return tuple(samples), time.perf_counter() - started


async def measure_grpc(authority: CertificateAuthority, case: CaCase) -> tuple[tuple[float, ...], float]:
    """Per-request seconds and the wall time, as the client process measured them."""
    token = "bench-token"
    service = CertificateService(
        signer=authority,
        authenticator=BootstrapTokenAuthenticator({NODE: token}, clock=SystemClock()),
        placement=StaticPlacement({NODE: [(IDENTITY.namespace, IDENTITY.service_account)]}),
        trust_domain=TRUST_DOMAIN,
        registry=CollectorRegistry(),
    )
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="nm-ca-") as tmp:
            token_file = Path(tmp) / "token"
            token_file.write_text(token)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.caclient",
                *("--target", f"127.0.0.1:{port}", "--token-file", str(token_file)),
                *("--node", NODE, "--spiffe-id", str(IDENTITY)),
                *("--count", str(case.count), "--concurrency", str(case.concurrency)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise BenchError(f"the CA client did not finish within {CLIENT_TIMEOUT_S:.0f} s") from None
    finally:
        await server.stop(1)
    if proc.returncode != 0:
        raise BenchError(f"the CA client exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    data = json.loads(out)
    return tuple(float(s) for s in data["latencies_s"]), float(data["wall_s"])


def measure(case: CaCase) -> CaMeasurement:
    authority = _authority()
    sign_s, sign_wall = measure_sign(authority, make_csrs(case.count + 1))
    grpc_s, grpc_wall = asyncio.run(measure_grpc(authority, case))
    return CaMeasurement(
        case=case, sign_s=sign_s, sign_wall_s=sign_wall, grpc_s=grpc_s, grpc_wall_s=grpc_wall
    )


def figures(m: CaMeasurement) -> list[Figure]:
    target = at_least(RATE_TARGET, source=TARGET_SOURCE)
    grpc_params: Params = {"path": "gRPC", "in flight": m.case.concurrency}
    return [
        Figure(
            name="CSRs signed per second",
            unit="1/s",
            samples=(m.sign_rate,),
            params={"path": "CertificateAuthority.sign"},
            target=target,
        ),
        Figure(
            name="time per CSR",
            unit="ms",
            samples=tuple(s * 1000 for s in m.sign_s),
            params={"path": "CertificateAuthority.sign"},
        ),
        Figure(
            name="CSRs signed per second",
            unit="1/s",
            samples=(m.grpc_rate,),
            params=grpc_params,
            target=target,
        ),
        Figure(
            name="request latency",
            unit="ms",
            samples=tuple(s * 1000 for s in m.grpc_s),
            params=grpc_params,
        ),
    ]


def run(options: RunOptions) -> BenchResult:
    case = CaCase(count=300 if options.quick else 2000)
    measured = measure(case)
    print(
        f"{NAME}: sign {measured.sign_rate:.0f}/s, gRPC {measured.grpc_rate:.0f}/s",
        file=sys.stderr,
        flush=True,
    )
    return BenchResult(
        name=NAME,
        title="Certificate issuance: CSRs signed per second",
        figures=tuple(figures(measured)),
        params={"CSRs per path": case.count, "key": "ECDSA P-256", "leaf TTL": "24 h"},
        notes=(
            "CSRs (fresh P-256 keys) are generated before the clock starts; the CA's issuer is a P-256 root.",
            "sign: CertificateAuthority.sign back to back in the benchmark process (CSR parse and signature "
            "check, leaf build with the SPIFFE ID as the only SAN, ECDSA signature, PEM).",
            "gRPC: the CertificateService on a grpc.aio server on loopback in the benchmark process "
            "(bootstrap-token authentication, placement check, signing, issued-certificate record, "
            "metrics); the client is the node agent's GrpcCertificateClient in a child process with "
            f"{case.concurrency} requests in flight, sharing the machine's cores with the server.",
        ),
    )


BENCHMARK = Benchmark(name=NAME, title="CA: CSRs signed per second", run=run)
