"""AuthorizationPolicy is not bypassed by plaintext (issue 4): a PERMISSIVE pod whose policies could not admit
an unauthenticated caller refuses plaintext in the kernel, like STRICT, port by port; what they would admit
stays reachable. End to end: API server double, model, translator (the plan's modes), node agents, the
inbound hook; unmodified clients.

`bank` is enrolled and PERMISSIVE (no PeerAuthentication). Two nodes. node1: `bank/vault` (admits only
alice: ALLOW by principal) and `bank/ledger` (DENY on port 9090), each HTTP on 8080 and 9090. node2:
`bank/alice` and `bank/mallory` (meshed), and `outside/stranger` (not in the mesh: plaintext, straight to
the pod IPs). The policies exist before the pods, so every plan is built with them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from integration.mesh import EchoReply, MeshHarness, MeshPod, Port
from integration.topology_fixtures import skip_unless_mesh_can_run

pytestmark = [pytest.mark.privileged, pytest.mark.envoy, pytest.mark.asyncio(loop_scope="module")]

NS = "bank"
AUTHZ = ("nodemesh.io/v1alpha1", "AuthorizationPolicy")
ALICE = f"cluster.local/ns/{NS}/sa/alice"


def authorization_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": AUTHZ[0],
        "kind": AUTHZ[1],
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


VAULT_ALICE = authorization_policy(
    "vault-alice",
    {
        "selector": {"matchLabels": {"app": "vault"}},
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [ALICE]}}]}],
    },
)
LEDGER_ADMIN = authorization_policy(
    "ledger-admin",
    {
        "selector": {"matchLabels": {"app": "ledger"}},
        "action": "DENY",
        "rules": [{"to": [{"operation": {"ports": ["9090"]}}]}],
    },
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeshHarness]:
    skip_unless_mesh_can_run("kubectl")
    async with MeshHarness(workdir=tmp_path_factory.mktemp("authz-plaintext"), nodes=2) as harness:
        try:
            node1, node2 = harness.nodes
            await harness.enroll(NS)
            harness.ensure_namespace("outside")
            harness.apply(VAULT_ALICE)
            harness.apply(LEDGER_ADMIN)
            for name in ("vault", "ledger"):
                await harness.add_pod(
                    NS, name, node=node1, labels={"app": name}, service_account=name, ports=(8080, 9090)
                )
                await harness.add_service(
                    NS,
                    name,
                    {"app": name},
                    (Port(name="http", port=80, target=8080), Port(name="http-admin", port=90, target=9090)),
                )
            for name in ("alice", "mallory"):
                await harness.add_pod(NS, name, node=node2, labels={"app": name}, service_account=name)
            await harness.add_pod("outside", "stranger", node=node2, labels={"app": "x"})
            await harness.wait_synced()
        except BaseException:
            print(harness.logs(80))
            raise
        yield harness


def pod(mesh: MeshHarness, ref: str) -> MeshPod:
    return mesh.pods[ref]


async def plaintext(mesh: MeshHarness, server: str, port: int) -> EchoReply:
    """The unmeshed pod calls `server`'s pod IP directly."""
    target = pod(mesh, f"{NS}/{server}")
    return await mesh.call(pod(mesh, "outside/stranger"), f"http://{target.ip}:{port}/", seconds=3)


async def meshed(mesh: MeshHarness, client: str, server: str, port: int = 80) -> EchoReply:
    """A meshed pod calls `server`'s Service (over HBONE to the server's node)."""
    return await mesh.call(pod(mesh, f"{NS}/{client}"), mesh.service(NS, server).url("/", port), seconds=3)


def refused(reply: EchoReply) -> bool:
    # curl error 7, "Couldn't connect" at once: the hook's RST. A silent drop would be a timeout (28).
    return reply.status == 0 and reply.error.startswith("curl: (7)")


async def test_an_allow_policy_refuses_plaintext_and_keeps_its_meshed_caller(mesh: MeshHarness) -> None:
    vault, node1 = pod(mesh, f"{NS}/vault"), mesh.nodes[0]
    allowed = await meshed(mesh, "alice", "vault")
    assert (allowed.status, allowed.pod) == (200, vault.ref), allowed
    assert allowed.peer_ip == node1.ip, allowed  # delivered by node1's Envoy, from HBONE
    denied = await meshed(mesh, "mallory", "vault")
    assert (denied.status, denied.pod) == (403, None), denied  # RBAC answered; the pod never saw it
    for port in (8080, 9090):
        reply = await plaintext(mesh, "vault", port)
        assert refused(reply), (port, reply)


async def test_a_deny_policy_refuses_plaintext_on_its_port_only(mesh: MeshHarness) -> None:
    ledger = pod(mesh, f"{NS}/ledger")
    open_port = await plaintext(mesh, "ledger", 8080)
    assert (open_port.status, open_port.pod) == (200, ledger.ref), open_port  # PERMISSIVE still works
    assert open_port.peer_ip == pod(mesh, "outside/stranger").ip, open_port
    assert refused(await plaintext(mesh, "ledger", 9090))
    # Meshed callers get the same answer from RBAC.
    assert (await meshed(mesh, "mallory", "ledger")).status == 200
    assert (await meshed(mesh, "mallory", "ledger", 90)).status == 403


async def test_a_policy_change_opens_and_closes_plaintext(mesh: MeshHarness) -> None:
    vault = pod(mesh, f"{NS}/vault")
    mesh.delete(*AUTHZ, "vault-alice", NS)
    try:
        await mesh.wait_synced()
        reply = await plaintext(mesh, "vault", 8080)
        assert (reply.status, reply.pod) == (200, vault.ref), reply
    finally:
        mesh.apply(VAULT_ALICE)
        await mesh.wait_synced()
    assert refused(await plaintext(mesh, "vault", 8080))
