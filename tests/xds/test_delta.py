"""Incremental (delta) ADS, rule by rule, against a real server with scripted clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import XdsServer
from controlplane.xds.status import ConfigStatus, ProxyStatusRegistry
from tests.xds import builders as b
from tests.xds.harness import XdsHarness, make_settings


def sent(response: object) -> dict[str, str]:
    return {r.name: r.version for r in response.resources}  # type: ignore[attr-defined]


async def test_empty_first_subscribe_is_wildcard_for_cds(xds: XdsHarness) -> None:
    snap = b.mesh(xds.cache.pool, {"a": (1,), "b": (2,)})
    xds.cache.set_snapshot("node-1", snap)
    client = xds.delta()
    await client.request(t.CLUSTER)
    response = await client.recv()
    assert sent(response) == {n: r.version for n, r in snap.of_type(t.CLUSTER).items()}
    assert list(response.removed_resources) == []


async def test_wildcard_with_nothing_to_send_still_answers(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,)}))
    client = xds.delta()
    await client.request(t.LISTENER)
    response = await client.recv()
    assert (response.type_url, sent(response)) == (t.LISTENER, {})


async def test_subscribe_unsubscribe_and_resubscribe(xds: XdsHarness) -> None:
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,), "b": (2,), "c": (3,)}))
    client = xds.delta()
    await client.request(t.ENDPOINT, ["a"])
    first = await client.recv_applied()
    assert set(sent(first)) == {"a"}
    await client.request(t.ENDPOINT, ["b"], nonce=first.nonce)
    second = await client.recv_applied()
    assert set(sent(second)) == {"b"}  # only the new one
    # Unsubscribing needs no response; the barrier shows none came.
    await client.request(t.ENDPOINT, unsubscribe=["a"], nonce=second.nonce)
    await client.request(t.LISTENER)
    assert (await client.recv()).type_url == t.LISTENER
    await client.request(t.ENDPOINT, ["a"])
    third = await client.recv_applied()
    assert set(sent(third)) == {"a"}


async def test_removed_resources_for_deleted_clusters(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}))
    client = xds.delta()
    await client.request(t.CLUSTER)
    await client.ack(await client.recv_applied())
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    response = await client.recv_applied()
    assert sent(response) == {}
    assert list(response.removed_resources) == ["b"]
    assert client.held[t.CLUSTER].keys() == {"a"}


async def test_nonexistent_subscribed_name_is_reported_once(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    client = xds.delta()
    await client.request(t.ENDPOINT, ["a", "ghost"])
    first = await client.recv_applied()
    assert set(sent(first)) == {"a"}
    assert list(first.removed_resources) == ["ghost"]
    await client.ack(first)
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2)}))
    second = await client.recv_applied()
    assert set(sent(second)) == {"a"}
    assert list(second.removed_resources) == []
    # Once it exists, it is sent.
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2), "ghost": (9,)}))
    third = await client.recv_applied()
    assert set(sent(third)) == {"ghost"}


async def test_initial_resource_versions_send_only_what_differs(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    snap = b.mesh(pool, {"a": (1,), "b": (2,), "c": (3,)})
    xds.cache.set_snapshot("node-1", snap)
    clusters = snap.of_type(t.CLUSTER)
    client = xds.delta()
    initial = {"a": clusters["a"].version, "b": "some-old-version", "gone": "v1"}
    await client.request(t.CLUSTER, initial=initial)
    response = await client.recv()
    assert set(sent(response)) == {"b", "c"}
    assert list(response.removed_resources) == ["gone"]


async def test_stale_nonce_still_updates_the_subscription(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}))
    client = xds.delta()
    await client.request(t.ENDPOINT, ["a"])
    first = await client.recv_applied()
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 5), "b": (2,)}))
    second = await client.recv_applied()
    await client.request(t.ENDPOINT, ["b"], nonce=first.nonce)
    await client.ack(second)
    third = await client.recv_applied()
    assert set(sent(third)) == {"b"}
    await client.ack(third)
    await _wait_status(xds, t.ENDPOINT, ConfigStatus.SYNCED)
    (stream,) = xds.registry.streams()
    assert dict(stream.types[t.ENDPOINT].acked_resources) == client.held[t.ENDPOINT]


async def _wait_status(xds: XdsHarness, type_url: str, status: ConfigStatus) -> None:
    from tests.xds.harness import wait_until

    await wait_until(lambda: xds.registry.streams()[0].types[type_url].status is status)


async def test_nack_recorded_and_not_resent_until_newer(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    client = xds.delta()
    await client.request(t.CLUSTER)
    first = await client.recv()
    await client.request(t.CLUSTER, nonce=first.nonce, error="cluster a is bad")
    await client.request(t.LISTENER)
    assert (await client.recv()).type_url == t.LISTENER  # barrier: no CDS resend
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2)}))  # endpoints only
    await client.request(t.ENDPOINT, ["a"])
    assert (await client.recv()).type_url == t.ENDPOINT
    (stream,) = xds.registry.streams()
    status = stream.types[t.CLUSTER]
    assert status.status is ConfigStatus.ERROR
    assert status.last_nack is not None and status.last_nack.message == "cluster a is bad"
    assert status.responses_sent == 1
    assert xds.metric("nodemesh_xds_nacks_total", type="cds") == 1
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1, 2)}, cluster_timeout={"a": 3}))
    second = await client.recv()
    assert second.type_url == t.CLUSTER and set(sent(second)) == {"a"}


async def test_endpoints_resent_after_cluster_change(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}))
    client = xds.delta()
    await client.request(t.CLUSTER)
    await client.ack(await client.recv_applied())
    await client.request(t.ENDPOINT, ["a", "b"])
    eds = await client.recv_applied()
    await client.ack(eds)
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,), "b": (2,)}, cluster_timeout={"a": 9}))
    cds = await client.recv_applied()
    assert (cds.type_url, set(sent(cds))) == (t.CLUSTER, {"a"})
    resent = await client.recv_applied()
    assert resent.type_url == t.ENDPOINT
    assert sent(resent) == {"a": sent(eds)["a"]}  # same version, sent again


@pytest_asyncio.fixture
async def second_server() -> AsyncIterator[XdsHarness]:
    cache = SnapshotCache()  # its own pool: versions agree by content, not by sharing
    registry = ProxyStatusRegistry()
    async with XdsServer(cache, registry, make_settings()) as server:
        (port,) = await server.listen(["127.0.0.1:0"])
        from prometheus_client import CollectorRegistry

        harness = XdsHarness(
            cache=cache,
            registry=registry,
            server=server,
            target=f"127.0.0.1:{port}",
            metrics=CollectorRegistry(),
        )
        try:
            yield harness
        finally:
            await harness.close()


async def test_reconnect_to_another_instance_resends_nothing_held(
    xds: XdsHarness, second_server: XdsHarness
) -> None:
    routes = {"r1": "a", "r2": "b"}
    xds.cache.set_snapshot("node-1", b.mesh(xds.cache.pool, {"a": (1,), "b": (2,)}, routes=routes))
    second_server.cache.set_snapshot(
        "node-1", b.mesh(second_server.cache.pool, {"a": (1,), "b": (2,)}, routes=routes)
    )
    client = xds.delta()
    subscriptions = {t.CLUSTER: [], t.ENDPOINT: ["a", "b"], t.LISTENER: [], t.ROUTE: ["r1", "r2"]}
    for type_url, names in subscriptions.items():
        await client.request(type_url, names)
        response = await client.recv_applied()
        assert len(response.resources) == len(names) or not names
        await client.ack(response)
    held = client.held
    assert sum(len(v) for v in held.values()) == 8
    client.cancel()

    # The same client state, resumed on the other instance, as Envoy and the node agent do.
    resumed = second_server.delta()
    for type_url, names in subscriptions.items():
        await resumed.request(type_url, names, initial=held[type_url])
        response = await resumed.recv()
        assert response.type_url == type_url
        assert list(response.resources) == [] and list(response.removed_resources) == []
