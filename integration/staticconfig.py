"""A node's translated config as a static Envoy bootstrap (no control plane): for `envoy --mode validate`
and for tests that run real traffic through exactly what translation produced.

Envoy cannot fetch RDS/EDS here, so each HCM's RDS reference is replaced by the route configuration it names
(the very message translation produced) and each EDS cluster becomes a STATIC one holding its
ClusterLoadAssignment. `validate_clusters` is turned off in those inlined route configs, as it is for
RDS-delivered ones: a share for an invalid backend deliberately names a cluster that does not exist.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.bootstrap.internal_listener.v3 import internal_listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format

from controlplane.ca.sdsnames import sds_cluster
from controlplane.translate import naming
from controlplane.translate.config import NodeConfig
from meshctl.bootstrap import layered_runtime


def static_bootstrap(
    config: NodeConfig, *, hbone: bool = True, sds_socket: str = "/tmp/nodemesh-no-sds.sock"
) -> dict[str, Any]:
    """`hbone=False` leaves out the HBONE listeners and originate clusters: their certificates come from an
    agent's SDS, and without one Envoy would wait for them (cluster warming) before it is ready."""
    routes = dict(config.route_configs.items())
    assignments = dict(config.load_assignments.items())
    listeners = []
    for name, original in sorted(config.listeners.items()):
        # Without HBONE: the node's outbound listener and the internal ones it hands connections to.
        if not hbone and not name.startswith(naming.OUTBOUND_LISTENER):
            continue
        listener = type(original)()
        listener.CopyFrom(original)
        chains = [*listener.filter_chains, listener.default_filter_chain]
        for chain in chains:
            for f in chain.filters:
                if f.name != naming.HCM_FILTER:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                if not hcm.HasField("rds"):
                    continue  # HBONE's own HCMs carry their routes inline
                route_config = type(routes[hcm.rds.route_config_name])()
                route_config.CopyFrom(routes[hcm.rds.route_config_name])
                route_config.validate_clusters.value = False
                hcm.ClearField("rds")
                hcm.route_config.CopyFrom(route_config)
                f.typed_config.Pack(hcm)
        listeners.append(json_format.MessageToDict(listener))
    clusters = []
    for name, original in sorted(config.clusters.items()):
        if not hbone and name.startswith("hbone|"):
            continue
        cluster = cluster_pb2.Cluster()
        cluster.CopyFrom(original)
        if cluster.type == cluster_pb2.Cluster.EDS:
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster_pb2.Cluster.STATIC
            cluster.load_assignment.CopyFrom(assignments[cluster.name])
        clusters.append(json_format.MessageToDict(cluster))
    # HBONE: internal listeners need the bootstrap extension; certificates come from the agent's SDS.
    clusters.append(json_format.MessageToDict(sds_cluster(sds_socket)))
    return {
        "node": {"id": config.node, "cluster": "nodemesh"},
        "bootstrap_extensions": [
            {
                "name": naming.INTERNAL_LISTENER_EXTENSION,
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    + internal_listener_pb2.InternalListener.DESCRIPTOR.full_name
                },
            }
        ],
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "layered_runtime": layered_runtime(),
    }
