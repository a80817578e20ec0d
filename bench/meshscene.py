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

Each mode pays only for its own mechanism:
- the DNAT rule exists only while an iptables mode runs (`IptablesRedirect`): conntrack hooks a netns only
  while a rule needs them (nf_ct_netns_get/put), so with the rule and its nat table gone, node1 tracks
  nothing and the eBPF and direct modes run without conntrack or NAT (`tracked` proves it);
- the iptables pod's client process runs in the run's root cgroup, outside node1's cgroup where the agent
  attaches connect4, sockops and getpeername4, so none of nodemesh's programs touch its sockets (Envoy's
  cgroup keeps them: the same Envoy serves both modes).
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
from integration.mesh import EchoReply, MeshHarness, MeshNode, MeshPod, Port
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
    if shutil.which("nft") is None:
        return "nft not installed (the baseline removes its nat table with it between rounds)"
    from integration.envoy import find_envoy

    if find_envoy() is None:
        return "no Envoy binary (make setup)"
    return None


class PodClient:
    """`python -m bench.podclient` kept running in a pod; `command` sends one request and waits for its
    answer (in a thread, so the control plane on this event loop keeps serving). In the pod's cgroup unless
    `cgroup` names another one (its netns is the pod's either way)."""

    def __init__(self, topology: Topology, pod: MeshPod, *, cgroup: Path | None = None) -> None:
        self.pod = pod
        self._topology = topology
        self._cgroup = cgroup
        self._process = self._spawn()

    def _spawn(self) -> Process:
        process = self._topology.spawn(
            self.pod.fabric,
            [sys.executable, "-m", "bench.podclient"],
            cgroup=self._cgroup,
            stdin=True,
            name=f"{self.pod.ref}:podclient",
        )
        ready = process.read_json(timeout=30)
        if ready.get("event") != "READY":
            raise BenchError(f"{self.pod.ref}: the pod client said {ready}")
        return process

    def restart(self) -> None:
        """A fresh client process in place of this one: where the scheduler puts a process on the shared
        vCPUs moves its latencies by tens of us (the A/A control), so the rounds spread each mode over
        several processes rather than betting it on one."""
        self._topology.stop(self._process)
        self._process = self._spawn()

    def stop(self) -> None:
        self._topology.stop(self._process)

    def cgroup(self) -> Path:
        """The cgroup v2 directory the client process runs in (from /proc/<pid>/cgroup)."""
        lines = Path(f"/proc/{self.pid}/cgroup").read_text().splitlines()
        relative = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        return self._topology.cgroup.parent / relative.lstrip("/")

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
    # The meshed server's own pod IP (no Service): outbound_services misses, so the connection goes on
    # through outbound_pods and outbound_pod_nodes to hbone_originate (controlplane.translate.pods).
    MESH_POD_IP = "eBPF + HBONE, pod IP"
    IPTABLES_HBONE = "iptables + HBONE"
    EBPF_PASSTHROUGH = "eBPF + passthrough"
    IPTABLES_PASSTHROUGH = "iptables + passthrough"
    # Direct, while node1's DNAT rule is installed (it does not match this client): what conntrack and the
    # NAT hooks cost a connection that node1 only forwards, measured like every other mode.
    DIRECT_CONNTRACK = "direct, node1 conntrack on"

    @property
    def needs_iptables(self) -> bool:
        return self in _IPTABLES_MODES

    @property
    def hbone(self) -> bool:
        """Whether the mode reaches the meshed server over HBONE (else an unmeshed twin, in plaintext)."""
        return self in _HBONE_MODES


_IPTABLES_MODES = frozenset({Mode.IPTABLES_HBONE, Mode.IPTABLES_PASSTHROUGH, Mode.DIRECT_CONNTRACK})
_HBONE_MODES = frozenset({Mode.MESH, Mode.MESH_POD_IP, Mode.IPTABLES_HBONE})


class IptablesRedirect:
    """The baseline's DNAT in node1's PREROUTING (`iptables`, nf_tables backend), installed only while an
    iptables mode runs. Removing it also deletes the nat table that iptables-nft created: the rule's NAT
    expression holds conntrack on the netns, the table's base chain a NAT hook on every packet."""

    def __init__(self, topology: Topology, node: MeshNode, client_ip: str) -> None:
        self._topology = topology
        self._node = node
        self._rule = (
            *("PREROUTING", "-s", f"{client_ip}/32", "-p", "tcp"),
            *("-j", "DNAT", "--to-destination", f"{node.ip}:{OUTBOUND_PORT}"),
        )
        self.installed = False
        # Installs and removals so far (the report says how often the rounds toggled it).
        self.toggles = 0

    def _iptables(self, action: str) -> None:
        done = self._topology.run(self._node.fabric, ["iptables", "-t", "nat", action, *self._rule])
        if done.returncode != 0:
            raise BenchError(f"iptables {action} in {self._node.name}: {done.stderr.strip()}")

    def _install(self) -> None:
        self._iptables("-A")

    def _remove(self) -> None:
        self._iptables("-D")
        # Nothing else in node1's netns uses NAT (the harness routes, it does not translate).
        done = self._topology.run(self._node.fabric, ["nft", "delete", "table", "ip", "nat"])
        if done.returncode != 0:
            raise BenchError(f"nft delete table ip nat in {self._node.name}: {done.stderr.strip()}")

    async def set(self, wanted: bool) -> None:
        if wanted == self.installed:
            return
        await asyncio.to_thread(self._install if wanted else self._remove)
        self.installed = wanted
        self.toggles += 1


def tracked(topology: Topology, node: MeshNode, source_ip: str) -> int:
    """How many connections from `source_ip` node1's conntrack holds (entries outlive the hooks that made
    them by their timeouts, 120 s after a close: call it on a source that only the checked modes use)."""
    done = topology.run(node.fabric, ["cat", "/proc/net/nf_conntrack"])
    if done.returncode != 0:
        raise BenchError(f"/proc/net/nf_conntrack in {node.name}: {done.stderr.strip()}")
    needle = f" src={source_ip} "
    return sum(1 for line in done.stdout.splitlines() if needle in line)


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
    ebpf_client: MeshPod
    iptables_client: MeshPod
    service_ip: str
    iptables: IptablesRedirect

    async def prepare(self, mode: Mode) -> None:
        """node1's netfilter as `mode` needs it: the DNAT rule (and so conntrack) only for iptables modes."""
        await self.iptables.set(mode.needs_iptables)

    def tracked(self, pod: MeshPod) -> int:
        """node1's conntrack entries of connections from `pod` (see `tracked`)."""
        return tracked(self.topology, self.mesh.nodes[0], pod.ip)

    def time_wait(self, pod: MeshPod) -> int:
        """TCP sockets in TIME_WAIT in `pod`'s netns: a redirected pod's connections all share one
        (pod, *, Envoy, 15001) port space, so many recent connections make connect() search longer."""
        done = self.topology.run(pod.fabric, ["ss", "-Htan", "state", "time-wait"])
        if done.returncode != 0:
            raise BenchError(f"ss in {pod.ref}: {done.stderr.strip()}")
        return len(done.stdout.splitlines())

    def pids(self, mode: Mode) -> dict[str, int]:
        """The processes a request of `mode` runs through, by role (for CPU accounting)."""
        node1, node2 = self.mesh.nodes
        hbone = mode.hbone
        server = self.server if hbone else self.plain_server
        out = {"client": self.routes[mode].client.pid}
        direct = mode in (Mode.DIRECT, Mode.DIRECT_CONNTRACK)
        for process in self.topology.processes:
            if process.name.startswith(f"{server.fabric.name}:http-server"):
                out["server"] = process.pid
        envoys = (("node1 Envoy", node1), ("node2 Envoy", node2)) if hbone else (("node1 Envoy", node1),)
        if not direct:
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
    hbone = mode.hbone
    if hbone and f"/ns/{BENCH_NS}/sa/client" not in xfcc:
        return f"no caller identity in XFCC ({xfcc!r}): not HBONE"
    if not hbone and xfcc:
        return f"unexpected XFCC {xfcc!r}"
    direct = mode in (Mode.DIRECT, Mode.DIRECT_CONNTRACK)
    if direct and reply.peer_ip != scene_client_ip:
        return f"the server saw {reply.peer_ip}, not the client {scene_client_ip}"
    if not direct and not hbone and reply.peer_ip != node_ip:
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
    iptables = IptablesRedirect(mesh.topology, node1, iptables_client.ip)
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
        Mode.MESH_POD_IP: (ebpf_client, (server.ip, SERVER_PORT)),
        Mode.IPTABLES_HBONE: (iptables_client, vip),
        Mode.EBPF_PASSTHROUGH: (ebpf_client, plain),
        Mode.IPTABLES_PASSTHROUGH: (iptables_client, plain),
        Mode.DIRECT_CONNTRACK: (plain_client, plain),
    }
    # The modes without iptables first, before the rule ever existed: then no conntrack entry of the eBPF
    # pod can predate the run, and `tracked` of it must stay 0 throughout.
    for mode, (pod, (host, port)) in sorted(targets.items(), key=lambda item: item[0].needs_iptables):
        await iptables.set(mode.needs_iptables)
        reply = await mesh.call(pod, f"http://{host}:{port}/check")
        problem = _check(mode, reply, plain_client.ip, node1.ip)
        if problem is not None:
            raise BenchError(f"{mode.value} from {pod.ref} to {host}:{port}: {problem}\n{mesh.logs(20)}")
    await iptables.set(False)
    counts = [
        await asyncio.to_thread(tracked, mesh.topology, node1, pod.ip)
        for pod in (ebpf_client, iptables_client, plain_client)
    ]
    # The eBPF pod's connections ran only while the rule was out; the iptables pod's and the direct one
    # made with the rule in (DIRECT_CONNTRACK) were tracked.
    if counts[0] or not counts[1] or not counts[2]:
        raise BenchError(
            f"node1 conntrack entries: eBPF pod {counts[0]} (want 0), iptables pod {counts[1]} and direct "
            f"client {counts[2]} (want some each)"
        )
    clients = {
        plain_client.ref: await asyncio.to_thread(PodClient, mesh.topology, plain_client),
        ebpf_client.ref: await asyncio.to_thread(PodClient, mesh.topology, ebpf_client),
        # Outside node1's cgroup (the run's root cgroup holds no pod): no nodemesh program sees its sockets.
        iptables_client.ref: await asyncio.to_thread(
            PodClient, mesh.topology, iptables_client, cgroup=mesh.topology.cgroup
        ),
    }
    unhooked = clients[iptables_client.ref].cgroup()
    if unhooked.is_relative_to(node1.fabric.cgroup):
        raise BenchError(f"the iptables client runs in {unhooked}, under node1's hooked cgroup")
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
        ebpf_client=ebpf_client,
        iptables_client=iptables_client,
        service_ip=service.cluster_ip,
        iptables=iptables,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Latencies:
    """Per mode: every sample (us, measured in the pod) by round, and how many requests failed (first
    error). Round i of every mode ran back to back, so rounds pair the modes' samples."""

    rounds_us: Mapping[Mode, tuple[tuple[float, ...], ...]]
    errors: Mapping[Mode, int]
    first_error: Mapping[Mode, str]
    # Rounds per client process (every client restarted after this many rounds; 0: never).
    rounds_per_process: int = 0

    @property
    def samples_us(self) -> Mapping[Mode, tuple[float, ...]]:
        return {mode: tuple(s for batch in rounds for s in batch) for mode, rounds in self.rounds_us.items()}

    @property
    def blocks_us(self) -> Mapping[Mode, tuple[tuple[float, ...], ...]]:
        """Samples by client process generation (by round without restarts): the independent units a
        bootstrap should draw, since rounds of one process share its placement."""
        size = self.rounds_per_process or 1
        return {
            mode: tuple(
                tuple(s for batch in rounds[start : start + size] for s in batch)
                for start in range(0, len(rounds), size)
            )
            for mode, rounds in self.rounds_us.items()
        }


def round_order(modes: Sequence[Mode], index: int) -> tuple[Mode, ...]:
    """The modes of round `index`: the order rotated every round so a burst of noise lands on every mode
    alike, with the iptables modes kept together (one install and one removal of the rule per round).
    The iptables block rotates inside too."""
    block = [mode for mode in modes if mode.needs_iptables]
    units: list[tuple[Mode, ...]] = [(mode,) for mode in modes if not mode.needs_iptables]
    if block:
        shift = index % len(block)
        units.append((*block[shift:], *block[:shift]))
    shift = index % len(units)
    return tuple(mode for unit in (*units[shift:], *units[:shift]) for mode in unit)


async def interleaved_latency(
    scene: Scene,
    modes: Sequence[Mode],
    samples: int,
    batch: int,
    routes: Mapping[Mode, Route] | None = None,
    *,
    rounds_per_process: int = 0,
) -> Latencies:
    """`samples` new-connection requests per mode, in rounds of `batch` per mode (`round_order`), node1's
    netfilter set for each mode before its batch (`Scene.prepare`). One warm-up batch per mode first
    (connection pools, HBONE tunnels, caches), discarded. Every `rounds_per_process` rounds (0: never)
    each client process is replaced by a fresh one (`PodClient.restart`). `routes` overrides the
    scene's (A/A control)."""
    lanes = scene.routes if routes is None else routes
    clients = list({id(lanes[mode].client): lanes[mode].client for mode in modes}.values())
    for mode in round_order(modes, 0):
        await scene.prepare(mode)
        route = lanes[mode]
        await route.client.command(route.latency(min(batch, 20)))
    collected: dict[Mode, list[tuple[float, ...]]] = {mode: [] for mode in modes}
    done = dict.fromkeys(modes, 0)
    errors = dict.fromkeys(modes, 0)
    first: dict[Mode, str] = dict.fromkeys(modes, "")
    rounds = -(-samples // batch)
    for index in range(rounds):
        if rounds_per_process and index and index % rounds_per_process == 0:
            # The restart order rotates too: a process spawned first or last could land on a vCPU (next to
            # an Envoy, say) systematically, which the A/A control showed as a steady 20-40 us bias.
            generation = index // rounds_per_process
            shift = generation % len(clients)
            for client in (*clients[shift:], *clients[:shift]):
                await asyncio.to_thread(client.restart)
            # A few discarded requests per mode, so no process's first connection counts.
            for mode in round_order(modes, index):
                await scene.prepare(mode)
                await lanes[mode].client.command(lanes[mode].latency(3))
        for mode in round_order(modes, index):
            count = min(batch, samples - done[mode] - errors[mode])
            if count <= 0:
                # An empty round keeps the modes' rounds paired by index (failed requests ended it early).
                collected[mode].append(())
                continue
            await scene.prepare(mode)
            route = lanes[mode]
            answer = await route.client.command(route.latency(count))
            values = tuple(float(s) for s in _floats(answer["samples_us"]))
            collected[mode].append(values)
            done[mode] += len(values)
            errors[mode] += int(str(answer["errors"]))
            first[mode] = first[mode] or str(answer["error"])
    await scene.iptables.set(False)
    return Latencies(
        rounds_us={mode: tuple(values) for mode, values in collected.items()},
        errors=errors,
        first_error=first,
        rounds_per_process=rounds_per_process,
    )


def _floats(value: object) -> list[float]:
    if not isinstance(value, list):
        raise BenchError(f"not a list of samples: {value!r}")
    return [float(v) for v in value]
