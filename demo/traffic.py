"""Sending the demo's traffic from inside its pods, and what came back."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from integration.mesh import EchoReply, MeshError, MeshHarness, MeshPod
from integration.topology import TopologyError

XFCC = "x-forwarded-client-cert"


class TrafficError(Exception):
    """A client in a pod could not run at all (not: a request failed, which is a result)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One request as the calling pod saw it."""

    reply: EchoReply
    ms: float

    @property
    def status(self) -> int:
        return self.reply.status

    @property
    def pod(self) -> str | None:
        return self.reply.pod

    @property
    def client_identity(self) -> str | None:
        """The caller's SPIFFE ID as the server saw it: the `URI=` of the XFCC header the mesh set."""
        return client_identity(self.reply.headers.get(XFCC, ""))


def client_identity(xfcc: str) -> str | None:
    # XFCC: `By=<server id>;URI=<client id>` (several elements would be comma-separated: take the last hop).
    element = xfcc.rsplit(",", 1)[-1]
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == "uri":
            return value.strip().strip('"') or None
    return None


async def send(
    mesh: MeshHarness,
    pod: MeshPod,
    url: str,
    count: int,
    *,
    headers: Mapping[str, str] | None = None,
    per_request: float = 5.0,
) -> list[Sample]:
    """`count` GETs from an unmodified client in `pod`, each on a new connection."""
    argv = [sys.executable, "-m", "demo.probe", url, "--count", str(count), "--timeout", str(per_request)]
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}:{value}"]
    try:
        result = await asyncio.to_thread(
            mesh.topology.run, pod.fabric, argv, timeout=10 + count * per_request
        )
    except (MeshError, TopologyError) as exc:
        raise TrafficError(str(exc)) from exc
    if result.returncode != 0:
        raise TrafficError(f"the client in {pod.ref} failed: {result.stderr.strip()[-500:]}")
    samples = []
    for line in result.stdout.splitlines():
        item = json.loads(line)
        reply = EchoReply.from_http(int(item["status"]), item.get("body", ""), item.get("error", ""))
        samples.append(Sample(reply=reply, ms=float(item["ms"])))
    if len(samples) != count:
        raise TrafficError(f"the client in {pod.ref} reported {len(samples)} of {count} requests")
    return samples


def statuses(samples: Sequence[Sample]) -> Counter[int]:
    return Counter(s.status for s in samples)


def p50_ms(samples: Sequence[Sample]) -> float:
    return statistics.median(s.ms for s in samples) if samples else 0.0
