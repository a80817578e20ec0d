"""Every resource type URL the transport serves, in one place, and the message class behind each."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from controlplane.xds.errors import UnknownTypeUrlError
from protos.nodemesh.v1alpha1 import plan_pb2

_PREFIX = "type.googleapis.com/"

LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
WORKLOAD = _PREFIX + "nodemesh.v1alpha1.Workload"
SERVICE_VIP = _PREFIX + "nodemesh.v1alpha1.ServiceVip"
NODE_SETTINGS = _PREFIX + "nodemesh.v1alpha1.NodeSettings"

# The order resources go out on one ADS stream: clusters before the endpoints that warm them, listeners before
# the routes they name (the xDS spec's "eventual consistency considerations").
PUSH_ORDER: tuple[str, ...] = (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    NODE_SETTINGS,
    SERVICE_VIP,
    WORKLOAD,
)

# Types whose first request with no names means "everything for this node".
WILDCARD_TYPES: frozenset[str] = frozenset({LISTENER, CLUSTER, WORKLOAD, SERVICE_VIP, NODE_SETTINGS})

_CLASSES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    SECRET: secret_pb2.Secret,
    WORKLOAD: plan_pb2.Workload,
    SERVICE_VIP: plan_pb2.ServiceVip,
    NODE_SETTINGS: plan_pb2.NodeSettings,
}

KNOWN_TYPES: frozenset[str] = frozenset(_CLASSES)

# Short, closed labels for logs and metrics.
SHORT_NAMES: dict[str, str] = {
    LISTENER: "lds",
    ROUTE: "rds",
    CLUSTER: "cds",
    ENDPOINT: "eds",
    SECRET: "sds",
    WORKLOAD: "workload",
    SERVICE_VIP: "service_vip",
    NODE_SETTINGS: "node_settings",
}

# Kept for callers that prefer the shorter name.
UnknownTypeUrl = UnknownTypeUrlError


def message_class(type_url: str) -> type[Message]:
    """The protobuf class of a type URL's resources; raises UnknownTypeUrlError for a type we do not serve."""
    try:
        return _CLASSES[type_url]
    except KeyError:
        raise UnknownTypeUrlError(type_url) from None


def type_url_of(message: Message) -> str:
    return _PREFIX + message.DESCRIPTOR.full_name


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, "unknown")
