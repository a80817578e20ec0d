"""PeerAuthentication end to end: a STRICT policy applied to the API server double goes through the model,
the translator (the mode per workload and port in each node's plan), the node agents, and the inbound hook
in the kernel; unmodified clients see the result.

Two nodes: `shop/api` on node1 and `shop/api-2` on node2 (HTTP 8080 and 9090), behind Service `shop/api`;
`web/client` (node1, meshed) calls the Service over HBONE; `outside/stranger` (node1) and
`outside/far` (node2) are not in the mesh and call the pods directly in plaintext.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from integration.mesh import EchoReply, MeshHarness, MeshPod, Port
from integration.topology_fixtures import skip_unless_mesh_can_run

pytestmark = [pytest.mark.privileged, pytest.mark.envoy, pytest.mark.asyncio(loop_scope="module")]

PEER_AUTH = ("nodemesh.io/v1alpha1", "PeerAuthentication")


def peer_authentication(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": PEER_AUTH[0],
        "kind": PEER_AUTH[1],
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeshHarness]:
    skip_unless_mesh_can_run("kubectl")
    async with MeshHarness(workdir=tmp_path_factory.mktemp("strict"), nodes=2) as harness:
        try:
            node1, node2 = harness.nodes
            await harness.enroll("shop")
            await harness.enroll("web")
            harness.ensure_namespace("outside")
            for name, node in (("api", node1), ("api-2", node2)):
                await harness.add_pod(
                    "shop", name, node=node, labels={"app": "api"}, service_account="api", ports=(8080, 9090)
                )
            await harness.add_pod("web", "client", node=node1, labels={"app": "client"})
            await harness.add_pod("outside", "stranger", node=node1, labels={"app": "x"})
            await harness.add_pod("outside", "far", node=node2, labels={"app": "x"})
            await harness.add_service(
                "shop", "api", {"app": "api"}, (Port(name="http", port=80, target=8080),)
            )
            await harness.wait_synced()
        except BaseException:
            print(harness.logs(80))
            raise
        yield harness


def pod(mesh: MeshHarness, ref: str) -> MeshPod:
    return mesh.pods[ref]


async def direct(mesh: MeshHarness, client: str, server: str, port: int = 8080) -> EchoReply:
    return await mesh.call(pod(mesh, client), f"http://{pod(mesh, server).ip}:{port}/", seconds=3)


def refused(reply: EchoReply) -> bool:
    # curl error 7, "Couldn't connect" at once: the hook's RST. A silent drop would be a timeout (28).
    return reply.status == 0 and reply.error.startswith("curl: (7)")


async def test_strict_refuses_plaintext_and_serves_the_mesh_and_removal_restores_it(
    mesh: MeshHarness,
) -> None:
    service = mesh.service("shop", "api").url("/")
    for client, server in (("outside/stranger", "shop/api"), ("outside/far", "shop/api")):
        assert (await direct(mesh, client, server)).status == 200  # PERMISSIVE by default

    mesh.apply(peer_authentication("strict", "shop", {"mtls": {"mode": "STRICT"}}))
    await mesh.wait_synced()
    try:
        for client in ("outside/stranger", "outside/far"):
            for server in ("shop/api", "shop/api-2"):
                reply = await direct(mesh, client, server)
                assert refused(reply), (client, server, reply)
        # The meshed client reaches both pods over HBONE; the pods see the node Envoy connecting.
        replies = [await mesh.call(pod(mesh, "web/client"), service) for _ in range(6)]
        assert {r.status for r in replies} == {200}, replies
        for reply in replies:
            assert reply.pod is not None
            assert reply.peer_ip == pod(mesh, reply.pod).node.ip

        # Port level: 9090 stays open to plaintext while the workload is STRICT.
        mesh.apply(
            peer_authentication(
                "api-metrics",
                "shop",
                {
                    "selector": {"matchLabels": {"app": "api"}},
                    "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}},
                },
            )
        )
        await mesh.wait_synced()
        assert (await direct(mesh, "outside/far", "shop/api", 9090)).status == 200
        assert refused(await direct(mesh, "outside/far", "shop/api", 8080))
    finally:
        mesh.delete(*PEER_AUTH, "api-metrics", "shop")
        mesh.delete(*PEER_AUTH, "strict", "shop")
        await mesh.wait_synced()

    for client in ("outside/stranger", "outside/far"):
        assert (await direct(mesh, client, "shop/api-2")).status == 200
