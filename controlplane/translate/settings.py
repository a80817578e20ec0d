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
        if self.max_connection_age.nanoseconds <= 0:
            raise ValueError("max_connection_age must be positive: pooled connections outlive certificates")
