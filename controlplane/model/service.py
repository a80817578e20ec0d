"""Services: virtual IPs and ports, and what application protocol each port speaks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlplane.model.frozenmap import EMPTY_LABELS, Labels
from controlplane.model.refs import Kind, ObjectRef


class Protocol(StrEnum):
    """L4 protocol of a port (Kubernetes' `protocol`)."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class L7Protocol(StrEnum):
    """How the node Envoy proxies a Service port."""

    HTTP = "HTTP"  # HTTP/1.1 (and upgrades)
    H2C = "H2C"  # HTTP/2 cleartext with prior knowledge
    GRPC = "GRPC"  # gRPC: HTTP/2 cleartext, routed by GRPCRoute
    TCP = "TCP"  # opaque bytes


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


# appProtocol values (lower-cased) and what they mean; anything else is opaque TCP (https, tls, ws...).
_APP_PROTOCOLS: dict[str, L7Protocol] = {
    "http": L7Protocol.HTTP,
    "grpc-web": L7Protocol.HTTP,
    "h2c": L7Protocol.H2C,
    "http2": L7Protocol.H2C,
    "kubernetes.io/h2c": L7Protocol.H2C,
    "grpc": L7Protocol.GRPC,
}
# Port-name convention `<protocol>[-<suffix>]` (Istio's): only the first dash-separated token counts, so
# `https-api` stays opaque TLS rather than being taken for `http`.
_NAME_PROTOCOLS: dict[str, L7Protocol] = {
    "http": L7Protocol.HTTP,
    "http2": L7Protocol.H2C,
    "h2c": L7Protocol.H2C,
    "grpc": L7Protocol.GRPC,
}


def l7_protocol_of(*, name: str, app_protocol: str | None, protocol: Protocol = Protocol.TCP) -> L7Protocol:
    """appProtocol wins when set; otherwise the port name's prefix; otherwise TCP."""
    if protocol is not Protocol.TCP:
        return L7Protocol.TCP
    if app_protocol:
        return _APP_PROTOCOLS.get(app_protocol.lower(), L7Protocol.TCP)
    lowered = name.lower()
    if lowered.startswith("grpc-web"):
        return L7Protocol.HTTP
    return _NAME_PROTOCOLS.get(lowered.split("-", 1)[0], L7Protocol.TCP)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    name: str = ""
    port: int
    # A container port number, or the name of a container port (resolved per pod by EndpointSlices).
    target_port: int | str
    protocol: Protocol = Protocol.TCP
    app_protocol: str | None = None

    @property
    def l7_protocol(self) -> L7Protocol:
        return l7_protocol_of(name=self.name, app_protocol=self.app_protocol, protocol=self.protocol)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    namespace: str
    name: str
    type: ServiceType = ServiceType.CLUSTER_IP
    # Normalized virtual IPs (spec.clusterIPs); empty for headless and ExternalName services.
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    # None: the Service has no selector (endpoints are managed by hand); an empty map selects nothing here.
    selector: Labels | None = None
    labels: Labels = EMPTY_LABELS
    external_name: str = ""

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.SERVICE, namespace=self.namespace, name=self.name)

    @property
    def headless(self) -> bool:
        return not self.cluster_ips

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    def port_named(self, name: str) -> ServicePort | None:
        return next((p for p in self.ports if p.name == name), None)

    @property
    def hostnames(self) -> tuple[str, ...]:
        """DNS names clients may use for it (Host headers Envoy should accept)."""
        base = f"{self.name}.{self.namespace}"
        return (self.name, base, f"{base}.svc", f"{base}.svc.cluster.local")
