"""The certificate benchmark's client process (`python -m bench.caclient`), the node agents' side.

`python -m bench.caclient --target HOST:PORT --token-file PATH --node NODE --spiffe-id ID --count N
--concurrency C` generates N P-256 keys and CSRs first (untimed), then sends them through the agent's own
GrpcCertificateClient with C requests in flight, and prints one JSON line: the wall time of the signing
phase and every request's latency in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controlplane.ca.identity import SpiffeId
from nodeagent.identity.client import GrpcCertificateClient, TokenFile


def make_csrs(count: int) -> list[str]:
    """`count` PEM CSRs over fresh P-256 keys (the subject is ignored by the CA)."""
    out = []
    for index in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{index}")]))
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return out


async def sign_all(
    target: str,
    token_file: Path,
    *,
    node: str,
    spiffe_id: SpiffeId,
    csrs: Sequence[str],
    concurrency: int,
) -> tuple[float, list[float]]:
    """(wall seconds, per-request seconds) for signing every CSR with `concurrency` requests in flight."""
    latencies: list[float] = []
    queue = list(reversed(csrs))
    async with GrpcCertificateClient(target=target, token=TokenFile(token_file)) as client:
        # One request first, so the channel is connected before the clock starts.
        await client.sign(queue.pop(), spiffe_id, node)

        async def worker() -> None:
            while queue:
                csr = queue.pop()
                t0 = time.perf_counter()
                await client.sign(csr, spiffe_id, node)
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
        return time.perf_counter() - started, latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.caclient")
    parser.add_argument("--target", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--spiffe-id", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    csrs = make_csrs(args.count + 1)
    wall, latencies = asyncio.run(
        sign_all(
            args.target,
            args.token_file,
            node=args.node,
            spiffe_id=SpiffeId.parse(args.spiffe_id),
            csrs=csrs,
            concurrency=args.concurrency,
        )
    )
    sys.stdout.write(json.dumps({"wall_s": wall, "latencies_s": latencies}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
