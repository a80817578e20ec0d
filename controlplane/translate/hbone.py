"""HBONE: HTTP/2 CONNECT over mTLS between node Envoys, and the Envoy resources that speak it.

Outbound (the source node):

    15001 chain (HTTP or TCP) -> Service cluster (EDS). A meshed endpoint is an internal address of listener
    `hbone_originate` carrying host metadata: `envoy.filters.listener.original_dst.local` = podIP:port (the
    CONNECT authority) and `nodemesh.hbone` {node: nodeIP:15008, sni, san} (where to tunnel, and whom to
    expect there). The outbound chain shares the client's IP (no port) with the internal connection as the
    hashable filter state `nodemesh.source_ip`, so in `hbone_originate`:
      original_dst listener filter: local = podIP:port
      filter_chain_matcher: `nodemesh.source_ip` -> the chain of that pod's identity (no match: closed)
      per identity: set SNI and the expected server SAN (filter state from the host metadata), then
      tcp_proxy tunneling_config (CONNECT podIP:port) to cluster `hbone|ns|sa`: ORIGINAL_DST on
      `nodemesh.hbone.node`, TLS with that identity's certificate (SDS), h2.
    So per node: O(services) Service clusters and EDS (shared by every node), plus one chain and one cluster
    per local identity. HBONE connections are pooled per originate cluster (the identity) and host (the
    destination node), split further only by the TLS options (the destination identity's SNI/SAN). An HTTP
    Service cluster pools its internal connections (each one tunnel) by the source IP: one client's
    connections share tunnels, two clients never do.

Certificate renewal: Envoy keeps using a pooled connection after its secret changes (only new handshakes
take the new certificate), so both pools retire connections after `max_connection_age` (they drain: open
streams run on) and a renewed certificate carries every new request within twice that.

Inbound (the destination node), `hbone_inbound` on nodeIP:15008:
    tls_inspector; filter_chain_matcher: SNI -> the chain of that local identity: TLS with its certificate,
    client certificate required and checked against ROOTCA; HCM (h2, CONNECT). The CONNECT authority must
    be a local meshed pod of that identity (virtual hosts `podIP:port` for its HTTP ports, `podIP:*` for the
    rest; anything else is 404: never an open relay). The peer's URI SAN and certificate hash and the
    authority go to filter state shared with the upstream. A TCP CONNECT is authorized right there (the
    pod's TCP rules, per virtual host: a denied caller gets 403 and the pod never sees a connection); the
    stream is handed to internal listener `inbound_http` (L7: HCM, XFCC, HTTP RBAC per request) or
    `inbound_tcp` (network RBAC again), both choosing the destination pod's chain by the restored
    destination IP, then on to the pod through ORIGINAL_DST cluster `inbound_pod`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    health_check_pb2,
    protocol_pb2,
    substitution_format_string_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2 as http_sfs_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.set_filter_state.v3 import set_filter_state_pb2 as net_sfs_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.matching.common_inputs.network.v3 import network_inputs_pb2
from envoy.extensions.transport_sockets.internal_upstream.v3 import internal_upstream_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.metadata.v3 import metadata_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.ca.sdsnames import certificate_secret_config, trust_bundle_secret_config
from controlplane.translate import naming
from controlplane.translate.messages import pack
from controlplane.translate.rbac import RbacFilters

# Host metadata namespaces an HBONE endpoint carries (and the internal connection receives).
ORIGINAL_DST_METADATA = naming.ORIGINAL_DST_FILTER
HBONE_METADATA = "nodemesh.hbone"
# Filter state the originating chain and the inbound listener set.
LOCAL_IP_STATE = "envoy.filters.listener.original_dst.local_ip"
REMOTE_IP_STATE = "envoy.filters.listener.original_dst.remote_ip"
# The client pod's IP, without its port: the port would split the Service clusters' pools per downstream
# connection (every client connection leaving an idle tunnel behind).
SOURCE_IP_STATE = "nodemesh.source_ip"
SERVER_NAME_STATE = "envoy.network.upstream_server_name"
SUBJECT_ALT_NAMES_STATE = "envoy.network.upstream_subject_alt_names"
# The caller's SPIFFE ID at the destination, from the HBONE connection's client certificate.
PEER_STATE = "nodemesh.peer_principal"
# ...and that certificate's SHA-256 (XFCC `Hash`): which certificate the caller presented.
PEER_HASH_STATE = "nodemesh.peer_certificate_hash"
# Hashable: the upstream pool is keyed by it, so no pooled connection carries two callers' traffic.
STRING_FACTORY = "envoy.hashable_string"
XFCC = "x-forwarded-client-cert"
TLS_SOCKET = "envoy.transport_sockets.tls"
INTERNAL_UPSTREAM_SOCKET = "envoy.transport_sockets.internal_upstream"
H2 = "h2"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalIdentity:
    """One identity with meshed pods on this node, and the pods' IPs (its source addresses)."""

    spiffe_id: SpiffeId
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalPod:
    """A meshed pod on this node as the inbound side sees it."""

    ip: str
    spiffe_id: SpiffeId
    # The pod's ports that Services declare HTTP (their inner streams are terminated for L7 policy).
    http_ports: tuple[int, ...]
    # Its authorization: for HTTP requests, for TCP streams, and for TCP streams' CONNECTs.
    http_rbac: RbacFilters
    tcp_rbac: RbacFilters
    connect_rbac: RbacFilters


def server_name(spiffe_id: SpiffeId) -> str:
    """The SNI that asks a node's 15008 for this identity's certificate. Namespaces are DNS labels, so the
    name reads back unambiguously from the right even when the service account has dots."""
    return f"{spiffe_id.service_account}.{spiffe_id.namespace}.{spiffe_id.trust_domain}.{naming.SNI_SUFFIX}"


# -- small helpers ----------------------------------------------------------------------------------------


def _filter(name: str, config: object) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))  # type: ignore[arg-type]


def _listener_filter(name: str, config: object) -> listener_components_pb2.ListenerFilter:
    return listener_components_pb2.ListenerFilter(name=name, typed_config=pack(config))  # type: ignore[arg-type]


def _http_filter(name: str, config: object) -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=name, typed_config=pack(config))  # type: ignore[arg-type]


def _input(name: str, message: object) -> extension_pb2.TypedExtensionConfig:
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(message))  # type: ignore[arg-type]


def _action(chain: str) -> matcher_pb2.Matcher.OnMatch:
    return matcher_pb2.Matcher.OnMatch(
        action=extension_pb2.TypedExtensionConfig(
            name=chain, typed_config=pack(wrappers_pb2.StringValue(value=chain))
        )
    )


def _exact_tree(
    input_config: extension_pb2.TypedExtensionConfig, actions: Mapping[str, str]
) -> matcher_pb2.Matcher:
    tree = matcher_pb2.Matcher()
    tree.matcher_tree.input.CopyFrom(input_config)
    for key in sorted(actions):
        tree.matcher_tree.exact_match_map.map[key].CopyFrom(_action(actions[key]))
    return tree


def _format(text: str) -> substitution_format_string_pb2.SubstitutionFormatString:
    # A missing value formats as "" rather than "-", so `skip_if_empty` leaves the state alone: in
    # `hbone_originate` a pod-IP connection brings its SNI and SAN along as filter state instead of metadata.
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=text), omit_empty_values=True
    )


def _state(key: str, text: str, *, factory: str = "", shared: bool = True) -> value_pb2.FilterStateValue:
    return value_pb2.FilterStateValue(
        object_key=key,
        factory_key=factory,
        format_string=_format(text),
        read_only=True,
        skip_if_empty=True,
        shared_with_upstream=value_pb2.FilterStateValue.ONCE if shared else value_pb2.FilterStateValue.NONE,
    )


def _internal_address(listener: str, endpoint_id: str = "") -> address_pb2.Address:
    return address_pb2.Address(
        envoy_internal_address=address_pb2.EnvoyInternalAddress(
            server_listener_name=listener, endpoint_id=endpoint_id
        )
    )


def _h2_options(max_connection_age: duration_pb2.Duration) -> Mapping[str, object]:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.common_http_protocol_options.max_connection_duration.CopyFrom(max_connection_age)
    options.explicit_http_config.http2_protocol_options.SetInParent()
    return {naming.HTTP_PROTOCOL_OPTIONS: pack(options)}


def _seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


# -- outbound: the Service clusters' side -----------------------------------------------------------------


def hbone_endpoint(
    *, pod_ip: str, port: int, node_ip: str, hbone_port: int, destination: SpiffeId
) -> endpoint_components_pb2.LbEndpoint:
    """A meshed endpoint of a Service cluster: through `hbone_originate` to `node_ip:hbone_port`."""
    target = f"{pod_ip}:{port}"
    metadata = base_pb2.Metadata()
    metadata.filter_metadata[ORIGINAL_DST_METADATA].update({"local": target})
    metadata.filter_metadata[HBONE_METADATA].update(
        {
            "node": f"{node_ip}:{hbone_port}",
            "sni": server_name(destination),
            "san": str(destination),
        }
    )
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=_internal_address(naming.HBONE_ORIGINATE_LISTENER, target)
        ),
        metadata=metadata,
        health_status=health_check_pb2.HEALTHY,
    )


def service_transport_socket() -> base_pb2.TransportSocket:
    """Every Service cluster's transport socket: hands the HBONE host metadata to `hbone_originate`. Plain
    socket endpoints (outside the mesh) are unaffected: only internal connections carry metadata."""
    config = internal_upstream_pb2.InternalUpstreamTransport(
        passthrough_metadata=[
            internal_upstream_pb2.InternalUpstreamTransport.MetadataValueSource(
                kind=metadata_pb2.MetadataKind(host=metadata_pb2.MetadataKind.Host()), name=name
            )
            for name in (ORIGINAL_DST_METADATA, HBONE_METADATA)
        ],
        transport_socket=base_pb2.TransportSocket(
            name="envoy.transport_sockets.raw_buffer", typed_config=pack(raw_buffer_pb2.RawBuffer())
        ),
    )
    return base_pb2.TransportSocket(name=INTERNAL_UPSTREAM_SOCKET, typed_config=pack(config))


def source_address_filter() -> listener_components_pb2.Filter:
    """First filter of every outbound chain: the client's IP, for `hbone_originate` to pick the client's
    identity by. Shared with the upstream ONCE and hashable, so it keys the upstream pool: a client's
    connections share pooled connections to `hbone_originate`, and none ever carries two clients' traffic."""
    config = net_sfs_pb2.Config(
        on_new_connection=[
            _state(SOURCE_IP_STATE, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", factory=STRING_FACTORY)
        ]
    )
    return _filter(naming.SET_FILTER_STATE_NETWORK, config)


# -- outbound: per local identity -------------------------------------------------------------------------


def _upstream_tls(spiffe_id: SpiffeId) -> base_pb2.TransportSocket:
    tls = tls_pb2.UpstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[certificate_secret_config(spiffe_id)],
            validation_context_sds_secret_config=trust_bundle_secret_config(),
            alpn_protocols=[H2],
        ),
    )
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(tls))


def build_originate_cluster(
    identity: SpiffeId, connect_timeout: duration_pb2.Duration, max_connection_age: duration_pb2.Duration
) -> cluster_pb2.Cluster:
    """HBONE connections with `identity`'s certificate to the node named by the endpoint's metadata. The
    server's certificate must chain to ROOTCA and carry the SAN the endpoint names (filter state). A
    connection takes new tunnels for `max_connection_age`: then a renewed certificate takes over."""
    cluster = cluster_pb2.Cluster(
        name=naming.hbone_cluster(identity.namespace, identity.service_account),
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=connect_timeout,
        transport_socket=_upstream_tls(identity),
        typed_extension_protocol_options=_h2_options(max_connection_age),
    )
    cluster.original_dst_lb_config.metadata_key.CopyFrom(
        metadata_pb2.MetadataKey(key=HBONE_METADATA, path=[metadata_pb2.MetadataKey.PathSegment(key="node")])
    )
    return cluster


def _originate_chain(identity: SpiffeId) -> listener_components_pb2.FilterChain:
    name = naming.hbone_cluster(identity.namespace, identity.service_account)
    tls_state = net_sfs_pb2.Config(
        on_new_connection=[
            _state(SERVER_NAME_STATE, f"%DYNAMIC_METADATA({HBONE_METADATA}:sni)%", shared=False),
            _state(SUBJECT_ALT_NAMES_STATE, f"%DYNAMIC_METADATA({HBONE_METADATA}:san)%", shared=False),
        ]
    )
    proxy = tcp_proxy_pb2.TcpProxy(
        stat_prefix=naming.stat_prefix(name),
        cluster=name,
        tunneling_config=tcp_proxy_pb2.TcpProxy.TunnelingConfig(hostname="%DOWNSTREAM_LOCAL_ADDRESS%"),
    )
    return listener_components_pb2.FilterChain(
        name=name,
        filters=[
            _filter(naming.SET_FILTER_STATE_NETWORK, tls_state),
            _filter(naming.TCP_PROXY_FILTER, proxy),
        ],
    )


def build_originate_listener(identities: Sequence[LocalIdentity]) -> listener_pb2.Listener:
    """The internal listener every meshed Service endpoint leads to: one chain per local identity, chosen
    by the client's IP (`nodemesh.source_ip`). A client that is no local meshed pod matches no chain."""
    by_ip: dict[str, str] = {}
    chains = []
    for identity in sorted(identities, key=lambda i: str(i.spiffe_id)):
        chain = _originate_chain(identity.spiffe_id)
        chains.append(chain)
        for ip in identity.ips:
            by_ip[ip] = str(chain.name)
    listener = listener_pb2.Listener(
        name=naming.HBONE_ORIGINATE_LISTENER,
        internal_listener=listener_pb2.Listener.InternalListenerConfig(),
        listener_filters=[_listener_filter(naming.ORIGINAL_DST_FILTER, original_dst_pb2.OriginalDst())],
        filter_chains=chains,
    )
    listener.filter_chain_matcher.CopyFrom(
        _exact_tree(_input("source-ip", network_inputs_pb2.FilterStateInput(key=SOURCE_IP_STATE)), by_ip)
    )
    return listener


# -- inbound ----------------------------------------------------------------------------------------------


def _downstream_tls(spiffe_id: SpiffeId) -> base_pb2.TransportSocket:
    tls = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[certificate_secret_config(spiffe_id)],
            validation_context_sds_secret_config=trust_bundle_secret_config(),
            alpn_protocols=[H2],
        ),
    )
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(tls))


def _connect_route(cluster: str) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(
            connect_matcher=route_components_pb2.RouteMatch.ConnectMatcher()
        ),
        route=route_components_pb2.RouteAction(
            cluster=cluster,
            upgrade_configs=[
                route_components_pb2.RouteAction.UpgradeConfig(
                    upgrade_type="CONNECT",
                    connect_config=route_components_pb2.RouteAction.UpgradeConfig.ConnectConfig(),
                )
            ],
            # A tunnel lives as long as its stream.
            timeout=_seconds(0),
            idle_timeout=_seconds(0),
        ),
    )


def _connect_rbac(pod: LocalPod) -> dict[str, any_pb2.Any]:
    """The pod's TCP rules for the CONNECT filters of its `podIP:*` virtual host; none: they pass."""
    out: dict[str, any_pb2.Any] = {}
    for name, rules in (
        (naming.CONNECT_RBAC_DENY, pod.connect_rbac.deny),
        (naming.CONNECT_RBAC_ALLOW, pod.connect_rbac.allow),
    ):
        if rules is not None:
            out[name] = pack(http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=rules)))
    return out


def _inbound_route_config(name: str, pods: Sequence[LocalPod]) -> route_pb2.RouteConfiguration:
    """Authorities this identity's chain forwards: its own local pods, nothing else."""
    config = route_pb2.RouteConfiguration(name=name)
    for pod in sorted(pods, key=lambda p: p.ip):
        host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
        if pod.http_ports:
            config.virtual_hosts.append(
                route_components_pb2.VirtualHost(
                    name=f"{pod.ip}/http",
                    domains=[f"{host}:{port}" for port in sorted(pod.http_ports)],
                    routes=[_connect_route(naming.INBOUND_HTTP)],
                )
            )
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=f"{pod.ip}/tcp",
                domains=[f"{host}:*"],
                routes=[_connect_route(naming.INBOUND_TCP)],
                typed_per_filter_config=_connect_rbac(pod),
            )
        )
    return config


def _inbound_chain(spiffe_id: SpiffeId, pods: Sequence[LocalPod]) -> listener_components_pb2.FilterChain:
    name = naming.inbound_chain(spiffe_id.namespace, spiffe_id.service_account)
    handoff = http_sfs_pb2.Config(
        on_request_headers=[
            _state(PEER_STATE, "%DOWNSTREAM_PEER_URI_SAN%", factory=STRING_FACTORY),
            _state(PEER_HASH_STATE, "%DOWNSTREAM_PEER_FINGERPRINT_256%", factory=STRING_FACTORY),
            _state(LOCAL_IP_STATE, "%REQ(:AUTHORITY)%"),
        ]
    )
    # Present (passing everything unless a virtual host's rules say otherwise) only where a pod has rules.
    authorization = [
        _http_filter(name, http_rbac_pb2.RBAC())
        for name, needed in (
            (naming.CONNECT_RBAC_DENY, any(p.connect_rbac.deny is not None for p in pods)),
            (naming.CONNECT_RBAC_ALLOW, any(p.connect_rbac.allow is not None for p in pods)),
        )
        if needed
    ]
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=naming.stat_prefix(name),
        codec_type=hcm_pb2.HttpConnectionManager.HTTP2,
        http2_protocol_options=protocol_pb2.Http2ProtocolOptions(allow_connect=True),
        upgrade_configs=[hcm_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type="CONNECT")],
        route_config=_inbound_route_config(name, pods),
        stream_idle_timeout=_seconds(0),
        http_filters=[
            _http_filter(naming.SET_FILTER_STATE_HTTP, handoff),
            *authorization,
            _http_filter(naming.ROUTER_FILTER, router_pb2.Router()),
        ],
    )
    return listener_components_pb2.FilterChain(
        name=name, transport_socket=_downstream_tls(spiffe_id), filters=[_filter(naming.HCM_FILTER, hcm)]
    )


def build_inbound_listener(address: str, port: int, pods: Sequence[LocalPod]) -> listener_pb2.Listener:
    """nodeIP:15008: one TLS chain per local identity, chosen by SNI; an unknown SNI gets no chain."""
    by_identity: dict[SpiffeId, list[LocalPod]] = {}
    for pod in pods:
        by_identity.setdefault(pod.spiffe_id, []).append(pod)
    chains = []
    by_name: dict[str, str] = {}
    for spiffe_id in sorted(by_identity, key=str):
        chain = _inbound_chain(spiffe_id, by_identity[spiffe_id])
        chains.append(chain)
        by_name[server_name(spiffe_id)] = str(chain.name)
    listener = listener_pb2.Listener(
        name=naming.HBONE_INBOUND_LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        listener_filters=[_listener_filter(naming.TLS_INSPECTOR_FILTER, tls_inspector_pb2.TlsInspector())],
        filter_chains=chains,
    )
    listener.filter_chain_matcher.CopyFrom(
        _exact_tree(_input("server-name", network_inputs_pb2.ServerNameInput()), by_name)
    )
    return listener


def _xfcc_route_config(pod: LocalPod) -> route_pb2.RouteConfiguration:
    # The destination learns the caller from the tunnel's client certificate; whatever XFCC the client
    # itself sent is dropped (the HCM sanitizes it, and this overwrites).
    value = (
        f"By={pod.spiffe_id};Hash=%FILTER_STATE({PEER_HASH_STATE}:PLAIN)%;"
        f"URI=%FILTER_STATE({PEER_STATE}:PLAIN)%"
    )
    return route_pb2.RouteConfiguration(
        name=naming.inbound_pod_chain(pod.ip),
        request_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=XFCC, value=value),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=naming.DEFAULT_VIRTUAL_HOST,
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix=""),
                        route=route_components_pb2.RouteAction(
                            cluster=naming.INBOUND_POD, timeout=_seconds(0)
                        ),
                    )
                ],
            )
        ],
    )


def _http_pod_chain(pod: LocalPod) -> listener_components_pb2.FilterChain:
    name = naming.inbound_pod_chain(pod.ip)
    filters = [
        _http_filter(naming.RBAC_HTTP_FILTER, http_rbac_pb2.RBAC(rules=rules)) for rules in pod.http_rbac.all
    ]
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=naming.stat_prefix(name),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        forward_client_cert_details=hcm_pb2.HttpConnectionManager.SANITIZE,
        route_config=_xfcc_route_config(pod),
        http_filters=[*filters, _http_filter(naming.ROUTER_FILTER, router_pb2.Router())],
    )
    return listener_components_pb2.FilterChain(name=name, filters=[_filter(naming.HCM_FILTER, hcm)])


def _tcp_pod_chain(pod: LocalPod) -> listener_components_pb2.FilterChain:
    name = naming.inbound_pod_chain(pod.ip)
    filters = [
        _filter(
            naming.RBAC_NETWORK_FILTER,
            network_rbac_pb2.RBAC(stat_prefix=naming.stat_prefix(name), rules=rules),
        )
        for rules in pod.tcp_rbac.all
    ]
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=naming.stat_prefix(name), cluster=naming.INBOUND_POD)
    return listener_components_pb2.FilterChain(
        name=name, filters=[*filters, _filter(naming.TCP_PROXY_FILTER, proxy)]
    )


def build_ip_listener(
    name: str,
    chains: Iterable[listener_components_pb2.FilterChain],
    by_ip: Mapping[str, str],
    default_chain: listener_components_pb2.FilterChain | None = None,
) -> listener_pb2.Listener:
    """An internal listener that picks a chain (sorted by name) by the destination IP its original_dst
    listener filter restores: `by_ip` maps an IP to a chain name; any other IP goes to `default_chain`
    (None: the connection is closed)."""
    listener = listener_pb2.Listener(
        name=name,
        internal_listener=listener_pb2.Listener.InternalListenerConfig(),
        listener_filters=[_listener_filter(naming.ORIGINAL_DST_FILTER, original_dst_pb2.OriginalDst())],
        filter_chains=sorted(chains, key=lambda c: str(c.name)),
    )
    if default_chain is not None:
        listener.default_filter_chain.CopyFrom(default_chain)
    if by_ip:
        # Envoy refuses a tree without a map: with no IPs, no matcher at all.
        listener.filter_chain_matcher.CopyFrom(
            _exact_tree(_input("destination-ip", network_inputs_pb2.DestinationIPInput()), by_ip)
        )
    return listener


def _pod_listener(
    name: str, chains: Mapping[str, listener_components_pb2.FilterChain]
) -> listener_pb2.Listener:
    """An internal pod listener over chains by pod IP."""
    return build_ip_listener(name, chains.values(), {ip: str(chain.name) for ip, chain in chains.items()})


def build_pod_listeners(pods: Sequence[LocalPod]) -> tuple[listener_pb2.Listener, listener_pb2.Listener]:
    """`inbound_http` and `inbound_tcp`: one chain per local meshed pod (its authorization), chosen by the
    destination the CONNECT named."""
    return (
        _pod_listener(naming.INBOUND_HTTP, {p.ip: _http_pod_chain(p) for p in pods if p.http_ports}),
        _pod_listener(naming.INBOUND_TCP, {p.ip: _tcp_pod_chain(p) for p in pods}),
    )


def _internal_cluster(name: str, connect_timeout: duration_pb2.Duration) -> cluster_pb2.Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=_internal_address(name))
    )
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=connect_timeout,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
        transport_socket=base_pb2.TransportSocket(
            name=INTERNAL_UPSTREAM_SOCKET,
            typed_config=pack(
                internal_upstream_pb2.InternalUpstreamTransport(
                    transport_socket=base_pb2.TransportSocket(
                        name="envoy.transport_sockets.raw_buffer",
                        typed_config=pack(raw_buffer_pb2.RawBuffer()),
                    )
                )
            ),
        ),
    )
    # One stream per connection: an internal connection carries one caller's filter state, never reused
    # for another tunnel.
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.common_http_protocol_options.max_requests_per_connection.value = 1
    options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[naming.HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return cluster


def build_inbound_clusters(connect_timeout: duration_pb2.Duration) -> tuple[cluster_pb2.Cluster, ...]:
    """The node-independent inbound clusters: to the two pod listeners, and on to the pod itself."""
    pod = cluster_pb2.Cluster(
        name=naming.INBOUND_POD,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=connect_timeout,
    )
    return (
        _internal_cluster(naming.INBOUND_HTTP, connect_timeout),
        _internal_cluster(naming.INBOUND_TCP, connect_timeout),
        pod,
    )
