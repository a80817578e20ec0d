"""The Kubernetes objects the mesh harness writes for its fabric: pure builders of Kubernetes JSON.

The harness plays kubelet (a Pod's status: Running, ready, its IP), the node controller (a Node's InternalIP)
and the EndpointSlice controller (one slice per Service with the ready pods its selector matches).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

JsonObject = dict[str, Any]

MESH_LABEL: Final = "nodemesh.io/mesh"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY: Final = "nodemesh-harness"
RUNNING_SINCE: Final = "2026-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """A Service port: `port` on the VIP, `target` on the pods (a number, or a container port's name)."""

    name: str
    port: int
    target: int | str | None = None
    app_protocol: str | None = None

    @property
    def target_port(self) -> int | str:
        return self.target if self.target is not None else self.port


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFacts:
    """What the EndpointSlice controller needs to know of a pod."""

    namespace: str
    name: str
    uid: str
    node: str
    ip: str
    labels: Mapping[str, str]
    # Container port name -> number.
    ports: Mapping[str, int] = field(default_factory=dict)


def namespace_object(name: str, *, enrolled: bool = False) -> JsonObject:
    labels = {MESH_LABEL: "enabled"} if enrolled else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def node_object(name: str, internal_ip: str, pod_cidr: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }


def pod_object(
    *,
    namespace: str,
    name: str,
    node: str,
    ip: str,
    labels: Mapping[str, str],
    service_account: str,
    image: str,
    ports: Mapping[str, int],
) -> JsonObject:
    """A pod as a kubelet reports it once its containers run and pass their readiness probes."""
    ready = [
        {"type": kind, "status": "True", "lastTransitionTime": RUNNING_SINCE}
        for kind in ("Initialized", "ContainersReady", "Ready", "PodScheduled")
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [
                        {"name": port_name, "containerPort": number, "protocol": "TCP"}
                        for port_name, number in sorted(ports.items())
                    ],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "",
            "conditions": ready,
        },
    }


def service_object(
    *, namespace: str, name: str, selector: Mapping[str, str], ports: Sequence[Port]
) -> JsonObject:
    """A ClusterIP Service; the API server allocates the ClusterIP."""
    spec_ports: list[JsonObject] = []
    for port in ports:
        entry: JsonObject = {
            "name": port.name,
            "port": port.port,
            "targetPort": port.target_port,
            "protocol": "TCP",
        }
        if port.app_protocol:
            entry["appProtocol"] = port.app_protocol
        spec_ports.append(entry)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "selector": dict(selector), "ports": spec_ports},
    }


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector matches a pod (an empty selector matches none: such Services have no slices)."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def endpoint_slice(
    *, namespace: str, service: str, ports: Sequence[Port], pods: Iterable[PodFacts]
) -> JsonObject:
    """The one slice the harness keeps per Service: every matching ready pod, every port resolved."""
    chosen = sorted(pods, key=lambda p: (p.ip, p.name))
    slice_ports: list[JsonObject] = []
    for port in ports:
        target = port.target_port
        if isinstance(target, str):
            # A named target port: the number each pod gives that name (the harness's pods agree).
            numbers = {p.ports[target] for p in chosen if target in p.ports}
            if len(numbers) != 1:
                continue
            target = numbers.pop()
        entry: JsonObject = {"name": port.name, "port": target, "protocol": "TCP"}
        if port.app_protocol:
            entry["appProtocol"] = port.app_protocol
        slice_ports.append(entry)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-harness",
            "namespace": namespace,
            "labels": {SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: MANAGED_BY},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [p.ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": p.node,
                "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
            }
            for p in chosen
        ],
        "ports": slice_ports,
    }
