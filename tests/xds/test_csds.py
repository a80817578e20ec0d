"""CSDS reports, per connected node and type, what was sent, ACKed and NACKed."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from google.protobuf import struct_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.csds import STREAM_METADATA_KEY, build_status_response
from controlplane.xds.server import XdsServer
from controlplane.xds.status import ProxyStatusRegistry, Variant
from tests.xds import builders as b
from tests.xds.harness import SotwClient, XdsHarness, make_settings, wait_until


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


def test_each_client_config_carries_the_stream_facts_in_node_metadata() -> None:
    registry = ProxyStatusRegistry(clock=lambda: 1_700_000_000.5)
    metadata = struct_pb2.Struct()
    metadata.update({"nodemesh.io/kind": "envoy", STREAM_METADATA_KEY: "spoofed by the client"})
    node = base_pb2.Node(id="node-a", cluster="nodemesh-envoy", metadata=metadata)
    registry.open_stream(
        node_id="node-a",
        cluster="nodemesh-envoy",
        node_bytes=node.SerializeToString(),
        peer="ipv4:1.2.3.4:5",
        variant=Variant.DELTA,
    )
    response = build_status_response(registry, csds_pb2.ClientStatusRequest(), "replica-7")
    [config] = response.config
    fields = config.node.metadata.fields
    assert fields["nodemesh.io/kind"].string_value == "envoy"  # the node's own metadata is kept
    facts = fields[STREAM_METADATA_KEY].struct_value.fields
    assert facts["variant"].string_value == "delta"
    assert facts["replica"].string_value == "replica-7"
    assert facts["peer"].string_value == "ipv4:1.2.3.4:5"
    assert facts["connected_since"].string_value == "2023-11-14T22:13:20.500Z"
    assert facts["id"].number_value == 1


async def test_the_server_reports_its_replica_over_grpc() -> None:
    cache, registry = SnapshotCache(), ProxyStatusRegistry()
    cache.set_snapshot("node-1", b.mesh(cache.pool, {"a": (1,)}))
    async with XdsServer(cache, registry, make_settings(), replica="cp-0") as server:
        (port,) = await server.listen(["127.0.0.1:0"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = SotwClient(channel, "node-1")
            await client.request(t.CLUSTER)
            await client.ack(await client.recv())
            await wait_until(lambda: len(registry) == 1)
            stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            response = await stub.FetchClientStatus(csds_pb2.ClientStatusRequest())
            await client.close()
    [config] = response.config
    facts = config.node.metadata.fields[STREAM_METADATA_KEY].struct_value.fields
    assert facts["replica"].string_value == "cp-0"
    assert facts["variant"].string_value == "sotw"


async def test_a_type_requested_but_not_answered_is_not_sent(xds: XdsHarness) -> None:
    # No snapshot for this node (and no default): the requests stay unanswered.
    sotw, delta = xds.sotw("lonely-1"), xds.delta("lonely-2")
    await sotw.request(t.CLUSTER)
    await delta.request(t.WORKLOAD)
    await wait_until(
        lambda: sum(len(s.types) for s in xds.registry.streams()) == 2 and len(xds.registry) == 2
    )
    stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(xds.channel())
    response = await stub.FetchClientStatus(csds_pb2.ClientStatusRequest())
    configs = {c.node.id: entries(c) for c in response.config}
    assert configs["lonely-1"][(t.CLUSTER, "")].config_status == csds_pb2.NOT_SENT
    assert configs["lonely-2"][(t.WORKLOAD, "")].config_status == csds_pb2.NOT_SENT
    assert configs["lonely-1"][(t.CLUSTER, "")].version_info == ""
