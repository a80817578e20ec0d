"""Server lifecycle: unix sockets, added servicers, shutdown, and a slow client that never reads."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.errors import XdsError
from controlplane.xds.server import XdsServer, grpc_options
from controlplane.xds.status import ProxyStatusRegistry
from tests.xds import builders as b
from tests.xds.harness import SotwClient, make_settings, wait_until


async def test_unix_socket_replaces_a_stale_socket_and_sets_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "xds.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves the file behind, like a crashed server
    cache = SnapshotCache()
    cache.set_snapshot("node-1", b.mesh(cache.pool, {"a": (1,)}))
    async with XdsServer(cache, ProxyStatusRegistry(), make_settings(unix_socket_mode=0o600)) as server:
        ports = await server.listen([f"unix:{path}", "127.0.0.1:0"])
        assert ports[0] == 0 and ports[1] > 0
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
            client = SotwClient(channel, "node-1")
            await client.request(t.CLUSTER)
            response = await client.recv()
            assert len(response.resources) == 1
            await client.close()
    assert not path.exists()


async def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    async with XdsServer(SnapshotCache(), ProxyStatusRegistry(), make_settings()) as server:
        with pytest.raises(XdsError, match="not a socket"):
            await server.listen([f"unix:{path}"])
    assert path.read_text() == "keep me"


async def test_extra_servicers_are_registered() -> None:
    calls: list[grpc.aio.Server] = []

    def add(server: grpc.aio.Server) -> None:
        calls.append(server)

    async with XdsServer(
        SnapshotCache(), ProxyStatusRegistry(), make_settings(), extra_servicers=[add]
    ) as server:
        await server.listen(["127.0.0.1:0"])
    assert len(calls) == 1


def test_keepalive_and_connection_age_become_grpc_options() -> None:
    options = dict(
        grpc_options(make_settings(keepalive_time=20, max_connection_age=60, max_connection_age_grace=5))
    )
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert options["grpc.max_connection_age_grace_ms"] == 5_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert "grpc.http2.min_ping_interval_without_data_ms" in options
    assert "grpc.max_connection_age_ms" not in dict(grpc_options(make_settings(max_connection_age=None)))


async def test_stop_ends_open_streams_with_unavailable() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("node-1", b.mesh(cache.pool, {"a": (1,)}))
    registry = ProxyStatusRegistry()
    server = XdsServer(cache, registry, make_settings(stop_grace=5.0))
    async with server:
        (port,) = await server.listen(["127.0.0.1:0"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = SotwClient(channel, "node-1")
            await client.request(t.CLUSTER)
            await client.recv()
            stopping = asyncio.create_task(server.stop())
            code, details = await client.status()
            await stopping
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in details
    assert len(registry) == 0


async def test_a_client_that_never_reads_does_not_block_others() -> None:
    cache = SnapshotCache()
    pool = cache.pool
    # Responses of several MB to the slow node fill its flow-control window; one push permit only.
    big = {f"big-{i}": (1,) for i in range(40)}

    def slow_snapshot(generation: int) -> object:
        return b.snapshot(
            pool,
            *(b.eds_cluster(n, timeout_s=generation, padding=200_000) for n in big),
            *(b.endpoints(n, 1) for n in big),
        )

    cache.set_snapshot("slow", slow_snapshot(1))  # type: ignore[arg-type]
    cache.set_snapshot("fast", b.mesh(pool, {"f": (1,)}))
    settings = make_settings(max_concurrent_pushes=1, push_permit_timeout=0.05)
    async with XdsServer(cache, ProxyStatusRegistry(), settings) as server:
        (port,) = await server.listen(["127.0.0.1:0"])
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as slow_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as fast_channel,
        ):
            slow = SotwClient(slow_channel, "slow")
            await slow.request(t.CLUSTER)  # and never read
            fast = SotwClient(fast_channel, "fast")
            await fast.request(t.CLUSTER)
            await fast.ack(await fast.recv())
            for generation in range(2, 6):
                cache.set_snapshot("slow", slow_snapshot(generation))  # type: ignore[arg-type]
                cache.set_snapshot("fast", b.mesh(pool, {"f": (1,)}, cluster_timeout={"f": generation}))
                response = await fast.recv()
                cluster = cluster_pb2.Cluster()
                response.resources[0].Unpack(cluster)
                assert cluster.connect_timeout.seconds == generation
                await fast.ack(response)
            # The slow stream is still blocked writing: its later generations were never sent.
            slow_status = next(s for s in server.registry.streams() if s.node_id == "slow")
            slow_cds = slow_status.types.get(t.CLUSTER)
            assert slow_cds is None or slow_cds.responses_sent < 5
            await slow.close()
            await wait_until(lambda: len(server.registry) == 1)
            await fast.close()
