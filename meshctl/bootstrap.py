"""Envoy v3 bootstrap for a node's Envoy: ADS at the control plane, node identity, admin on loopback.

`build_bootstrap` is pure: it returns the bootstrap as a plain dict in Envoy's JSON form, so callers print it
as YAML or JSON, and tests (or `envoy --mode validate`) check it without I/O.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import yaml
from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2
from google.protobuf import json_format

from controlplane.ca.sdsnames import DEFAULT_SOCKET_PATH, sds_cluster

XDS_CLUSTER_NAME = "nodemesh-xds"
# With a stats port: the listener serving /stats/prometheus and the cluster of the admin interface behind it.
STATS_LISTENER_NAME = "nodemesh-prometheus"
ADMIN_CLUSTER_NAME = "nodemesh-admin"
DEFAULT_CONTROLPLANE = "127.0.0.1:15010"
# The node cluster tells a node's Envoy from its agent (cluster "nodemesh-agent") on the control plane's side
# (CSDS, `meshctl proxy-status`); the kind is also in the metadata, which a custom --cluster does not change.
DEFAULT_ENVOY_CLUSTER = "nodemesh-envoy"
KIND_METADATA_KEY = "nodemesh.io/kind"
UNIX_PREFIX = "unix:"
INTERNAL_LISTENER_EXTENSION = "envoy.bootstrap.internal_listener"
_INTERNAL_LISTENER_TYPE = internal_listener_pb2.InternalListener.DESCRIPTOR.full_name
_HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER_TYPE = "envoy.extensions.filters.http.router.v3.Router"


class BootstrapError(ValueError):
    """Bad input for a bootstrap (an unparsable control-plane address, a bad port)."""


class OutputFormat(StrEnum):
    YAML = "yaml"
    JSON = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlaneAddress:
    """Where Envoy reaches the control plane's ADS: `host:port`, `[v6]:port` or `unix:PATH`."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> ControlPlaneAddress:
        text = text.strip()
        if text.startswith(UNIX_PREFIX):
            path = text.removeprefix(UNIX_PREFIX)
            if not path:
                raise BootstrapError(f"control-plane address {text!r}: unix: needs a socket path")
            return cls(path=path)
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text:
            raise BootstrapError(f"control-plane address {text!r}: expected host:port or unix:PATH")
        host = host.removeprefix("[").removesuffix("]")
        try:
            port = int(port_text)
        except ValueError as exc:
            msg = f"control-plane address {text!r}: port {port_text!r} is not a number"
            raise BootstrapError(msg) from exc
        if not 0 < port < 65536:
            raise BootstrapError(f"control-plane address {text!r}: port {port} out of range 1-65535")
        return cls(host=host, port=port)

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        if self.is_unix:
            return f"{UNIX_PREFIX}{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _xds_cluster(controlplane: ControlPlaneAddress) -> dict[str, Any]:
    if controlplane.is_unix:
        address: dict[str, Any] = {"pipe": {"path": controlplane.path}}
        discovery = "STATIC"
    else:
        address = _socket_address(controlplane.host, controlplane.port)
        # A DNS name (a Kubernetes Service) is re-resolved so Envoy follows control-plane replicas.
        discovery = "STATIC" if controlplane.is_ip else "STRICT_DNS"
    return {
        "name": XDS_CLUSTER_NAME,
        "type": discovery,
        "connect_timeout": "1s",
        # gRPC needs HTTP/2; keepalive pings detect a dead control plane faster than TCP does.
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"},
                    }
                },
            }
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER_NAME,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _sds_cluster(socket_path: str) -> dict[str, Any]:
    # Through JSON: plain dicts (no OrderedDict), so the YAML dump stays plain.
    as_dict = json_format.MessageToDict(sds_cluster(socket_path), preserving_proto_field_name=True)
    result: dict[str, Any] = json.loads(json.dumps(as_dict))
    return result


def _stats_resources(stats_port: int, admin_address: str, admin_port: int) -> tuple[dict[str, Any], ...]:
    """A listener on every address serving only GET /stats/prometheus, proxied to the admin interface (which
    stays on loopback: the rest of it can change Envoy's state)."""
    only_stats = {
        "match": {
            "path": "/stats/prometheus",
            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
        },
        "route": {"cluster": ADMIN_CLUSTER_NAME},
    }
    hcm = {
        "@type": f"type.googleapis.com/{_HCM_TYPE}",
        "stat_prefix": STATS_LISTENER_NAME,
        "route_config": {"virtual_hosts": [{"name": "stats", "domains": ["*"], "routes": [only_stats]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"type.googleapis.com/{_ROUTER_TYPE}"},
            }
        ],
    }
    listener = {
        "name": STATS_LISTENER_NAME,
        "address": _socket_address("0.0.0.0", stats_port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
    admin_endpoint = {"endpoint": {"address": _socket_address(admin_address, admin_port)}}
    admin = {
        "name": ADMIN_CLUSTER_NAME,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER_NAME,
            "endpoints": [{"lb_endpoints": [admin_endpoint]}],
        },
    }
    return listener, admin


# Envoy 1.40 turns a user-space (internal listener) close into a reset its peer reads as ECONNRESET, and
# tcp_proxy then aborts the downstream, dropping the bytes still to write: an HTTP/1 `Connection: close`
# answered behind `outbound_services` would reach the client as a reset. Internal connections close the
# way they did before (end of stream after the data); real sockets are unaffected.
RUNTIME: Final[Mapping[str, object]] = MappingProxyType(
    {"envoy.reloadable_features.enable_send_rst_on_user_space_socket": False}
)


def layered_runtime() -> dict[str, Any]:
    """The bootstrap's runtime: `RUNTIME` as a static layer, and the admin layer (`/runtime_modify`)."""
    return {
        "layers": [
            {"name": "nodemesh", "static_layer": dict(RUNTIME)},
            {"name": "admin", "admin_layer": {}},
        ]
    }


def build_bootstrap(
    *,
    node: str,
    controlplane: ControlPlaneAddress,
    delta: bool = False,
    admin_address: str = "127.0.0.1",
    admin_port: int = 15000,
    cluster: str = DEFAULT_ENVOY_CLUSTER,
    metadata: dict[str, str] | None = None,
    sds_socket: str = DEFAULT_SOCKET_PATH,
    stats_port: int | None = None,
) -> dict[str, Any]:
    """The Envoy v3 bootstrap for the Envoy of node `node`, as Envoy's JSON form in a dict. Workload
    certificates come from the node agent's SDS on `sds_socket`. With `stats_port`, Prometheus scrapes
    Envoy's stats at `:stats_port/stats/prometheus` (the admin interface itself stays on its address)."""
    if not node:
        raise BootstrapError("node name must not be empty")
    if not 0 <= admin_port < 65536:
        raise BootstrapError(f"admin port {admin_port} out of range 0-65535")
    if stats_port is not None:
        if not 0 < stats_port < 65536:
            raise BootstrapError(f"stats port {stats_port} out of range 1-65535")
        if admin_port == 0:
            raise BootstrapError("a stats port needs a fixed admin port (the stats are proxied to it)")
        if stats_port == admin_port:
            raise BootstrapError(f"stats port {stats_port} is the admin port")
    node_metadata = {
        "nodemesh.io/node": node,
        "nodemesh.io/xds-variant": "delta" if delta else "sotw",
        KIND_METADATA_KEY: "envoy",
    }
    node_metadata.update(metadata or {})
    bootstrap: dict[str, Any] = {
        "node": {"id": node, "cluster": cluster, "metadata": node_metadata},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER_NAME}}],
                "set_node_on_first_message_only": True,
            },
            # Separate dicts, so the YAML dump has no anchors/aliases that confuse readers.
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        # HBONE: Service endpoints of meshed pods are internal addresses (controlplane.translate.hbone).
        "bootstrap_extensions": [
            {
                "name": INTERNAL_LISTENER_EXTENSION,
                "typed_config": {"@type": f"type.googleapis.com/{_INTERNAL_LISTENER_TYPE}"},
            }
        ],
        "static_resources": {
            "clusters": [
                _xds_cluster(controlplane),
                _sds_cluster(sds_socket),
            ]
        },
        "admin": {"address": _socket_address(admin_address, admin_port)},
        "layered_runtime": layered_runtime(),
    }
    if stats_port is not None:
        listener, admin = _stats_resources(stats_port, admin_address, admin_port)
        bootstrap["static_resources"]["listeners"] = [listener]
        bootstrap["static_resources"]["clusters"].append(admin)
    return bootstrap


def render(bootstrap: dict[str, Any], output: OutputFormat) -> str:
    """The bootstrap as text Envoy reads (`-c file.yaml` or `.json`)."""
    if output is OutputFormat.JSON:
        return json.dumps(bootstrap, indent=2) + "\n"
    return yaml.safe_dump(bootstrap, sort_keys=False)
