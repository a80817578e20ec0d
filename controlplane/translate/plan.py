"""The node agent's plan: which pods to capture, which VIPs to redirect, and where the node's Envoy listens.

A Workload's netns reference is left empty: the agent resolves it on the node, where it can see the pod's
processes (e.g. the pod sandbox's netns path from the container runtime's CRI status, or any process whose
cgroup path holds `pod<uid>` -> /proc/<pid>/ns/net), then learns the netns cookie from a socket opened there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controlplane.model.frozenmap import matches_selector
from controlplane.model.peerauth import MtlsMode
from controlplane.model.plaintext import authorize_plaintext
from controlplane.model.security import effective_mtls, policies_for
from controlplane.model.service import Protocol, Service
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import Workload
from controlplane.translate import naming
from controlplane.translate.settings import TranslateSettings
from protos.nodemesh.v1alpha1 import plan_pb2

_PLAN_MODES: Final = {
    MtlsMode.PERMISSIVE: plan_pb2.MTLS_MODE_PERMISSIVE,
    MtlsMode.STRICT: plan_pb2.MTLS_MODE_STRICT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadMtls:
    """A workload's inbound mTLS as the agent enforces it: its own mode, and the ports whose mode differs.

    STRICT here means "plaintext that did not come through the node Envoy is refused": what
    PeerAuthentication asks for, and also what the workload's AuthorizationPolicies need where they could
    not admit an unauthenticated plaintext caller (`controlplane.model.plaintext`), since such a caller
    passes no Envoy that could check them."""

    mode: MtlsMode
    ports: tuple[tuple[int, MtlsMode], ...] = ()


def workload_mtls(mesh: MeshSnapshot, workload: Workload, root_namespace: str) -> WorkloadMtls:
    """`effective_mtls` for the workload and for every port a PeerAuthentication selecting it names, made
    STRICT wherever its authorization refuses plaintext (the ports its policies name, or all of them).
    Only named ports can differ from the workload's own mode."""
    plaintext = authorize_plaintext(policies_for(mesh, workload, root_namespace=root_namespace))

    def mode(port: int | None) -> MtlsMode:
        if plaintext.refuses(port):
            return MtlsMode.STRICT
        return effective_mtls(mesh, workload, port, root_namespace=root_namespace).mode

    own = mode(None)
    named = {port for port, _ in plaintext.ports}
    for policy in mesh.peer_authentications_in(workload.namespace):
        if policy.selector is not None and matches_selector(policy.selector, workload.labels):
            named.update(policy.port_modes)
    ports = []
    for port in sorted(named):
        port_mode = mode(port)
        if port_mode is not own:
            ports.append((port, port_mode))
    return WorkloadMtls(mode=own, ports=tuple(ports))


def build_workload(
    workload: Workload, trust_domain: str, mtls: WorkloadMtls | None = None
) -> plan_pb2.Workload:
    message = plan_pb2.Workload(
        uid=workload.uid,
        namespace=workload.namespace,
        name=workload.name,
        ips=list(workload.ips),
        service_account=workload.service_account,
        spiffe_id=naming.spiffe_id(trust_domain, workload.namespace, workload.service_account),
    )
    if mtls is not None:
        message.mtls_mode = _PLAN_MODES[mtls.mode]
        for port, mode in mtls.ports:
            message.port_mtls[port] = _PLAN_MODES[mode]
    return message


def build_service_vip(service: Service) -> plan_pb2.ServiceVip | None:
    """The ClusterIPs and TCP ports to redirect; None for headless Services (nothing to redirect)."""
    ports = sorted({p.port for p in service.ports if p.protocol is Protocol.TCP})
    if service.headless or not ports:
        return None
    return plan_pb2.ServiceVip(
        namespace=service.namespace, name=service.name, ips=sorted(service.cluster_ips), ports=ports
    )


def build_node_settings(envoy_address: str, settings: TranslateSettings) -> plan_pb2.NodeSettings:
    return plan_pb2.NodeSettings(
        envoy_address=envoy_address,
        outbound_port=settings.outbound_port,
        outbound_ports=settings.outbound_ports,
        hbone_port=settings.hbone_port,
        trust_domain=settings.trust_domain,
    )
