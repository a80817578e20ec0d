"""Core and discovery kinds (Namespace, Node, Pod, Service, EndpointSlice) from their API JSON.

These come from the API server (or hand-written files), so unknown fields are not checked: they have
many fields the mesh does not read.
"""

from __future__ import annotations

from typing import Final

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.endpoints import AddressType, Endpoint, EndpointPort, EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.kube.fields import JSON, Reader, sub
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.service import Protocol, Service, ServicePort, ServiceType
from controlplane.model.workload import PodPhase, Workload, opts_out

ZONE_LABEL: Final = "topology.kubernetes.io/zone"
LEGACY_ZONE_LABEL: Final = "failure-domain.beta.kubernetes.io/zone"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def convert_namespace(r: Reader, obj: JSON, meta: JSON, name: str) -> Namespace:
    return Namespace(name=name, labels=FrozenMap(r.string_map(meta, "labels", "metadata")))


def convert_node(r: Reader, obj: JSON, meta: JSON, name: str) -> Node:
    labels = r.string_map(meta, "labels", "metadata")
    internal_ip = ""
    status = r.mapping(obj, "status", "") or {}
    for path, address in r.mappings(status, "addresses", "status"):
        if address.get("type") == "InternalIP" and not internal_ip:
            internal_ip = r.ip(address.get("address"), sub(path, "address")) or ""
    return Node(
        name=name,
        internal_ip=internal_ip,
        zone=labels.get(ZONE_LABEL, labels.get(LEGACY_ZONE_LABEL, "")),
        labels=FrozenMap(labels),
    )


def convert_pod(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> Workload:
    labels = FrozenMap(r.string_map(meta, "labels", "metadata"))
    spec = r.mapping(obj, "spec", "") or {}
    status = r.mapping(obj, "status", "") or {}
    ips: list[str] = []
    for path, entry in r.mappings(status, "podIPs", "status"):
        ip = r.ip(entry.get("ip"), sub(path, "ip"))
        if ip is not None and ip not in ips:
            ips.append(ip)
    if not ips and status.get("podIP"):
        ip = r.ip(status.get("podIP"), "status.podIP")
        ips = [ip] if ip is not None else []
    phase = PodPhase.PENDING
    phase_text = r.string(status, "phase", "status")
    if phase_text is not None:
        try:
            phase = PodPhase(phase_text)
        except ValueError:
            r.report(
                "status.phase",
                Reason.UNSUPPORTED_VALUE,
                f"unknown pod phase {phase_text!r}",
                Severity.WARNING,
            )
            phase = PodPhase.UNKNOWN
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for _, c in r.mappings(status, "conditions", "status")
    )
    service_account = (
        r.string(spec, "serviceAccountName", "spec") or r.string(spec, "serviceAccount", "spec") or "default"
    )
    return Workload(
        uid=r.string(meta, "uid", "metadata") or "",
        namespace=namespace,
        name=name,
        node=r.string(spec, "nodeName", "spec") or "",
        ips=tuple(ips),
        service_account=service_account,
        labels=labels,
        phase=phase,
        ready=ready,
        opted_out=opts_out(labels),
        host_network=bool(r.boolean(spec, "hostNetwork", "spec")),
        terminating=meta.get("deletionTimestamp") is not None,
    )


def convert_service(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> Service:
    spec = r.mapping(obj, "spec", "") or {}
    service_type = r.enum(spec, "type", "spec", ServiceType) or ServiceType.CLUSTER_IP
    cluster_ips: list[str] = []
    raw_ips = r.strings(spec, "clusterIPs", "spec") or (
        [ip] if (ip := r.string(spec, "clusterIP", "spec")) else []
    )
    for i, raw in enumerate(raw_ips):
        if raw in ("None", ""):
            continue
        ip = r.ip(raw, f"spec.clusterIPs[{i}]")
        if ip is not None:
            cluster_ips.append(ip)
    ports = []
    seen_ports: set[tuple[int, Protocol]] = set()
    for path, p in r.mappings(spec, "ports", "spec"):
        port = r.integer(p, "port", path, required=True, minimum=1, maximum=65535)
        protocol = r.enum(p, "protocol", path, Protocol) or Protocol.TCP
        target: int | str | None = None
        raw_target = p.get("targetPort")
        if isinstance(raw_target, str) and not raw_target.isdigit():
            target = raw_target
        elif raw_target is not None:
            value = int(raw_target) if isinstance(raw_target, str) else raw_target
            target = r.as_integer(value, sub(path, "targetPort"), minimum=1, maximum=65535)
        if port is None:
            continue
        if (port, protocol) in seen_ports:
            r.report(sub(path, "port"), Reason.INVALID_VALUE, f"duplicate port {port}/{protocol}")
        seen_ports.add((port, protocol))
        ports.append(
            ServicePort(
                name=r.string(p, "name", path) or "",
                port=port,
                target_port=target if target is not None else port,
                protocol=protocol,
                app_protocol=r.string(p, "appProtocol", path),
            )
        )
    selector = r.string_map(spec, "selector", "spec") if spec.get("selector") is not None else None
    return Service(
        namespace=namespace,
        name=name,
        type=service_type,
        cluster_ips=tuple(cluster_ips),
        ports=tuple(ports),
        selector=FrozenMap(selector) if selector is not None else None,
        labels=FrozenMap(r.string_map(meta, "labels", "metadata")),
        external_name=r.string(spec, "externalName", "spec") or "",
    )


def convert_endpoint_slice(r: Reader, obj: JSON, meta: JSON, namespace: str, name: str) -> EndpointSlice:
    labels = r.string_map(meta, "labels", "metadata")
    address_type = r.enum(obj, "addressType", "", AddressType, required=True) or AddressType.IPV4
    endpoints = []
    for path, e in r.mappings(obj, "endpoints", ""):
        addresses: list[str] = []
        for address_path, address in r.items(e, "addresses", path, required=True):
            if address_type is AddressType.FQDN:
                if isinstance(address, str):
                    addresses.append(address)
            elif (ip := r.ip(address, address_path)) is not None:
                addresses.append(ip)
        conditions = r.mapping(e, "conditions", path) or {}
        cond_path = sub(path, "conditions")
        ready = r.boolean(conditions, "ready", cond_path)
        serving = r.boolean(conditions, "serving", cond_path)
        terminating = r.boolean(conditions, "terminating", cond_path)
        target = None
        target_ref = r.mapping(e, "targetRef", path)
        if target_ref is not None and target_ref.get("kind") == "Pod":
            target = ObjectRef(
                kind=Kind.POD,
                namespace=r.string(target_ref, "namespace", sub(path, "targetRef")) or namespace,
                name=r.string(target_ref, "name", sub(path, "targetRef"), required=True) or "",
            )
        endpoints.append(
            Endpoint(
                addresses=tuple(addresses),
                ready=ready if ready is not None else True,
                serving=serving if serving is not None else (ready if ready is not None else True),
                terminating=bool(terminating),
                node_name=r.string(e, "nodeName", path) or "",
                zone=r.string(e, "zone", path) or "",
                hostname=r.string(e, "hostname", path) or "",
                target=target,
            )
        )
    ports = [
        EndpointPort(
            name=r.string(p, "name", path) or "",
            port=r.integer(p, "port", path, minimum=1, maximum=65535),
            protocol=r.enum(p, "protocol", path, Protocol) or Protocol.TCP,
            app_protocol=r.string(p, "appProtocol", path),
        )
        for path, p in r.mappings(obj, "ports", "")
    ]
    return EndpointSlice(
        namespace=namespace,
        name=name,
        service=labels.get(SERVICE_NAME_LABEL, ""),
        address_type=address_type,
        endpoints=tuple(endpoints),
        ports=tuple(ports),
    )
