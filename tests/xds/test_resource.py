"""Resources are serialized once, interned by content, and their fragments concatenate into responses."""

from __future__ import annotations

import gc

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, struct_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.errors import UnknownTypeUrlError
from controlplane.xds.resource import ResourcePool, build_resource, resource_name
from protos.nodemesh.v1alpha1 import plan_pb2
from tests.xds import builders as b


def test_identical_messages_share_one_resource_and_unused_ones_are_freed() -> None:
    pool = ResourcePool()
    first = pool.intern(b.eds_cluster("a"))
    again = pool.intern(b.eds_cluster("a"))
    other = pool.intern(b.eds_cluster("a", timeout_s=2))
    assert first is again
    assert first.any_bytes is again.any_bytes
    assert other.version != first.version
    assert len(pool) == 2
    del first, again, other
    gc.collect()
    assert len(pool) == 0


def test_versions_are_content_hashes_equal_across_pools() -> None:
    one, two = ResourcePool(), ResourcePool()
    assert one.intern(b.route("r", "a")).version == two.intern(b.route("r", "a")).version
    assert one.intern(b.route("r", "a")).any_bytes == build_resource(b.route("r", "a")).any_bytes


def test_refs_of_clusters_and_listeners() -> None:
    pool = ResourcePool()
    assert pool.intern(b.eds_cluster("a")).refs == {"a"}
    assert pool.intern(b.eds_cluster("a", service_name="svc-a")).refs == {"svc-a"}
    assert pool.intern(b.static_cluster("s")).refs == frozenset()
    assert pool.intern(b.listener("l", "r1", default_route="r2")).refs == {"r1", "r2"}


def test_names_by_type() -> None:
    assert resource_name(b.endpoints("c", 1)) == "c"
    assert resource_name(plan_pb2.Workload(uid="u-1", name="pod")) == "u-1"
    assert resource_name(plan_pb2.ServiceVip(namespace="ns", name="svc")) == "ns/svc"
    assert resource_name(plan_pb2.NodeSettings(trust_domain="cluster.local")) == "node"
    assert ResourcePool().intern(plan_pb2.NodeSettings()).type_url == t.NODE_SETTINGS


def test_unknown_types_are_refused() -> None:
    with pytest.raises(UnknownTypeUrlError):
        ResourcePool().intern(struct_pb2.Struct())
    with pytest.raises(UnknownTypeUrlError):
        t.message_class("type.googleapis.com/google.protobuf.Struct")


def test_concatenated_sotw_fragments_parse_as_the_normal_response() -> None:
    pool = ResourcePool()
    resources = [pool.intern(b.eds_cluster("a")), pool.intern(b.eds_cluster("b", timeout_s=3))]
    header = discovery_pb2.DiscoveryResponse(version_info="v1", type_url=t.CLUSTER, nonce="n1")
    wire = header.SerializeToString() + b"".join(r.sotw_fragment for r in resources)
    expected = discovery_pb2.DiscoveryResponse(
        version_info="v1",
        type_url=t.CLUSTER,
        nonce="n1",
        resources=[any_pb2.Any.FromString(r.any_bytes) for r in resources],
    )
    assert discovery_pb2.DiscoveryResponse.FromString(wire) == expected
    assert resources[1].message() == b.eds_cluster("b", timeout_s=3)


def test_concatenated_delta_fragments_parse_as_the_normal_response() -> None:
    pool = ResourcePool()
    resources = [pool.intern(b.endpoints("a", 1)), pool.intern(b.endpoints("b", 2, 3))]
    header = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info="s1", type_url=t.ENDPOINT, nonce="n2", removed_resources=["gone"]
    )
    wire = header.SerializeToString() + b"".join(r.delta_fragment for r in resources)
    expected = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info="s1",
        type_url=t.ENDPOINT,
        nonce="n2",
        removed_resources=["gone"],
        resources=[
            discovery_pb2.Resource(
                name=r.name, version=r.version, resource=any_pb2.Any.FromString(r.any_bytes)
            )
            for r in resources
        ],
    )
    assert discovery_pb2.DeltaDiscoveryResponse.FromString(wire) == expected


def test_fragments_are_byte_identical_to_protobuf_encoding() -> None:
    # The fragments are built by hand around the shared Any bytes (stored once); they must be exactly what
    # protobuf's deterministic serialization writes, for small and for large (multi-byte length) resources.
    pool = ResourcePool()
    for resource in (pool.intern(b.eds_cluster("a")), pool.intern(b.eds_cluster("big", padding=20_000))):
        packed = any_pb2.Any.FromString(resource.any_bytes)
        sotw = discovery_pb2.DiscoveryResponse(resources=[packed]).SerializeToString(deterministic=True)
        delta = discovery_pb2.DeltaDiscoveryResponse(
            resources=[discovery_pb2.Resource(name=resource.name, version=resource.version, resource=packed)]
        ).SerializeToString(deterministic=True)
        assert resource.sotw_fragment == sotw
        assert resource.delta_fragment == delta
        assert resource.sotw_parts[1] is resource.any_bytes
