"""End to end: a running ControlPlane fed from files (`--source files:DIR`) and scripted delta ADS clients.

A change written to a file converges once the node's proxies ACK it (one more observation of the
convergence histogram, with a plausible value); a proxy that NACKs ends the push as `nacked`; /metrics
serves every metric with its HELP line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest_asyncio
import yaml

from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from controlplane.xds import typeurls as t
from tests.xds.harness import DeltaClient, wait_until

NODE = "node-a"


def _mesh(endpoint_ips: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"nodemesh.io/mesh": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.19.0.1"}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {
                "clusterIP": "198.19.128.10",
                "selector": {"app": "reviews"},
                "ports": [{"name": "http", "port": 9080, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "reviews-abc",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "reviews"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "nodeName": NODE} for ip in endpoint_ips],
            "ports": [{"name": "http", "port": 8080}],
        },
    ]


def write_mesh(directory: Path, endpoint_ips: list[str]) -> None:
    # Renamed into place: the polling source never reads half a file.
    staged = directory / ".mesh.yaml.tmp"
    staged.write_text(yaml.safe_dump_all(_mesh(endpoint_ips)))
    staged.replace(directory / "mesh.yaml")


@pytest_asyncio.fixture
async def controlplane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    write_mesh(tmp_path, ["198.18.1.5"])
    settings = Settings(
        source=SourceSpec(kind=SourceKind.FILES, path=tmp_path),
        xds_listen=("127.0.0.1:0",),
        admin_listen="127.0.0.1:0",
        poll_interval=0.02,
        debounce_quiet=0.01,
        debounce_max=0.05,
        shutdown_grace=0.1,
    )
    async with ControlPlane(settings).running() as running:
        await asyncio.wait_for(running.ready.wait(), 10)
        yield running


@contextlib.asynccontextmanager
async def connected(controlplane: ControlPlane) -> AsyncIterator[DeltaClient]:
    """A delta client of the node, subscribed to clusters and endpoints, its first responses ACKed."""
    async with contextlib.AsyncExitStack() as stack:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{controlplane.xds_ports[0]}")
        stack.push_async_callback(channel.close, None)
        client = DeltaClient(channel, NODE)
        stack.push_async_callback(client.close)
        await client.request(t.CLUSTER)
        await client.ack(await client.recv_applied())
        await client.request(t.ENDPOINT, ["*"])
        await client.ack(await client.recv_applied())
        yield client


def sample(controlplane: ControlPlane, name: str, **labels: str) -> float:
    return controlplane.metrics_registry.get_sample_value(name, labels) or 0.0


def converged(controlplane: ControlPlane) -> float:
    return sample(controlplane, "nodemesh_convergence_pushes_total", outcome="converged")


async def test_a_file_change_converges_when_the_proxies_ack_and_a_nack_is_counted(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    async with connected(controlplane) as acking:
        # The node's streams are in sync with what they subscribed to.
        await wait_until(lambda: sample(controlplane, "nodemesh_proxies_not_synced") == 0)
        before = sample(controlplane, "nodemesh_convergence_seconds_count")
        before_sum = sample(controlplane, "nodemesh_convergence_seconds_sum")
        assert before == converged(controlplane)

        write_mesh(tmp_path, ["198.18.1.5", "198.18.1.6"])
        eds = await acking.recv_applied()
        assert eds.type_url == t.ENDPOINT
        assert converged(controlplane) == before, "not converged before the ACK"
        assert sample(controlplane, "nodemesh_proxies_not_synced") == 1
        await acking.ack(eds)
        await wait_until(lambda: sample(controlplane, "nodemesh_convergence_seconds_count") == before + 1)
        took = sample(controlplane, "nodemesh_convergence_seconds_sum") - before_sum
        # At least the debounce quiet period; far below the timeout.
        assert 0.01 <= took < 10, took
        assert sample(controlplane, "nodemesh_proxies_not_synced") == 0
        assert sample(controlplane, "nodemesh_debounce_wait_seconds_count") >= 2  # initial push + this one
        assert sample(controlplane, "nodemesh_node_config_max_bytes") > 0

        # A second proxy of the node that refuses the next change: the push ends as nacked.
        async with connected(controlplane) as nacking:
            nacked = sample(controlplane, "nodemesh_convergence_pushes_total", outcome="nacked")
            done = converged(controlplane)
            write_mesh(tmp_path, ["198.18.1.7"])
            await acking.ack(await acking.recv_applied())
            refused = await nacking.recv_applied()
            await nacking.request(refused.type_url, nonce=refused.nonce, error="endpoint rejected")
            await wait_until(
                lambda: (
                    sample(controlplane, "nodemesh_convergence_pushes_total", outcome="nacked") == nacked + 1
                )
            )
            assert converged(controlplane) == done
            assert sample(controlplane, "nodemesh_proxies_not_synced") == 1  # the one in error


async def test_metrics_are_served_with_their_help_lines(controlplane: ControlPlane) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{controlplane.admin_port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    help_lines = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    expected = {
        "nodemesh_convergence_seconds",
        "nodemesh_convergence_pushes_total",
        "nodemesh_proxies_not_synced",
        "nodemesh_debounce_wait_seconds",
        "nodemesh_debounce_coalesced_notifications_total",
        "nodemesh_node_config_bytes",
        "nodemesh_node_config_max_bytes",
        "nodemesh_pushes_total",
        "nodemesh_translate_seconds",
        "nodemesh_push_seconds",
        "nodemesh_xds_pushes_total",
        "nodemesh_xds_push_latency_seconds",
        "nodemesh_xds_connected_streams",
        "nodemesh_xds_nacks_total",
    }
    assert expected <= help_lines, sorted(expected - help_lines)
    for outcome in ("converged", "nacked", "timeout"):
        assert f'nodemesh_convergence_pushes_total{{outcome="{outcome}"}}' in text
