"""Every name translation gives an Envoy resource, filter chain or plan resource, in one place.

Names are stable functions of the objects they come from, so an unchanged object keeps its name (and, the
bytes being equal, its version) across pushes.
"""

from __future__ import annotations

from typing import Final

from controlplane.model.refs import ObjectRef

OUTBOUND_LISTENER: Final = "outbound"
# The internal listener (and the cluster into it) with every Service port's chain: the same on all nodes.
OUTBOUND_SERVICES: Final = "outbound_services"


# The internal listeners (and clusters into them) that tunnel connections to meshed pods' own IPs:
# by the pod's identity, then by its node (controlplane.translate.pods).
OUTBOUND_PODS: Final = "outbound_pods"
OUTBOUND_POD_NODES: Final = "outbound_pod_nodes"


def pods_identity_chain(namespace: str, service_account: str) -> str:
    return f"pods|{namespace}/{service_account}"


def pods_node_chain(node_ip: str, hbone_port: int) -> str:
    return f"pods|{node_ip}:{hbone_port}"


def outbound_consumer(namespace: str) -> str:
    """The internal listener (and cluster into it) with one consumer namespace's consumer-route chains."""
    return f"outbound_consumer|{namespace}"


# ORIGINAL_DST cluster (and filter chain) for destinations that are no Service ClusterIP:port.
PASSTHROUGH: Final = "passthrough"
# Never defined: a weighted-cluster share pointing here is answered with 500 (the Gateway API's rule for
# an invalid backendRef), through the route's `cluster_not_found_response_code`.
INVALID_BACKEND: Final = "invalid-backend"
NODE_SETTINGS: Final = "node"
DEFAULT_VIRTUAL_HOST: Final = "mesh"

# Envoy filter names (also the keys of typed_per_filter_config).
FAULT_FILTER: Final = "envoy.filters.http.fault"
ROUTER_FILTER: Final = "envoy.filters.http.router"
HCM_FILTER: Final = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER: Final = "envoy.filters.network.tcp_proxy"
ORIGINAL_DST_FILTER: Final = "envoy.filters.listener.original_dst"
HTTP_PROTOCOL_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def service_port(namespace: str, name: str, port: int) -> str:
    """`ns/name:port`: the EDS cluster, its ClusterLoadAssignment, the producer route config and the
    filter chain of one Service port share it."""
    return f"{namespace}/{name}:{port}"


def service_port_of(ref: ObjectRef, port: int) -> str:
    return service_port(ref.namespace, ref.name, port)


def cluster(namespace: str, name: str, port: int) -> str:
    return service_port(namespace, name, port)


def route_config(namespace: str, name: str, port: int, consumer_namespace: str | None = None) -> str:
    """Producer routes: `ns/name:port`; consumer routes of namespace C: `ns/name:port@C`."""
    base = service_port(namespace, name, port)
    return base if consumer_namespace is None else f"{base}@{consumer_namespace}"


def filter_chain(namespace: str, name: str, port: int, consumer_namespace: str | None = None) -> str:
    return route_config(namespace, name, port, consumer_namespace)


def service_vip(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


DEFAULT_ROUTE: Final = "default"
NOT_FOUND_ROUTE: Final = "no-matching-rule"


def route_entry(route: ObjectRef, rule: int, match: int) -> str:
    """One Envoy route inside a route configuration: which HTTPRoute/GRPCRoute rule and match it came from."""
    return f"{route.kind}/{route.namespace}/{route.name}/rule/{rule}/match/{match}"


# -- HBONE (controlplane.translate.hbone) -----------------------------------------------------------------

HBONE_ORIGINATE_LISTENER: Final = "hbone_originate"
HBONE_INBOUND_LISTENER: Final = "hbone_inbound"
# Internal listeners (and the clusters that lead to them) behind the inbound tunnel.
INBOUND_HTTP: Final = "inbound_http"
INBOUND_TCP: Final = "inbound_tcp"
# ORIGINAL_DST: from the pod listeners to the local pod the CONNECT authority named.
INBOUND_POD: Final = "inbound_pod"
SNI_SUFFIX: Final = "hbone.nodemesh"
SET_FILTER_STATE_NETWORK: Final = "envoy.filters.network.set_filter_state"
SET_FILTER_STATE_HTTP: Final = "envoy.filters.http.set_filter_state"
TLS_INSPECTOR_FILTER: Final = "envoy.filters.listener.tls_inspector"
RBAC_HTTP_FILTER: Final = "envoy.filters.http.rbac"
RBAC_NETWORK_FILTER: Final = "envoy.filters.network.rbac"
# The two RBAC filters (DENY, then ALLOW) on 15008's CONNECTs; their rules are per pod (virtual host).
CONNECT_RBAC_DENY: Final = "nodemesh.connect.rbac.deny"
CONNECT_RBAC_ALLOW: Final = "nodemesh.connect.rbac.allow"
INTERNAL_LISTENER_EXTENSION: Final = "envoy.bootstrap.internal_listener"


def hbone_cluster(namespace: str, service_account: str) -> str:
    """The originate cluster (and chain) of one local identity: its HBONE connections."""
    return f"hbone|{namespace}|{service_account}"


def inbound_chain(namespace: str, service_account: str) -> str:
    return f"inbound|{namespace}|{service_account}"


def inbound_pod_chain(ip: str) -> str:
    return f"inbound|{ip}"


def stat_prefix(name: str) -> str:
    """Envoy splits stat names on "." and treats ":" specially in tags; keep them readable but inert."""
    return name.replace("/", "_").replace(":", "_").replace("@", "_from_").replace("|", "_").replace(".", "_")
