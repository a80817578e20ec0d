"""The node's plan as frozen values parsed from the received xDS resources, and the maps' state it implies.

Parsing checks everything the agent relies on, so a bad plan is refused as a whole (a NACK with the reason)
and the last good plan stays applied. `desired_state` is pure: which pods are meshed is the plan's business,
their netns cookies the caller's (learned from the kernel).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import MappingProxyType
from typing import Final, Protocol

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from controlplane.ca.identity import SpiffeId
from controlplane.xds import typeurls
from nodeagent.datapath import (
    MAX_OUTBOUND_PORTS,
    DatapathError,
    DesiredState,
    EnvoyTarget,
    Exclusions,
    InboundKey,
    InboundMode,
    NetnsError,
    PodSettings,
    ServicePort,
    netns_path,
)
from nodeagent.errors import PlanError
from protos.nodemesh.v1alpha1 import plan_pb2

PLAN_TYPES: Final[tuple[str, ...]] = (typeurls.NODE_SETTINGS, typeurls.SERVICE_VIP, typeurls.WORKLOAD)
NODE_SETTINGS_NAME: Final = "node"
DEFAULT_OUTBOUND_PORT: Final = 15001
DEFAULT_HBONE_PORT: Final = 15008


class ResourceView(Protocol):
    """One received resource, as the xDS client holds it."""

    @property
    def version(self) -> str: ...

    @property
    def resource(self) -> any_pb2.Any: ...


PlanResources = Mapping[str, Mapping[str, ResourceView]]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsRef:
    """Where a pod's network namespace is: a netns file, a process inside it, or (neither given by the
    control plane) the pod's UID, resolved on the node (nodeagent.podnetns)."""

    path: str | None = None
    pid: int | None = None
    pod_uid: str | None = None

    def netns_file(self) -> Path:
        """The netns file of an explicit reference; NetnsError for one by pod UID (the caller resolves)."""
        if self.pod_uid is not None:
            raise NetnsError(f"{self}: to be resolved on the node")
        return netns_path(path=self.path, pid=self.pid)

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        return f"pid:{self.pid}" if self.pid is not None else f"uid:{self.pod_uid}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadPlan:
    uid: str
    namespace: str
    name: str
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    service_account: str
    # None: the workload carries no identity (its traffic is still redirected).
    spiffe_id: SpiffeId | None
    netns: NetnsRef
    exclude_ports: frozenset[int] = frozenset()
    # Inbound (PeerAuthentication): the workload's own mode, and the ports whose mode differs from it.
    mtls_mode: InboundMode = InboundMode.PERMISSIVE
    port_mtls: Mapping[int, InboundMode] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceVipPlan:
    namespace: str
    name: str
    ips: tuple[IPv4Address, ...]
    ports: frozenset[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePlan:
    envoy_address: IPv4Address | None
    outbound_port: int = DEFAULT_OUTBOUND_PORT
    # Consecutive ports from outbound_port the outbound listener takes.
    outbound_ports: int = 1
    hbone_port: int = DEFAULT_HBONE_PORT
    exclude_cidrs: frozenset[IPv4Network] = frozenset()
    exclude_ports: frozenset[int] = frozenset()
    strict_inbound: bool = False
    trust_domain: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything the control plane wants on this node. `version` digests the resource versions."""

    version: str
    node: NodePlan | None
    workloads: Mapping[str, WorkloadPlan] = field(default_factory=lambda: MappingProxyType({}))
    services: Mapping[str, ServiceVipPlan] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def spiffe_ids(self) -> frozenset[SpiffeId]:
        """The identities with a pod on this node: what the identity manager keeps certificates for."""
        return frozenset(w.spiffe_id for w in self.workloads.values() if w.spiffe_id is not None)


EMPTY_PLAN: Final = Plan(version="", node=None)


def _port(value: int, what: str) -> int:
    if not 0 < value < 65536:
        raise PlanError(f"{what}: port {value} out of range")
    return int(value)


def _outbound_ports(value: int, first: int, what: str) -> int:
    """How many outbound ports; 0 (an older control plane) means one."""
    count = max(1, int(value))
    if count > MAX_OUTBOUND_PORTS or (first or DEFAULT_OUTBOUND_PORT) + count - 1 > 65535:
        raise PlanError(f"{what}: {count} outbound ports from {first} (1 to {MAX_OUTBOUND_PORTS}, to 65535)")
    return count


def _ipv4(text: str, what: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError as exc:
        raise PlanError(f"{what}: not an IPv4 address: {text!r}") from exc


def _unpack(
    type_url: str, name: str, view: ResourceView
) -> plan_pb2.Workload | plan_pb2.ServiceVip | plan_pb2.NodeSettings:
    packed = view.resource
    if packed.type_url != type_url:
        raise PlanError(f"resource {name!r} has type {packed.type_url!r}, expected {type_url!r}")
    message_class = typeurls.message_class(type_url)
    try:
        message = message_class.FromString(packed.value)
    except DecodeError as exc:
        raise PlanError(f"{typeurls.short_name(type_url)} {name!r} does not decode: {exc}") from exc
    assert isinstance(message, plan_pb2.Workload | plan_pb2.ServiceVip | plan_pb2.NodeSettings)
    return message


_MTLS_MODES: Final[Mapping[int, InboundMode]] = {
    plan_pb2.MTLS_MODE_UNSPECIFIED: InboundMode.PERMISSIVE,
    plan_pb2.MTLS_MODE_PERMISSIVE: InboundMode.PERMISSIVE,
    plan_pb2.MTLS_MODE_STRICT: InboundMode.STRICT,
}


def _mtls_mode(value: int, what: str) -> InboundMode:
    mode = _MTLS_MODES.get(value)
    if mode is None:
        # An unknown (newer) mode: refuse the plan rather than guess which way to fail.
        raise PlanError(f"{what}: unknown mTLS mode {value}")
    return mode


def parse_workload(name: str, message: plan_pb2.Workload) -> WorkloadPlan:
    what = f"workload {name!r}"
    if message.uid and message.uid != name:
        raise PlanError(f"{what}: uid {message.uid!r} differs from the resource name")
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in message.ips:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError as exc:
            raise PlanError(f"{what}: not an IP address: {text!r}") from exc
    which = message.netns.WhichOneof("ref") if message.HasField("netns") else None
    if which is None:
        # The usual case: the control plane cannot know where the sandbox is; the agent finds it by UID.
        netns = NetnsRef(pod_uid=name)
    elif which == "path" and message.netns.path.startswith("/"):
        netns = NetnsRef(path=message.netns.path)
    elif which == "pid" and message.netns.pid > 0:
        netns = NetnsRef(pid=message.netns.pid)
    else:
        raise PlanError(f"{what}: needs a netns reference (an absolute path or a pid > 0), or none")
    spiffe_id: SpiffeId | None = None
    if message.spiffe_id:
        try:
            spiffe_id = SpiffeId.parse(message.spiffe_id)
        except ValueError as exc:
            raise PlanError(f"{what}: {exc}") from exc
    exclude_ports = frozenset(_port(int(p), what) for p in message.exclude_ports)
    try:
        PodSettings(exclude_ports=exclude_ports)
    except DatapathError as exc:
        raise PlanError(f"{what}: {exc}") from exc
    port_mtls = {
        _port(int(port), what): _mtls_mode(value, f"{what} port {port}")
        for port, value in sorted(message.port_mtls.items())
    }
    return WorkloadPlan(
        uid=name,
        namespace=message.namespace,
        name=message.name,
        ips=tuple(ips),
        service_account=message.service_account,
        spiffe_id=spiffe_id,
        netns=netns,
        exclude_ports=exclude_ports,
        mtls_mode=_mtls_mode(message.mtls_mode, what),
        port_mtls=MappingProxyType(port_mtls),
    )


def parse_service(name: str, message: plan_pb2.ServiceVip) -> ServiceVipPlan:
    what = f"service {name!r}"
    # The redirect is IPv4 only (cgroup/connect4): IPv6 VIPs are valid but mean nothing to it.
    ips: list[IPv4Address] = []
    for text in message.ips:
        try:
            address = ipaddress.ip_address(text)
        except ValueError as exc:
            raise PlanError(f"{what}: not an IP address: {text!r}") from exc
        if isinstance(address, IPv4Address):
            ips.append(address)
    return ServiceVipPlan(
        namespace=message.namespace,
        name=message.name,
        ips=tuple(ips),
        ports=frozenset(_port(int(p), what) for p in message.ports),
    )


def parse_node(message: plan_pb2.NodeSettings) -> NodePlan:
    what = "node settings"
    address = _ipv4(message.envoy_address, f"{what} envoy_address") if message.envoy_address else None
    cidrs: set[IPv4Network] = set()
    for text in message.exclude_cidrs:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise PlanError(f"{what}: not a CIDR: {text!r}") from exc
        if isinstance(network, IPv4Network):
            cidrs.add(network)
    return NodePlan(
        envoy_address=address,
        outbound_port=_port(message.outbound_port, what) if message.outbound_port else DEFAULT_OUTBOUND_PORT,
        outbound_ports=_outbound_ports(message.outbound_ports, message.outbound_port, what),
        hbone_port=_port(message.hbone_port, what) if message.hbone_port else DEFAULT_HBONE_PORT,
        exclude_cidrs=frozenset(cidrs),
        exclude_ports=frozenset(_port(int(p), what) for p in message.exclude_ports),
        strict_inbound=message.strict_inbound,
        trust_domain=message.trust_domain,
    )


def plan_version(resources: PlanResources) -> str:
    digest = hashlib.sha256()
    for type_url in PLAN_TYPES:
        for name, view in sorted(resources.get(type_url, {}).items()):
            digest.update(f"{type_url}\0{name}\0{view.version}\n".encode())
    return digest.hexdigest()[:16]


def parse_plan(resources: PlanResources) -> Plan:
    """The plan the resources describe; PlanError names the first resource that cannot be used."""
    workloads: dict[str, WorkloadPlan] = {}
    for name, view in sorted(resources.get(typeurls.WORKLOAD, {}).items()):
        message = _unpack(typeurls.WORKLOAD, name, view)
        assert isinstance(message, plan_pb2.Workload)
        workloads[name] = parse_workload(name, message)
    services: dict[str, ServiceVipPlan] = {}
    for name, view in sorted(resources.get(typeurls.SERVICE_VIP, {}).items()):
        message = _unpack(typeurls.SERVICE_VIP, name, view)
        assert isinstance(message, plan_pb2.ServiceVip)
        services[name] = parse_service(name, message)
    node: NodePlan | None = None
    node_resources = resources.get(typeurls.NODE_SETTINGS, {})
    unexpected = sorted(set(node_resources) - {NODE_SETTINGS_NAME})
    if unexpected:
        raise PlanError(f"node settings must be one resource named {NODE_SETTINGS_NAME!r}, got {unexpected}")
    if NODE_SETTINGS_NAME in node_resources:
        message = _unpack(typeurls.NODE_SETTINGS, NODE_SETTINGS_NAME, node_resources[NODE_SETTINGS_NAME])
        assert isinstance(message, plan_pb2.NodeSettings)
        node = parse_node(message)
    return Plan(
        version=plan_version(resources),
        node=node,
        workloads=MappingProxyType(workloads),
        services=MappingProxyType(services),
    )


def desired_state(plan: Plan, cookies: Mapping[str, int]) -> DesiredState:
    """The maps' contents for `plan`, given the netns cookie of each workload (by uid) known so far.

    A workload without a cookie yet is left out (it is retried); workloads sharing a netns share one entry
    whose excluded ports are the union. No NodeSettings, or no Envoy address, turns redirection off.
    """
    node = plan.node
    target = (
        EnvoyTarget(
            addresses=(node.envoy_address,),
            outbound_port=node.outbound_port,
            outbound_ports=node.outbound_ports,
        )
        if node is not None and node.envoy_address is not None
        else None
    )
    excluded_by_cookie: dict[int, set[int]] = {}
    for uid, workload in sorted(plan.workloads.items()):
        cookie = cookies.get(uid)
        if cookie is not None:
            excluded_by_cookie.setdefault(cookie, set()).update(workload.exclude_ports)
    try:
        meshed = {
            cookie: PodSettings(exclude_ports=frozenset(ports))
            for cookie, ports in excluded_by_cookie.items()
        }
    except DatapathError as exc:
        raise PlanError(f"workloads sharing a network namespace: {exc}") from exc
    services = frozenset(
        ServicePort(ip=ip, port=port)
        for service in plan.services.values()
        for ip in service.ips
        for port in service.ports
    )
    exclusions = (
        Exclusions(ports=node.exclude_ports, cidrs=node.exclude_cidrs) if node is not None else Exclusions()
    )
    return DesiredState(
        target=target,
        meshed=meshed,
        exclusions=exclusions,
        services=services,
        inbound=inbound_policy(plan),
    )


def inbound_policy(plan: Plan) -> dict[InboundKey, InboundMode]:
    """The inbound policy map for `plan`: (pod IP, 0) -> STRICT for a STRICT workload, (pod IP, port) for each
    port whose mode differs from its workload's; nothing for what is PERMISSIVE anyway. The node's
    `strict_inbound` makes every workload STRICT on every port. Two workloads claiming one address and key
    with different modes get STRICT: a conflict fails closed."""
    strict_everywhere = plan.node is not None and plan.node.strict_inbound
    result: dict[InboundKey, InboundMode] = {}

    def put(key: InboundKey, mode: InboundMode) -> None:
        previous = result.get(key)
        result[key] = InboundMode.STRICT if previous not in (None, mode) else mode

    for _, workload in sorted(plan.workloads.items()):
        mode = InboundMode.STRICT if strict_everywhere else workload.mtls_mode
        for ip in workload.ips:
            if not isinstance(ip, IPv4Address):
                continue  # the inbound hook is IPv4 only, like the redirect
            if mode is InboundMode.STRICT:
                put(InboundKey(ip=ip), mode)
            if strict_everywhere:
                continue
            for port, port_mode in sorted(workload.port_mtls.items()):
                if port_mode is not mode:
                    put(InboundKey(ip=ip, port=port), port_mode)
    return result
