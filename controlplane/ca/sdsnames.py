"""How Envoy reaches the agent's SDS secrets: the secret names, the SDS cluster, and the references to them.

One place for these names, shared by the node agent (which serves the secrets) and the translator and
bootstrap (which point Envoy's transport sockets and clusters at them). Pure: Envoy protos only, so every
layer may import it.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2

from controlplane.ca.identity import SpiffeId

# The validation context secret: every root the mesh trusts.
TRUST_BUNDLE_SECRET = "ROOTCA"
# The static cluster in the node Envoy's bootstrap that leads to the agent's SDS unix socket.
SDS_CLUSTER = "nodemesh_sds"
# Where the agent listens by default; the directory is the agent's (mode 0700) and the socket mode 0600.
DEFAULT_SOCKET_PATH = "/var/run/nodemesh/sds/agent.sock"


def certificate_secret_name(spiffe_id: SpiffeId) -> str:
    """The tls_certificate secret of an identity is named by its SPIFFE ID."""
    return str(spiffe_id)


def sds_config_source(cluster: str = SDS_CLUSTER) -> config_source_pb2.ConfigSource:
    """SDS over the agent's socket: SotW on SecretDiscoveryService/StreamSecrets."""
    return config_source_pb2.ConfigSource(
        resource_api_version=config_source_pb2.V3,
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
                )
            ],
        ),
    )


def sds_secret_config(name: str, *, cluster: str = SDS_CLUSTER) -> secret_pb2.SdsSecretConfig:
    """A transport socket's reference to one of the agent's secrets."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=sds_config_source(cluster))


def certificate_secret_config(
    spiffe_id: SpiffeId, *, cluster: str = SDS_CLUSTER
) -> secret_pb2.SdsSecretConfig:
    return sds_secret_config(certificate_secret_name(spiffe_id), cluster=cluster)


def trust_bundle_secret_config(*, cluster: str = SDS_CLUSTER) -> secret_pb2.SdsSecretConfig:
    return sds_secret_config(TRUST_BUNDLE_SECRET, cluster=cluster)


def sds_cluster(socket_path: str, *, name: str = SDS_CLUSTER) -> cluster_pb2.Cluster:
    """The bootstrap's static cluster to the agent's SDS socket (gRPC, so HTTP/2)."""
    options = any_pb2.Any()
    options.Pack(
        http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options={}
            )
        )
    )
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(pipe=address_pb2.Pipe(path=socket_path))
        )
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=1),
        typed_extension_protocol_options={"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options},
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )
