"""controlplane.ca.sdsnames: the names, config source and cluster by which Envoy reaches the agent's SDS."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from controlplane.ca.identity import SpiffeId
from controlplane.ca.sdsnames import (
    SDS_CLUSTER,
    TRUST_BUNDLE_SECRET,
    certificate_secret_config,
    certificate_secret_name,
    sds_cluster,
    trust_bundle_secret_config,
)

WEB = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")


def test_secrets_are_named_by_spiffe_id_and_rootca() -> None:
    assert certificate_secret_name(WEB) == "spiffe://cluster.local/ns/shop/sa/web"
    assert certificate_secret_config(WEB).name == str(WEB)
    assert trust_bundle_secret_config().name == TRUST_BUNDLE_SECRET == "ROOTCA"


def test_secret_references_use_sds_over_grpc_to_the_agent_cluster() -> None:
    source = certificate_secret_config(WEB, cluster="other").sds_config
    assert source.resource_api_version == config_source_pb2.V3
    api = source.api_config_source
    assert api.api_type == config_source_pb2.ApiConfigSource.GRPC
    assert [g.envoy_grpc.cluster_name for g in api.grpc_services] == ["other"]
    default = trust_bundle_secret_config().sds_config.api_config_source
    assert [g.envoy_grpc.cluster_name for g in default.grpc_services] == [SDS_CLUSTER]


def test_the_sds_cluster_speaks_http2_to_the_unix_socket() -> None:
    cluster = sds_cluster("/run/nodemesh/sds/agent.sock")
    assert cluster.name == SDS_CLUSTER
    (locality,) = cluster.load_assignment.endpoints
    (endpoint,) = locality.lb_endpoints
    assert endpoint.endpoint.address.pipe.path == "/run/nodemesh/sds/agent.sock"
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")
