"""Object references: which Kubernetes object a model value, event or diagnostic is about."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The kinds the mesh model understands; a Workload's reference names its Pod."""

    NAMESPACE = "Namespace"
    NODE = "Node"
    POD = "Pod"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    HTTP_ROUTE = "HTTPRoute"
    GRPC_ROUTE = "GRPCRoute"
    TRAFFIC_POLICY = "TrafficPolicy"
    AUTHORIZATION_POLICY = "AuthorizationPolicy"
    PEER_AUTHENTICATION = "PeerAuthentication"


CLUSTER_SCOPED = frozenset({Kind.NAMESPACE, Kind.NODE})


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class ObjectRef:
    """`kind/namespace/name`; cluster-scoped objects have an empty namespace and print as `kind/name`.

    `kind` is a plain string so diagnostics can name kinds the model does not know; the model's own
    objects always use a `Kind` value (a StrEnum, so both compare and hash alike).
    """

    kind: str
    namespace: str = ""
    name: str

    def __str__(self) -> str:
        if not self.namespace:
            return f"{self.kind}/{self.name}"
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        """Inverse of `str()`: `kind/namespace/name` or `kind/name`."""
        parts = text.split("/")
        if len(parts) == 3 and all(parts):
            return cls(kind=parts[0], namespace=parts[1], name=parts[2])
        if len(parts) == 2 and all(parts):
            return cls(kind=parts[0], name=parts[1])
        raise ValueError(f"not an object reference (kind/namespace/name): {text!r}")

    @classmethod
    def service(cls, namespace: str, name: str) -> ObjectRef:
        return cls(kind=Kind.SERVICE, namespace=namespace, name=name)
