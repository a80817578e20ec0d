"""One node's HBONE resources: what its local meshed workloads need, O(local identities + local pods).

From the node's meshed workloads: the originate listener and one originate cluster per local identity, the
15008 listener with one chain per local identity, and the pod listeners with one chain per local pod (its
authorization from `controlplane.model.security.policies_for`). Everything else HBONE needs is mesh-wide:
the Service clusters and their EDS (`assignments.py`), and the inbound clusters (`mesh_clusters`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.model.refs import ObjectRef
from controlplane.model.security import policies_for
from controlplane.model.service import L7Protocol, Protocol
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import Workload
from controlplane.translate import hbone, naming
from controlplane.translate.messages import duration
from controlplane.translate.rbac import build_rbac
from controlplane.translate.settings import TranslateSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHbone:
    """A node's HBONE listeners and per-identity clusters, and the inputs they were built from."""

    address: str
    identities: tuple[hbone.LocalIdentity, ...]
    pods: tuple[hbone.LocalPod, ...]
    listeners: tuple[listener_pb2.Listener, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]


def mesh_clusters(settings: TranslateSettings) -> tuple[cluster_pb2.Cluster, ...]:
    """The node-independent HBONE clusters (inbound side)."""
    return hbone.build_inbound_clusters(duration(settings.connect_timeout))


def _http_ports(mesh: MeshSnapshot, workload: Workload, services: Iterable[ObjectRef]) -> tuple[int, ...]:
    """The workload's ports that a Service with an endpoint at it declares HTTP (HTTP/1, h2c, gRPC)."""
    ports: set[int] = set()
    for ref in sorted(services):
        service = mesh.services.get(ref)
        if service is None:
            continue
        http = [
            p for p in service.ports if p.protocol is Protocol.TCP and p.l7_protocol is not L7Protocol.TCP
        ]
        for slice_ in mesh.endpoint_slices_for(ref) if http else ():
            if not any(ip in e.addresses for e in slice_.endpoints for ip in workload.ips):
                continue
            for port in http:
                number = slice_.port_for(port)
                if number is not None:
                    ports.add(number)
    return tuple(sorted(ports))


def local_inputs(
    mesh: MeshSnapshot,
    workloads: Sequence[Workload],
    services_at: Callable[[str], Iterable[ObjectRef]],
    settings: TranslateSettings,
) -> tuple[tuple[hbone.LocalIdentity, ...], tuple[hbone.LocalPod, ...]]:
    """The node's identities (with their pods' IPs) and pods (with their HTTP ports and authorization).
    `services_at(ip)`: the Services with an endpoint at `ip`."""
    by_identity: dict[SpiffeId, list[str]] = {}
    pods: dict[str, hbone.LocalPod] = {}
    for w in workloads:
        spiffe_id = SpiffeId.for_workload(settings.trust_domain, w.namespace, w.service_account)
        by_identity.setdefault(spiffe_id, []).extend(w.ips)
        policies = policies_for(mesh, w, root_namespace=settings.root_namespace)
        http_rbac, tcp_rbac = build_rbac(policies, http=True), build_rbac(policies, http=False)
        connect_rbac = build_rbac(policies, http=False, connect=True)
        http_ports = _http_ports(mesh, w, {ref for ip in w.ips for ref in services_at(ip)})
        for ip in w.ips:
            pods.setdefault(
                ip,
                hbone.LocalPod(
                    ip=ip,
                    spiffe_id=spiffe_id,
                    http_ports=http_ports,
                    http_rbac=http_rbac,
                    tcp_rbac=tcp_rbac,
                    connect_rbac=connect_rbac,
                ),
            )
    identities = tuple(
        hbone.LocalIdentity(spiffe_id=i, ips=tuple(sorted(set(ips))))
        for i, ips in sorted(by_identity.items(), key=lambda kv: str(kv[0]))
    )
    return identities, tuple(pods[ip] for ip in sorted(pods))


def build_node_hbone(
    address: str,
    identities: tuple[hbone.LocalIdentity, ...],
    pods: tuple[hbone.LocalPod, ...],
    settings: TranslateSettings,
    previous: NodeHbone | None = None,
) -> NodeHbone:
    """The node's HBONE resources; a resource equal to its `previous` version is that very object, so the
    node's config changes only where the content does."""
    timeout, max_age = duration(settings.connect_timeout), duration(settings.max_connection_age)
    old_listeners = {str(li.name): li for li in previous.listeners} if previous is not None else {}
    old_clusters = {str(c.name): c for c in previous.clusters} if previous is not None else {}
    http, tcp = hbone.build_pod_listeners(pods)
    built = (
        hbone.build_originate_listener(identities),
        hbone.build_inbound_listener(address, settings.hbone_port, pods),
        http,
        tcp,
    )
    # Envoy refuses a listener without filter chains: a node with no (HTTP) pods has no such listener, and
    # connections the Service clusters would send it fail, as there is no client here to send them.
    listeners = tuple(
        old if (old := old_listeners.get(str(li.name))) is not None and old == li else li
        for li in built
        if li.filter_chains
    )
    clusters = []
    for identity in identities:
        name = naming.hbone_cluster(identity.spiffe_id.namespace, identity.spiffe_id.service_account)
        cluster = old_clusters.get(name)
        clusters.append(
            cluster
            if cluster is not None
            else hbone.build_originate_cluster(identity.spiffe_id, timeout, max_age)
        )
    return NodeHbone(
        address=address, identities=identities, pods=pods, listeners=listeners, clusters=tuple(clusters)
    )
