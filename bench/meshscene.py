"""The mesh the data-path benchmarks measure: the integration MeshHarness (real kernel, eBPF redirect, node
Envoys, agents, control plane) with a fixed set of pods, and clients that run inside pods.

    node1                                             node2
      bench/client-ebpf      meshed (eBPF redirect)     bench/server   meshed, Service bench/server :80
      bench/client-iptables  same identity, NOT in the  plain/server   not meshed (pod IP :8080)
                             eBPF map: an iptables DNAT
                             in node1's PREROUTING sends
                             its connections to Envoy
      plain/client           not meshed (direct)

`client-ebpf` and `client-iptables` share namespace and service account, so node1's Envoy holds the same
config for both (it classifies a connection by its source IP); only the redirect differs. Each pod reaches
Envoy through exactly one mechanism, never both (DESIGN.md §5: PAWS). For the iptables pod, the agent's
getsockopt program misses its map and leaves the kernel's (conntrack's) SO_ORIGINAL_DST answer in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bench.clientproc import BenchError
from integration.mesh import EchoReply, MeshHarness, MeshPod, Port
from integration.topology import VIP_NETWORK, Process, Topology, unavailable_reason

BENCH_NS = "bench"
PLAIN_NS = "plain"
SERVER_PORT = 8080
SERVICE_PORT = 80
OUTBOUND_PORT = 15001
COMMAND_TIMEOUT_S = 300.0


def datapath_unavailable_reason() -> str | None:
    """Why the harness cannot run here (root, cgroups, bcc, bpffs, Envoy), or None."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc is not importable: {exc}"
    if not Path("/sys/fs/bpf").is_dir():
        return "no /sys/fs/bpf"
    if shutil.which("iptables") is None:
        return "iptables not installed (the redirect baseline needs it)"
    from integration.envoy import find_envoy

    if find_envoy() is None:
        return "no Envoy binary (make setup)"
    return None


class PodClient:
    """`python -m bench.podclient` kept running in a pod; `command` sends one request and waits for its
    answer (in a thread, so the control plane on this event loop keeps serving)."""

    def __init__(self, topology: Topology, pod: MeshPod) -> None:
        self.pod = pod
        self._process: Process = topology.spawn(
            pod.fabric,
            [sys.executable, "-m", "bench.podclient"],
            stdin=True,
            name=f"{pod.ref}:podclient",
        )
        ready = self._process.read_json(timeout=30)
        if ready.get("event") != "READY":
            raise BenchError(f"{pod.ref}: the pod client said {ready}")

    @property
    def pid(self) -> int:
        return self._process.pid

    def _command(self, command: Mapping[str, object]) -> dict[str, object]:
        self._process.send_line(json.dumps(command))
        return self._process.read_json(timeout=COMMAND_TIMEOUT_S)

    async def command(self, command: Mapping[str, object]) -> dict[str, object]:
        return await asyncio.to_thread(self._command, command)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of stat (utime, stime), counted after the ")" that ends the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Mode(StrEnum):
    """How a client in node1 reaches a server in node2."""

    DIRECT = "direct"
    MESH = "eBPF + HBONE"
    IPTABLES_HBONE = "iptables + HBONE"
    EBPF_PASSTHROUGH = "eBPF + passthrough"
    IPTABLES_PASSTHROUGH = "iptables + passthrough"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    client: PodClient
    host: str
    port: int

    def latency(self, count: int) -> dict[str, object]:
        return {"op": "latency", "host": self.host, "port": self.port, "path": "/", "count": count}

    def rps(self, connections: int, seconds: float) -> dict[str, object]:
        return {
            "op": "rps",
            "host": self.host,
            "port": self.port,
            "path": "/",
            "connections": connections,
            "seconds": seconds,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    mesh: MeshHarness
    routes: Mapping[Mode, Route]
    server: MeshPod
    plain_server: MeshPod
    plain_client: MeshPod
    service_ip: str

    def pids(self, mode: Mode) -> dict[str, int]:
        """The processes a request of `mode` runs through, by role (for CPU accounting)."""
        node1, node2 = self.mesh.nodes
        hbone = mode in (Mode.MESH, Mode.IPTABLES_HBONE)
        server = self.server if hbone else self.plain_server
        out = {"client": self.routes[mode].client.pid}
        for process in self.topology.processes:
            if process.name.startswith(f"{server.fabric.name}:http-server"):
                out["server"] = process.pid
        envoys = (("node1 Envoy", node1), ("node2 Envoy", node2)) if hbone else (("node1 Envoy", node1),)
        if mode is not Mode.DIRECT:
            for name, node in envoys:
                if node.envoy is not None:
                    out[name] = node.envoy.process.pid
        return out

    @property
    def topology(self) -> Topology:
        return self.mesh.topology


def _check(mode: Mode, reply: EchoReply, scene_client_ip: str, node_ip: str) -> str | None:
    """Why `reply` did not take the path `mode` names, or None."""
    if reply.status != 200:
        return f"HTTP {reply.status} {reply.error}"
    xfcc = reply.headers.get("x-forwarded-client-cert", "")
    hbone = mode in (Mode.MESH, Mode.IPTABLES_HBONE)
    if hbone and f"/ns/{BENCH_NS}/sa/client" not in xfcc:
        return f"no caller identity in XFCC ({xfcc!r}): not HBONE"
    if not hbone and xfcc:
        return f"unexpected XFCC {xfcc!r}"
    expected_peer = scene_client_ip if mode is Mode.DIRECT else None
    if expected_peer is not None and reply.peer_ip != expected_peer:
        return f"the server saw {reply.peer_ip}, not the client {expected_peer}"
    if mode is not Mode.DIRECT and not hbone and reply.peer_ip != node_ip:
        return f"the server saw {reply.peer_ip}, not node1's Envoy {node_ip}"
    return None


@contextlib.asynccontextmanager
async def datapath_scene() -> AsyncIterator[Scene]:
    """The scene, checked path by path (each mode really takes its path), torn down on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="nm-bench-"))
    try:
        async with MeshHarness(nodes=2, workdir=workdir) as mesh:
            yield await _build(mesh)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _build(mesh: MeshHarness) -> Scene:
    node1, node2 = mesh.nodes
    await mesh.enroll(BENCH_NS)
    mesh.ensure_namespace(PLAIN_NS)
    server = await mesh.add_pod(
        BENCH_NS, "server", node=node2, labels={"app": "server"}, service_account="server"
    )
    plain_server = await mesh.add_pod(PLAIN_NS, "server", node=node2, labels={"app": "server"})
    ebpf_client = await mesh.add_pod(
        BENCH_NS, "client-ebpf", node=node1, labels={"app": "client"}, service_account="client", ports=()
    )
    iptables_client = await mesh.add_pod(
        BENCH_NS, "client-iptables", node=node1, labels={"app": "client"}, service_account="client", ports=()
    )
    # The agent finds a pod's netns through this link: without it, the pod never enters the eBPF map (the
    # agent retries it in the background), while the control plane still gives Envoy its config.
    (node1.netns_dir / iptables_client.uid).unlink()
    plain_client = await mesh.add_pod(PLAIN_NS, "client", node=node1, labels={"app": "client"}, ports=())
    service = await mesh.add_service(
        BENCH_NS, "server", {"app": "server"}, [Port(name="http", port=SERVICE_PORT, target=SERVER_PORT)]
    )
    await mesh.wait_synced(within=60)
    dnat = [
        "iptables",
        *("-t", "nat", "-A", "PREROUTING", "-s", f"{iptables_client.ip}/32", "-p", "tcp"),
        *("-j", "DNAT", "--to-destination", f"{node1.ip}:{OUTBOUND_PORT}"),
    ]
    added = await asyncio.to_thread(mesh.topology.run, node1.fabric, dnat)
    if added.returncode != 0:
        raise BenchError(f"iptables in {node1.name}: {added.stderr.strip()}")
    # A pod's packets leave through its node by proxy ARP, which the node gives only for addresses it
    # routes elsewhere; VIPs have no owner (an `unreachable` route), so without this the pod could not even
    # resolve a VIP's next hop. Through the node, as in a cluster where the node is the pod's gateway.
    route = ["ip", "route", "add", str(VIP_NETWORK), "via", node1.ip, "dev", "eth0", "onlink"]
    routed = await asyncio.to_thread(mesh.topology.run, iptables_client.fabric, route)
    if routed.returncode != 0:
        raise BenchError(f"route in {iptables_client.ref}: {routed.stderr.strip()}")

    vip = (service.cluster_ip, SERVICE_PORT)
    plain = (plain_server.ip, SERVER_PORT)
    targets = {
        Mode.DIRECT: (plain_client, plain),
        Mode.MESH: (ebpf_client, vip),
        Mode.IPTABLES_HBONE: (iptables_client, vip),
        Mode.EBPF_PASSTHROUGH: (ebpf_client, plain),
        Mode.IPTABLES_PASSTHROUGH: (iptables_client, plain),
    }
    for mode, (pod, (host, port)) in targets.items():
        reply = await mesh.call(pod, f"http://{host}:{port}/check")
        problem = _check(mode, reply, plain_client.ip, node1.ip)
        if problem is not None:
            raise BenchError(f"{mode.value} from {pod.ref} to {host}:{port}: {problem}\n{mesh.logs(20)}")
    clients: dict[str, PodClient] = {}
    for pod in (plain_client, ebpf_client, iptables_client):
        clients[pod.ref] = await asyncio.to_thread(PodClient, mesh.topology, pod)
    routes = {
        mode: Route(client=clients[pod.ref], host=host, port=port)
        for mode, (pod, (host, port)) in targets.items()
    }
    return Scene(
        mesh=mesh,
        routes=routes,
        server=server,
        plain_server=plain_server,
        plain_client=plain_client,
        service_ip=service.cluster_ip,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Latencies:
    """Per mode: every sample (us, measured in the pod) and how many requests failed (first error)."""

    samples_us: Mapping[Mode, tuple[float, ...]]
    errors: Mapping[Mode, int]
    first_error: Mapping[Mode, str]


async def interleaved_latency(scene: Scene, modes: Sequence[Mode], samples: int, batch: int) -> Latencies:
    """`samples` new-connection requests per mode, in rounds of `batch` per mode with the order rotated
    every round, so a burst of noise on the shared machine lands on every mode alike. One warm-up batch
    per mode first (connection pools, HBONE tunnels, caches), discarded."""
    for mode in modes:
        route = scene.routes[mode]
        await route.client.command(route.latency(min(batch, 20)))
    collected: dict[Mode, list[float]] = {mode: [] for mode in modes}
    errors = dict.fromkeys(modes, 0)
    first: dict[Mode, str] = dict.fromkeys(modes, "")
    rounds = -(-samples // batch)
    for index in range(rounds):
        shift = index % len(modes)
        for mode in (*modes[shift:], *modes[:shift]):
            route = scene.routes[mode]
            count = min(batch, samples - len(collected[mode]) - errors[mode])
            if count <= 0:
                continue
            answer = await route.client.command(route.latency(count))
            collected[mode].extend(float(s) for s in _floats(answer["samples_us"]))
            errors[mode] += int(str(answer["errors"]))
            first[mode] = first[mode] or str(answer["error"])
    return Latencies(
        samples_us={mode: tuple(values) for mode, values in collected.items()},
        errors=errors,
        first_error=first,
    )


def _floats(value: object) -> list[float]:
    if not isinstance(value, list):
        raise BenchError(f"not a list of samples: {value!r}")
    return [float(v) for v in value]
