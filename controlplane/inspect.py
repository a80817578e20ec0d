"""What `meshctl analyze` and `meshctl describe` show: pure functions over the model, no I/O.

- `analyze_mesh`: the diagnostics translation and the security checks find in a mesh (the sources'
  conversion diagnostics are the caller's: it read the input).
- `describe_pod`: one pod as the mesh sees it, as a JSON-ready document: whether it is meshed and why,
  its identity, the Services that select it, the routes and policies that apply to its traffic, its mTLS
  mode per port, and the diagnostics naming any of those objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from controlplane.ca.errors import InvalidSpiffeIdError
from controlplane.ca.identity import SpiffeId
from controlplane.model.authz import AuthorizationPolicy, WorkloadPolicies
from controlplane.model.diagnostics import Diagnostic
from controlplane.model.endpoints import EndpointSlice
from controlplane.model.frozenmap import matches_selector
from controlplane.model.namespace import MESH_DISABLED, MESH_ENABLED, MESH_LABEL
from controlplane.model.peerauth import MtlsMode
from controlplane.model.plaintext import authorize_plaintext
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import Route
from controlplane.model.security import (
    ROOT_NAMESPACE,
    MtlsDecision,
    effective_mtls,
    policies_for,
    security_diagnostics,
)
from controlplane.model.service import Service
from controlplane.model.snapshot import Index, MeshSnapshot
from controlplane.model.workload import PodPhase, Workload
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator

Document = dict[str, object]

# The kinds users author as custom resources: what `meshctl check`'s "crds" line is about.
CRD_KINDS: Final = frozenset(
    {
        Kind.HTTP_ROUTE,
        Kind.GRPC_ROUTE,
        Kind.TRAFFIC_POLICY,
        Kind.AUTHORIZATION_POLICY,
        Kind.PEER_AUTHENTICATION,
    }
)


# -- analyze ----------------------------------------------------------------------------------------------


def analyze_mesh(
    mesh: MeshSnapshot,
    settings: TranslateSettings | None = None,
    *,
    root_namespace: str = ROOT_NAMESPACE,
) -> tuple[Diagnostic, ...]:
    """Translation diagnostics for the whole mesh and every node, plus the security cross-checks;
    de-duplicated and sorted."""
    # A fresh translator: the caller's (the publisher's) keeps memo state for its own pushes.
    translator = Translator(settings)
    mesh_config = translator.translate_mesh(mesh)
    found = set(mesh_config.diagnostics)
    for node in mesh.nodes.values():
        found.update(translator.translate_node(mesh, node.name, mesh_config).diagnostics)
    found.update(security_diagnostics(mesh, root_namespace=root_namespace))
    return tuple(sorted(found, key=Diagnostic.sort_key))


def merge_diagnostics(*groups: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Several sources' diagnostics as one sorted list without duplicates."""
    merged: set[Diagnostic] = set()
    for group in groups:
        merged.update(group)
    return tuple(sorted(merged, key=Diagnostic.sort_key))


# -- describe ---------------------------------------------------------------------------------------------


def membership(mesh: MeshSnapshot, workload: Workload) -> tuple[bool, tuple[str, ...]]:
    """Whether the pod is in the mesh, and every reason why (or why not)."""
    reasons: list[str] = []
    namespace = mesh.namespace(workload.namespace)
    if namespace is None:
        reasons.append(f"namespace {workload.namespace} is not known to the control plane")
    elif not namespace.mesh_enabled:
        label = namespace.labels.get(MESH_LABEL)
        has = f"has {MESH_LABEL}={label}" if label is not None else f"has no label {MESH_LABEL}"
        reasons.append(
            f"namespace {workload.namespace} is not enrolled: it {has} (enroll it with "
            f"{MESH_LABEL}={MESH_ENABLED})"
        )
    if workload.opted_out:
        reasons.append(f"the pod opted out with label {MESH_LABEL}={MESH_DISABLED}")
    if workload.host_network:
        reasons.append("the pod uses the host network: it shares the node's network namespace")
    if not workload.node:
        reasons.append("the pod is not scheduled to a node yet")
    if not workload.ips:
        reasons.append("the pod has no IP address yet")
    if workload.phase not in (PodPhase.PENDING, PodPhase.RUNNING):
        reasons.append(f"the pod is {workload.phase.value}: only Pending and Running pods are meshed")
    meshed = mesh.is_meshed(workload)
    if meshed:
        reasons.append(f"namespace {workload.namespace} is enrolled ({MESH_LABEL}={MESH_ENABLED})")
        if workload.terminating:
            reasons.append("the pod is terminating: it leaves the mesh when it is gone")
    return meshed, tuple(reasons)


def _spiffe_id(trust_domain: str, workload: Workload) -> str | None:
    try:
        return str(SpiffeId.for_workload(trust_domain, workload.namespace, workload.service_account))
    except InvalidSpiffeIdError:
        return None


def _selected_by_selector(mesh: MeshSnapshot, workload: Workload) -> list[Service]:
    return sorted(
        (
            s
            for s in mesh.services.values()
            if s.namespace == workload.namespace
            and s.selector
            and matches_selector(s.selector, workload.labels)
        ),
        key=lambda s: s.ref,
    )


def _slice_names_pod(endpoint_slice: EndpointSlice, workload: Workload) -> bool:
    ips = set(workload.ips)
    return any(
        e.target == workload.ref or (e.target is None and ips.intersection(e.addresses))
        for e in endpoint_slice.endpoints
    )


def _slices_with(mesh: MeshSnapshot, workload: Workload) -> list[EndpointSlice]:
    return sorted(
        (s for s in mesh.endpoint_slices.values() if _slice_names_pod(s, workload)), key=lambda s: s.ref
    )


def _service_document(
    service: Service | None, ref: ObjectRef, via: Sequence[str], slices: Sequence[EndpointSlice]
) -> Document:
    document: Document = {"ref": str(ref), "namespace": ref.namespace, "name": ref.name, "via": list(via)}
    if service is None:
        document["missing"] = True  # an EndpointSlice names a Service the model does not have
        return document
    document["cluster_ips"] = list(service.cluster_ips)
    document["ports"] = [
        {
            "name": p.name,
            "port": p.port,
            "target_port": p.target_port,
            "protocol": p.l7_protocol.value,
        }
        for p in service.ports
    ]
    document["endpoint_slices"] = [s.name for s in slices]
    return document


def _route_document(route: Route, service: ObjectRef, role: str) -> Document:
    ports = sorted({p.port for p in route.parent_refs if p.service_ref == service and p.port is not None})
    all_ports = any(p.service_ref == service and p.port is None for p in route.parent_refs)
    return {
        "ref": str(route.ref),
        "kind": str(route.ref.kind),
        "namespace": route.namespace,
        "name": route.name,
        "role": role,
        "ports": [] if all_ports else ports,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outbound:
    service: ObjectRef
    applied: tuple[Route, ...]
    consumer: bool
    overridden: tuple[Route, ...]

    def to_document(self) -> Document:
        role = "consumer" if self.consumer else "producer"
        return {
            "service": str(self.service),
            "routes": [_route_document(r, self.service, role) for r in self.applied],
            "overridden": [str(r.ref) for r in self.overridden],
        }


def _outbound_routes(mesh: MeshSnapshot, namespace: str) -> list[_Outbound]:
    """Per Service with routes: those that apply to this pod's requests. A consumer route of the pod's
    namespace replaces the Service's producer routes for it (GAMMA)."""
    services: set[ObjectRef] = set()
    for key in mesh.index_keys(Index.PRODUCER_ROUTES):
        assert isinstance(key, ObjectRef)
        services.add(key)
    for key in mesh.index_keys(Index.CONSUMER_ROUTES):
        assert isinstance(key, tuple)
        consumer_namespace, service = key
        if consumer_namespace == namespace:
            services.add(service)
    entries: list[_Outbound] = []
    for service in sorted(services):
        consumer = mesh.consumer_routes(namespace, service)
        producer = mesh.producer_routes(service)
        entries.append(
            _Outbound(
                service=service,
                applied=consumer or producer,
                consumer=bool(consumer),
                overridden=producer if consumer else (),
            )
        )
    return entries


def _policy_scope(policy: AuthorizationPolicy, root_namespace: str) -> str:
    if policy.namespace_wide:
        return "mesh" if policy.namespace == root_namespace else "namespace"
    return "selector" if policy.selector is not None else "targetRefs"


def _authorization(policies: WorkloadPolicies, root_namespace: str) -> Document:
    def entries(found: Iterable[AuthorizationPolicy]) -> list[Document]:
        return [
            {
                "ref": str(p.ref),
                "scope": _policy_scope(p, root_namespace),
                "rules": len(p.rules),
                "rejected": p.rejected,
            }
            for p in found
        ]

    # Plaintext passes no Envoy: where the policies could not admit it, the node refuses it like STRICT.
    plaintext = authorize_plaintext(policies)
    return {
        "deny": entries(policies.deny),
        "allow": entries(policies.allow),
        "audit": entries(policies.audit),
        "default_deny": policies.default_deny,
        "plaintext": {
            "refused": plaintext.refused,
            "ports": [{"port": port, "refused": refused} for port, refused in plaintext.ports],
        },
    }


def _decision(decision: MtlsDecision) -> Document:
    return {
        "mode": decision.mode.value,
        "level": decision.level.value,
        "policy": str(decision.policy) if decision.policy is not None else None,
    }


def _workload_ports(
    mesh: MeshSnapshot, workload: Workload, services: Iterable[Service], slices: Iterable[EndpointSlice]
) -> list[int]:
    """The pod's ports the mesh knows of: numeric target ports of its Services, the ports of the
    EndpointSlices naming it, and ports its PeerAuthentications set a mode for."""
    ports: set[int] = set()
    for service in services:
        ports.update(p.target_port for p in service.ports if isinstance(p.target_port, int))
    for endpoint_slice in slices:
        ports.update(p.port for p in endpoint_slice.ports if p.port is not None)
    for policy in mesh.peer_authentications_in(workload.namespace):
        if policy.selector is not None and matches_selector(policy.selector, workload.labels):
            ports.update(port for port, mode in policy.port_modes.items() if mode is not MtlsMode.UNSET)
    return sorted(ports)


def describe_pod(
    mesh: MeshSnapshot,
    namespace: str,
    name: str,
    *,
    trust_domain: str = "cluster.local",
    root_namespace: str = ROOT_NAMESPACE,
    diagnostics: Iterable[Diagnostic] = (),
) -> Document | None:
    """The pod `namespace/name` as the mesh sees it; None when the model has no such pod."""
    workload = mesh.workloads.get(ObjectRef(kind=Kind.POD, namespace=namespace, name=name))
    if workload is None:
        return None
    meshed, reasons = membership(mesh, workload)
    node = mesh.node(workload.node) if workload.node else None

    slices = _slices_with(mesh, workload)
    by_selector = _selected_by_selector(mesh, workload)
    via: dict[ObjectRef, list[str]] = {s.ref: ["selector"] for s in by_selector}
    slices_of: dict[ObjectRef, list[EndpointSlice]] = {}
    for endpoint_slice in slices:
        if (service_ref := endpoint_slice.service_ref) is None:
            continue
        slices_of.setdefault(service_ref, []).append(endpoint_slice)
        if "endpoints" not in via.setdefault(service_ref, []):
            via[service_ref].append("endpoints")
    service_refs = sorted(via)
    services = [s for ref in service_refs if (s := mesh.services.get(ref)) is not None]

    outbound = _outbound_routes(mesh, workload.namespace)
    inbound = {ref: routes for ref in service_refs if (routes := mesh.routes_with_backend(ref))}
    traffic_policies = {ref: policies for ref in service_refs if (policies := mesh.traffic_policies_for(ref))}
    authorization = policies_for(mesh, workload, root_namespace=root_namespace)
    workload_mtls = effective_mtls(mesh, workload, None, root_namespace=root_namespace)
    port_mtls = {
        port: effective_mtls(mesh, workload, port, root_namespace=root_namespace)
        for port in _workload_ports(mesh, workload, services, slices)
    }

    # Every object this description names: the diagnostics about any of them are shown with it.
    related: set[ObjectRef] = {workload.ref, ObjectRef(kind=Kind.NAMESPACE, name=workload.namespace)}
    if workload.node:
        related.add(ObjectRef(kind=Kind.NODE, name=workload.node))
    related.update(service_refs)
    related.update(s.ref for s in slices)
    for entry in outbound:
        related.update(r.ref for r in (*entry.applied, *entry.overridden))
    related.update(r.ref for routes in inbound.values() for r in routes)
    related.update(p.ref for policies in traffic_policies.values() for p in policies)
    related.update(p.ref for p in (*authorization.deny, *authorization.allow, *authorization.audit))
    related.update(d.policy for d in (workload_mtls, *port_mtls.values()) if d.policy is not None)
    relevant = sorted((d for d in diagnostics if d.ref in related), key=Diagnostic.sort_key)

    return {
        "pod": {
            "ref": str(workload.ref),
            "namespace": workload.namespace,
            "name": workload.name,
            "uid": workload.uid,
            "node": workload.node,
            "ips": list(workload.ips),
            "service_account": workload.service_account,
            "phase": workload.phase.value,
            "ready": workload.ready,
            "terminating": workload.terminating,
            "labels": dict(sorted(workload.labels.items())),
        },
        "mesh": {"meshed": meshed, "reasons": list(reasons)},
        "identity": _spiffe_id(trust_domain, workload),
        "node": (
            {
                "name": workload.node,
                "known": node is not None,
                "internal_ip": node.internal_ip if node else "",
            }
            if workload.node
            else None
        ),
        "services": [
            _service_document(mesh.services.get(ref), ref, via[ref], slices_of.get(ref, []))
            for ref in service_refs
        ],
        "routes": {
            "outbound": [entry.to_document() for entry in outbound],
            "inbound": [
                {"service": str(ref), "routes": [str(r.ref) for r in routes]}
                for ref, routes in inbound.items()
            ],
        },
        "traffic_policies": [
            {"service": str(ref), "policies": [str(p.ref) for p in policies]}
            for ref, policies in traffic_policies.items()
        ],
        "authorization": _authorization(authorization, root_namespace),
        "mtls": {
            "workload": _decision(workload_mtls),
            "ports": [{"port": port, **_decision(d)} for port, d in port_mtls.items()],
        },
        "diagnostics": [d.to_document() for d in relevant],
    }
