"""State-of-the-world ADS, rule by rule, against a real server with scripted clients."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.status import ConfigStatus
from tests.xds import builders as b
from tests.xds.harness import XdsHarness, wait_until


def names_of(response: object, cls: type) -> list[str]:
    out = []
    for packed in response.resources:  # type: ignore[attr-defined]
        message = cls()
        packed.Unpack(message)
        out.append(message.cluster_name if cls is endpoint_pb2.ClusterLoadAssignment else message.name)
    return out


async def test_wildcard_cds_returns_every_cluster_with_a_deterministic_version(xds: XdsHarness) -> None:
    snap = b.mesh(xds.cache.pool, {"a": (1,), "b": (2,)})
    xds.cache.set_snapshot("node-1", snap)
    client = xds.sotw()
    await client.request(t.CLUSTER)
    response = await client.recv()
    assert response.type_url == t.CLUSTER
    assert names_of(response, cluster_pb2.Cluster) == ["a", "b"]
    assert response.version_info == snap.type_version(t.CLUSTER)
    assert response.nonce


async def test_eds_carries_only_the_names_asked_for(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,), "b": (2,), "c": (3,)}))
    client = xds.sotw()
    await client.request(t.ENDPOINT, ["a", "c"])
    response = await client.recv()
    assert names_of(response, endpoint_pb2.ClusterLoadAssignment) == ["a", "c"]


async def test_request_before_any_snapshot_is_answered_when_one_arrives(xds: XdsHarness) -> None:
    client = xds.sotw()
    await client.request(t.CLUSTER)
    await wait_until(lambda: len(xds.registry) == 1)
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    response = await client.recv()
    assert names_of(response, cluster_pb2.Cluster) == ["a"]


async def test_ack_is_recorded_and_nothing_is_resent(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    cds = await client.recv()
    await client.ack(cds)
    # A request for another type acts as a barrier: the server handles requests in order, so a resent CDS
    # would arrive before this EDS response.
    await client.request(t.ENDPOINT, ["a"])
    eds = await client.recv()
    assert eds.type_url == t.ENDPOINT
    (stream,) = xds.registry.streams()
    assert stream.types[t.CLUSTER].acked_version == cds.version_info
    assert stream.types[t.CLUSTER].status is ConfigStatus.SYNCED


async def test_nack_is_recorded_and_nothing_is_resent_until_a_newer_version(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    first = await client.recv()
    await client.nack(first, "bad cluster a")
    await client.request(t.ENDPOINT, ["a"])
    assert (await client.recv()).type_url == t.ENDPOINT  # no CDS resend before it
    # A new snapshot that leaves clusters unchanged but changes endpoints: only EDS goes out.
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2)}))
    assert (await client.recv()).type_url == t.ENDPOINT
    (stream,) = xds.registry.streams()
    cds_status = stream.types[t.CLUSTER]
    assert cds_status.status is ConfigStatus.ERROR
    assert cds_status.last_nack is not None
    assert cds_status.last_nack.message == "bad cluster a"
    assert cds_status.last_nack.version == first.version_info
    assert cds_status.responses_sent == 1
    assert xds.metric("nodemesh_xds_nacks_total", type="cds") == 1
    # A newer cluster version is sent.
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2)}, cluster_timeout={"a": 5}))
    second = await client.recv()
    assert second.type_url == t.CLUSTER
    assert second.version_info != first.version_info


async def test_stale_nonce_is_ignored(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}))
    client = xds.sotw()
    await client.request(t.ENDPOINT, ["a"])
    first = await client.recv()
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 3), "b": (2,)}))
    second = await client.recv()
    assert second.nonce != first.nonce
    # Echoing the older nonce (adding "b") is stale: ignored, so no response for it.
    await client.request(t.ENDPOINT, ["a", "b"], nonce=first.nonce, version=first.version_info)
    await client.request(t.LISTENER)  # barrier: handled after the stale request
    assert (await client.recv()).type_url == t.LISTENER
    # The same change with the current nonce is honoured.
    await client.request(t.ENDPOINT, ["a", "b"], nonce=second.nonce, version=second.version_info)
    third = await client.recv()
    assert names_of(third, endpoint_pb2.ClusterLoadAssignment) == ["a", "b"]


async def test_wildcard_only_while_never_subscribed_by_name(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,), "b": (2,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER, ["a"])
    first = await client.recv()
    assert names_of(first, cluster_pb2.Cluster) == ["a"]
    # Empty names after subscribing by name means "nothing", not wildcard.
    await client.request(t.CLUSTER, [], nonce=first.nonce, version=first.version_info)
    second = await client.recv()
    assert names_of(second, cluster_pb2.Cluster) == []
    # "*" asks for the wildcard explicitly.
    await client.request(t.CLUSTER, ["*"], nonce=second.nonce, version=second.version_info)
    third = await client.recv()
    assert names_of(third, cluster_pb2.Cluster) == ["a", "b"]


async def test_empty_eds_request_is_not_wildcard(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.ENDPOINT, [])
    response = await client.recv()
    assert names_of(response, endpoint_pb2.ClusterLoadAssignment) == []


async def test_lds_and_cds_always_carry_the_full_set_so_removals_are_seen(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}, routes={"r1": "a", "r2": "b"}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    cds = await client.recv()
    await client.request(t.LISTENER)
    lds = await client.recv()
    await client.ack(cds)
    await client.ack(lds)
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}, routes={"r1": "a"}))
    cds2 = await client.recv()
    lds2 = await client.recv()
    assert (cds2.type_url, lds2.type_url) == (t.CLUSTER, t.LISTENER)
    assert names_of(cds2, cluster_pb2.Cluster) == ["a"]
    from envoy.config.listener.v3 import listener_pb2

    assert names_of(lds2, listener_pb2.Listener) == ["r1"]


async def test_push_order_and_endpoints_resent_after_a_cluster_change(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}, routes={"r": "a"}))
    client = xds.sotw()
    for type_url, names in ((t.CLUSTER, []), (t.ENDPOINT, ["a", "b"]), (t.LISTENER, []), (t.ROUTE, ["r"])):
        await client.request(type_url, names)
        await client.ack(await client.recv(), names)
    # Cluster "a" changes, its endpoints do not; listener and route both change.
    xds.cache.set_snapshot(
        "node-1",
        b.snapshot(
            pool,
            b.eds_cluster("a", timeout_s=7),
            b.eds_cluster("b"),
            b.endpoints("a", 1),
            b.endpoints("b", 2),
            b.listener("r", "r", port=10001),
            b.route("r", "b"),
        ),
    )
    received = [await client.recv() for _ in range(4)]
    assert [r.type_url for r in received] == [t.CLUSTER, t.ENDPOINT, t.LISTENER, t.ROUTE]
    eds = received[1]
    assert names_of(eds, endpoint_pb2.ClusterLoadAssignment) == ["a", "b"]


async def test_unchanged_snapshot_sends_nothing(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    await client.ack(await client.recv())
    # An equal snapshot (new object, same content) changes nothing.
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}, routes={"r": "a"}))
    await client.request(t.LISTENER)
    response = await client.recv()
    assert response.type_url == t.LISTENER
    (stream,) = xds.registry.streams()
    assert stream.types[t.CLUSTER].responses_sent == 1


async def test_two_nodes_share_resource_bytes_but_get_their_own_snapshots(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    xds.cache.set_snapshot("node-2", b.mesh(pool, {"a": (1,), "b": (2,)}))
    one, two = xds.sotw("node-1"), xds.sotw("node-2")
    await one.request(t.CLUSTER)
    await two.request(t.CLUSTER)
    first, second = await one.recv(), await two.recv()
    assert names_of(first, cluster_pb2.Cluster) == ["a"]
    assert names_of(second, cluster_pb2.Cluster) == ["a", "b"]
    snap1, snap2 = xds.cache.get("node-1"), xds.cache.get("node-2")
    assert snap1 is not None and snap2 is not None
    assert snap1.of_type(t.CLUSTER)["a"] is snap2.of_type(t.CLUSTER)["a"]


async def test_default_snapshot_serves_nodes_without_their_own(xds: XdsHarness) -> None:
    xds.cache.set_default(b.mesh(xds.cache.pool, {"d": (1,)}))
    client = xds.sotw("anyone")
    await client.request(t.CLUSTER)
    assert names_of(await client.recv(), cluster_pb2.Cluster) == ["d"]


async def test_client_disconnect_removes_the_stream(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    client = xds.sotw()
    await client.request(t.CLUSTER)
    await client.recv()
    assert len(xds.registry) == 1
    assert xds.metric("nodemesh_xds_connected_streams", variant="sotw") == 1
    # Counted once the write completes, which may be just after the client has read it.
    await wait_until(lambda: xds.metric("nodemesh_xds_pushes_total", type="cds", variant="sotw") == 1)
    client.cancel()
    await wait_until(lambda: len(xds.registry) == 0)
    assert xds.metric("nodemesh_xds_connected_streams", variant="sotw") == 0
