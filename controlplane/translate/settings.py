"""What translation is told rather than what it reads from the mesh: ports, trust domain, defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controlplane.model.duration import Duration

_TEN_SECONDS: Final = Duration.of(seconds=10)
_DISABLED: Final = Duration(nanoseconds=0)
_TEN_MINUTES: Final = Duration.of(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslateSettings:
    trust_domain: str = "cluster.local"
    # Whose policies without a selector apply mesh-wide (AuthorizationPolicy, PeerAuthentication).
    root_namespace: str = "nodemesh-system"
    outbound_port: int = 15001
    # The outbound listener takes this many consecutive ports from outbound_port, and the node agent spreads
    # redirected connections over them by original destination: each port is an ephemeral port space of its
    # own for a pod's connections, which would otherwise all share one (the TIME_WAIT sockets of every
    # destination a pod dials: ~470 new connections a second exhaust one space). Four keeps 15001-15004 clear
    # of Istio's other ports (15006 inbound, 15008 HBONE).
    outbound_ports: int = 4
    hbone_port: int = 15008
    # Where the outbound listener binds on a node that reports no InternalIP yet (every address).
    fallback_envoy_address: str = "0.0.0.0"
    # Upstream connect timeout when no TrafficPolicy sets one.
    connect_timeout: Duration = _TEN_SECONDS
    # Route timeout when neither the route nor a TrafficPolicy sets one; zero disables it (long streams,
    # gRPC streaming), as Istio does.
    route_timeout: Duration = _DISABLED
    # How long an upstream connection takes new streams before it drains (open streams run on): an HBONE
    # connection (TLS with the workload certificate current when it opened) and a pooled HTTP connection to
    # a Service (which may hold a tunnel over one). So a renewed certificate carries every new request within
    # twice this: keep it under a fifth of the certificate lifetime, and no request rides an expired one.
    max_connection_age: Duration = _TEN_MINUTES

    def __post_init__(self) -> None:
        if not 1 <= self.outbound_ports <= 64 or self.outbound_port + self.outbound_ports - 1 > 65535:
            raise ValueError("outbound_ports must be 1 to 64 ports, all at most 65535 (the agent's limit)")
        if self.outbound_port <= self.hbone_port < self.outbound_port + self.outbound_ports:
            raise ValueError(f"the outbound ports from {self.outbound_port} include the HBONE port")
        if self.max_connection_age.nanoseconds <= 0:
            raise ValueError("max_connection_age must be positive: pooled connections outlive certificates")
