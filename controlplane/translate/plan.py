"""The node agent's plan: which pods to capture, which VIPs to redirect, and where the node's Envoy listens.

A Workload's netns reference is left empty: the agent resolves it on the node, where it can see the pod's
processes (e.g. the pod sandbox's netns path from the container runtime's CRI status, or any process whose
cgroup path holds `pod<uid>` -> /proc/<pid>/ns/net), then learns the netns cookie from a socket opened there.
"""

from __future__ import annotations

from controlplane.model.service import Protocol, Service
from controlplane.model.workload import Workload
from controlplane.translate import naming
from controlplane.translate.settings import TranslateSettings
from protos.nodemesh.v1alpha1 import plan_pb2


def build_workload(workload: Workload, trust_domain: str) -> plan_pb2.Workload:
    return plan_pb2.Workload(
        uid=workload.uid,
        namespace=workload.namespace,
        name=workload.name,
        ips=list(workload.ips),
        service_account=workload.service_account,
        spiffe_id=naming.spiffe_id(trust_domain, workload.namespace, workload.service_account),
    )


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
        hbone_port=settings.hbone_port,
        trust_domain=settings.trust_domain,
    )
