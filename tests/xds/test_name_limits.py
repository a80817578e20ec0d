"""The default limit on names per request admits what an Envoy asks for on issue 7's largest mesh: 10,000
Services give every node 10,000+ EDS clusters and 10,200 RDS route names, all subscribed by name in one
request (a limit of 10,000 cut those Envoys off)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.delta import DeltaStream
from controlplane.xds.server import ServerSettings
from controlplane.xds.sotw import SotwStream
from tests.xds import builders as b

# Route names of the synthetic 10,000-Service mesh (bench.translate), with a margin.
NAMES = 10_200 * 2


def _cache() -> SnapshotCache:
    cache = SnapshotCache()
    cache.set_snapshot("node-1", b.mesh(cache.pool, {"a": (1,)}))
    return cache


def test_sotw_stream_with_default_settings_accepts_a_large_mesh_subscription() -> None:
    stream = SotwStream(_cache(), max_names=ServerSettings().max_resource_names)
    request = discovery_pb2.DiscoveryRequest(
        type_url=t.ENDPOINT,
        node=base_pb2.Node(id="node-1"),
        resource_names=[f"c{i}" for i in range(NAMES)],
    )
    pushes = stream.on_request(request)
    assert [p.type_url for p in pushes] == [t.ENDPOINT]


def test_delta_stream_with_default_settings_accepts_a_large_mesh_subscription() -> None:
    stream = DeltaStream(_cache(), max_names=ServerSettings().max_resource_names)
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=t.ENDPOINT,
        node=base_pb2.Node(id="node-1"),
        resource_names_subscribe=[f"c{i}" for i in range(NAMES)],
    )
    pushes = stream.on_request(request)
    assert [p.type_url for p in pushes] == [t.ENDPOINT]
