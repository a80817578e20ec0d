"""Malformed requests end that stream only, with INVALID_ARGUMENT naming what was wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from controlplane.xds import typeurls as t
from tests.xds import builders as b
from tests.xds.harness import AdsClient, XdsHarness

Script = Callable[[XdsHarness], Awaitable[tuple[AdsClient, str]]]


async def sotw_unknown_type(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.sotw()
    await client.request("type.googleapis.com/envoy.config.nothing.v3.Nothing")
    return client, "unknown type_url"


async def sotw_missing_node(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.sotw()
    await client.request(t.CLUSTER, with_node=False)
    return client, "node.id"


async def sotw_garbage_nonce(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.sotw()
    await client.request(t.CLUSTER)
    await client.recv()
    await client.request(t.CLUSTER, nonce="\x00garbage\xff" * 20)
    return client, "malformed response_nonce"


async def sotw_too_many_names(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.sotw()
    limit = xds.server.settings.max_resource_names
    await client.request(t.ENDPOINT, [f"c{i}" for i in range(limit + 1)])
    return client, f"more than the limit of {limit}"


async def delta_unknown_type(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.delta()
    await client.request("type.googleapis.com/google.protobuf.Empty")
    return client, "unknown type_url"


async def delta_too_many_names(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.delta()
    limit = xds.server.settings.max_resource_names
    await client.request(t.ENDPOINT, initial={f"c{i}": "v" for i in range(limit + 1)})
    return client, "initial_resource_versions"


async def delta_garbage_nonce(xds: XdsHarness) -> tuple[AdsClient, str]:
    client = xds.delta()
    await client.request(t.CLUSTER)
    await client.recv()
    await client.request(t.CLUSTER, nonce="not-a-nonce")
    return client, "malformed response_nonce"


@pytest.mark.parametrize(
    "script",
    [
        sotw_unknown_type,
        sotw_missing_node,
        sotw_garbage_nonce,
        sotw_too_many_names,
        delta_unknown_type,
        delta_too_many_names,
        delta_garbage_nonce,
    ],
)
async def test_malformed_request_ends_only_that_stream(xds: XdsHarness, script: Script) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    healthy = xds.sotw("healthy")
    xds.cache.set_snapshot("healthy", b.mesh(xds.cache.pool, {"h": (1,)}))
    await healthy.request(t.CLUSTER)
    first = await healthy.recv()

    bad, expected = await script(xds)
    code, details = await bad.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in details

    # The other stream, and new ones, keep being served.
    xds.cache.set_snapshot("healthy", b.mesh(xds.cache.pool, {"h": (1,), "i": (2,)}))
    update = await healthy.recv()
    assert update.version_info != first.version_info
    fresh = xds.sotw("healthy")
    await fresh.request(t.CLUSTER)
    packed = (await fresh.recv()).resources
    assert sorted(_cluster_name(p) for p in packed) == ["h", "i"]
    assert xds.metric("nodemesh_xds_rejected_streams_total") == 1


def _cluster_name(packed: object) -> str:
    cluster = cluster_pb2.Cluster()
    packed.Unpack(cluster)  # type: ignore[attr-defined]
    return str(cluster.name)


async def test_later_requests_may_omit_the_node(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    cds = await client.recv()
    await client.request(t.ENDPOINT, ["a"], with_node=False)
    assert (await client.recv()).type_url == t.ENDPOINT
    assert cds.type_url == t.CLUSTER


async def test_delta_first_request_without_node_is_rejected(xds: XdsHarness) -> None:
    client = xds.delta()
    client._sent_node = True  # script a client that forgets the node
    await client.request(t.CLUSTER)
    code, details = await client.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "node.id" in details
