"""Small builders of plan resources, as the control plane sends them."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.xds.resource import build_resource
from controlplane.xds.snapshot import Snapshot
from nodeagent.plan import PlanResources
from nodeagent.xdsclient import ReceivedResource
from protos.nodemesh.v1alpha1 import plan_pb2

PlanMessage = plan_pb2.Workload | plan_pb2.ServiceVip | plan_pb2.NodeSettings


def workload(
    uid: str,
    *,
    path: str | None = None,
    pid: int | None = None,
    ips: Iterable[str] = ("198.18.1.1",),
    exclude_ports: Iterable[int] = (),
    sa: str = "default",
    ns: str = "default",
) -> plan_pb2.Workload:
    message = plan_pb2.Workload(
        uid=uid,
        namespace=ns,
        name=f"pod-{uid}",
        ips=list(ips),
        service_account=sa,
        spiffe_id=f"spiffe://cluster.local/ns/{ns}/sa/{sa}",
        exclude_ports=list(exclude_ports),
    )
    if path is not None:
        message.netns.path = path
    if pid is not None:
        message.netns.pid = pid
    return message


def service(name: str, ips: Iterable[str], ports: Iterable[int], ns: str = "default") -> plan_pb2.ServiceVip:
    return plan_pb2.ServiceVip(namespace=ns, name=name, ips=list(ips), ports=list(ports))


def node_settings(
    envoy: str = "198.19.0.1",
    *,
    outbound_port: int = 15001,
    outbound_ports: int = 0,
    exclude_cidrs: Iterable[str] = (),
    exclude_ports: Iterable[int] = (),
) -> plan_pb2.NodeSettings:
    return plan_pb2.NodeSettings(
        envoy_address=envoy,
        outbound_port=outbound_port,
        outbound_ports=outbound_ports,
        hbone_port=15008,
        exclude_cidrs=list(exclude_cidrs),
        exclude_ports=list(exclude_ports),
        trust_domain="cluster.local",
    )


def snapshot(*messages: PlanMessage) -> Snapshot:
    return Snapshot.build(build_resource(m) for m in messages)


def received(*messages: PlanMessage) -> PlanResources:
    """What the xDS client would hold after receiving `messages`."""
    result: dict[str, dict[str, ReceivedResource]] = {}
    for message in messages:
        resource = build_resource(message)
        result.setdefault(resource.type_url, {})[resource.name] = ReceivedResource(
            name=resource.name, version=resource.version, resource=resource.to_any()
        )
    return result
