"""CSDS reports, per connected node and type, what was sent, ACKed and NACKed."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2

from controlplane.xds import typeurls as t
from tests.xds import builders as b
from tests.xds.harness import XdsHarness, wait_until


def entries(config: Any) -> dict[tuple[str, str], Any]:
    return {(c.type_url, c.name): c for c in config.generic_xds_configs}


async def test_csds_reports_sent_acked_and_nacked_per_node(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    xds.cache.set_snapshot("node-1", b.mesh(pool, {"a": (1,)}))
    xds.cache.set_snapshot("node-2", b.mesh(pool, {"b": (2,)}))
    one, two = xds.sotw("node-1"), xds.delta("node-2")
    await one.request(t.CLUSTER)
    cds = await one.recv()
    await one.ack(cds)
    await one.request(t.ENDPOINT, ["a"])
    eds = await one.recv()
    await one.nack(eds, "endpoint a rejected", ["a"])
    await two.request(t.CLUSTER)
    delta_cds = await two.recv()
    await wait_until(lambda: len(xds.registry) == 2)
    # The NACK is recorded after the server reads it: wait for that.
    await wait_until(
        lambda: any(s.node_id == "node-1" and s.types[t.ENDPOINT].last_nack for s in xds.registry.streams())
    )

    stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(xds.channel())
    response = await stub.FetchClientStatus(csds_pb2.ClientStatusRequest())
    configs = {c.node.id: c for c in response.config}
    assert configs.keys() == {"node-1", "node-2"}

    node1 = entries(configs["node-1"])
    assert node1[(t.CLUSTER, "")].version_info == cds.version_info
    assert node1[(t.CLUSTER, "")].config_status == csds_pb2.SYNCED
    assert node1[(t.CLUSTER, "a")].config_status == csds_pb2.SYNCED
    assert node1[(t.ENDPOINT, "")].config_status == csds_pb2.ERROR
    assert node1[(t.ENDPOINT, "")].error_state.details == "endpoint a rejected"
    assert node1[(t.ENDPOINT, "")].error_state.version_info == eds.version_info
    assert node1[(t.ENDPOINT, "a")].config_status == csds_pb2.ERROR

    node2 = entries(configs["node-2"])
    assert node2[(t.CLUSTER, "b")].config_status == csds_pb2.STALE  # sent, not ACKed yet
    assert node2[(t.CLUSTER, "b")].version_info == delta_cds.resources[0].version
    assert configs["node-2"].node.cluster == "test-cluster"


async def test_csds_node_matchers_select_by_node_id(xds: XdsHarness) -> None:
    pool = xds.cache.pool
    for node_id in ("gw-1", "worker-1", "worker-2"):
        xds.cache.set_snapshot(node_id, b.mesh(pool, {"a": (1,)}))
        client = xds.sotw(node_id)
        await client.request(t.CLUSTER)
        await client.recv()
    stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(xds.channel())
    by_prefix = csds_pb2.ClientStatusRequest(
        node_matchers=[node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(prefix="worker-"))]
    )
    response = await stub.FetchClientStatus(by_prefix)
    assert sorted(c.node.id for c in response.config) == ["worker-1", "worker-2"]

    exact = csds_pb2.ClientStatusRequest(
        node_matchers=[node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(exact="gw-1"))]
    )
    call = stub.StreamClientStatus()
    await call.write(exact)
    streamed = await call.read()
    assert [c.node.id for c in streamed.config] == ["gw-1"]
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
