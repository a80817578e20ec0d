"""meshctl analyze, describe and check against a running control plane fed a mesh from files (`--source
files:DIR`), with its CA: a node agent's CSR is signed through the real certificate service (bootstrap
token), a scripted agent stream syncs the node's plan, and meshctl's output is checked against both."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest_asyncio
import yaml

from controlplane.app import ControlPlane
from controlplane.ca.identity import SpiffeId
from controlplane.settings import Settings, SourceKind, SourceSpec
from controlplane.xds import typeurls as t
from meshctl import cli
from nodeagent.identity.client import GrpcCertificateClient, SignedCertificate, TokenFile
from nodeagent.identity.keys import generate_key
from tests.xds.harness import SotwClient, wait_until

NODE = "node-a"
TOKEN = "s3cret-token-a"

MESH: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"nodemesh.io/mesh": "enabled"}},
    },
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "web", "labels": {"nodemesh.io/mesh": "enabled"}},
    },
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.19.0.1"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reviews-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "reviews"}},
        "spec": {
            "nodeName": NODE,
            "serviceAccountName": "reviews",
            "containers": [{"name": "app", "image": "x"}],
        },
        "status": {"phase": "Running", "podIP": "198.18.1.5", "podIPs": [{"ip": "198.18.1.5"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "legacy",
            "namespace": "shop",
            "uid": "u-2",
            "labels": {"app": "legacy", "nodemesh.io/mesh": "disabled"},
        },
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running", "podIP": "198.18.1.6", "podIPs": [{"ip": "198.18.1.6"}]},
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
        "endpoints": [
            {
                "addresses": ["198.18.1.5"],
                "nodeName": NODE,
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": "reviews-1"},
            }
        ],
        "ports": [{"name": "http", "port": 8080}],
    },
    {
        "apiVersion": "nodemesh.io/v1alpha1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "strict", "namespace": "shop"},
        "spec": {"mtls": {"mode": "STRICT"}},
    },
]

ROUTES: list[dict[str, Any]] = [
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "reviews-from-web", "namespace": "web"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "namespace": "shop"}],
            "rules": [{"backendRefs": [{"name": "reviews", "namespace": "shop", "port": 9080}]}],
        },
    }
]

BROKEN_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "to-nowhere", "namespace": "shop"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
        "rules": [{"backendRefs": [{"name": "nowhere", "port": 9080}]}],
    },
}


def write(path: Path, documents: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


async def meshctl(*argv: str) -> tuple[int, str, str]:
    """`meshctl ARGV` in-process, in a worker thread: its clients block, and the control plane runs here."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


@pytest_asyncio.fixture
async def controlplane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    write(mesh / "mesh.yaml", MESH)
    write(mesh / "routes.yaml", [*ROUTES, BROKEN_ROUTE])
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{NODE} {TOKEN}\n")
    settings = Settings(
        source=SourceSpec(kind=SourceKind.FILES, path=mesh),
        xds_listen=("127.0.0.1:0",),
        admin_listen="127.0.0.1:0",
        debounce_quiet=0.01,
        debounce_max=0.1,
        poll_interval=0.05,
        shutdown_grace=0.2,
        ca_file=tmp_path / "ca.pem",
        node_tokens=tokens,
    )
    async with ControlPlane(settings).running() as running:
        await asyncio.wait_for(running.ready.wait(), 10)
        yield running


def flags(cp: ControlPlane) -> list[str]:
    return ["--controlplane", f"127.0.0.1:{cp.xds_ports[0]}", "--admin", f"127.0.0.1:{cp.admin_port}"]


async def sign(cp: ControlPlane, tmp_path: Path, *, ttl: timedelta) -> SignedCertificate:
    """What the node agent does: a key on the node, a CSR, the bootstrap token as its credential."""
    (tmp_path / "token").write_text(TOKEN)
    spiffe_id = SpiffeId.for_workload("cluster.local", "shop", "reviews")
    key = generate_key(spiffe_id)
    async with GrpcCertificateClient(
        target=f"127.0.0.1:{cp.xds_ports[0]}", token=TokenFile(tmp_path / "token"), ttl=ttl
    ) as client:
        return await client.sign(key.csr_pem(), spiffe_id, NODE)


@contextlib.asynccontextmanager
async def synced_agent(cp: ControlPlane) -> AsyncIterator[None]:
    """A scripted node agent: subscribes to the plan types and ACKs them."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_ports[0]}") as channel:
        agent = SotwClient(channel, NODE)
        agent.node.cluster = "nodemesh-agent"
        try:
            plan = (t.NODE_SETTINGS, t.SERVICE_VIP, t.WORKLOAD)
            for type_url in plan:
                await agent.request(type_url)
            for _ in plan:
                await agent.ack(await agent.recv())

            def acked() -> bool:
                streams = [s for s in cp.proxies.streams() if s.node_id == NODE]
                return bool(streams) and all(
                    u in streams[0].types and streams[0].types[u].acked_nonce for u in plan
                )

            await wait_until(acked)
            yield
        finally:
            await agent.close()


def lines_with(out: str, text: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


async def test_analyze_describe_and_check_live(controlplane: ControlPlane, tmp_path: Path) -> None:
    cp = controlplane

    # analyze: the live diagnostics, the broken route named with its field path; exit 1 on the error.
    code, out, err = await meshctl(*flags(cp), "analyze")
    assert code == 1, err
    [row] = lines_with(out, "HTTPRoute/shop/to-nowhere")
    assert row.split()[:4] == [
        "Error",
        "HTTPRoute/shop/to-nowhere",
        "spec.rules[0].backendRefs[0]",
        "BackendNotFound",
    ]
    assert out.splitlines()[-1] == "1 error, 0 warnings in 1 object"
    code, out, _ = await meshctl(*flags(cp), "analyze", "-o", "json")
    assert code == 1
    assert [d["object"]["name"] for d in json.loads(out)] == ["to-nowhere"]

    # check: the CRD error fails; the CA runs but has issued nothing yet.
    code, out, _ = await meshctl(*flags(cp), "check")
    assert code == 1
    [crds] = lines_with(out, "crds")
    assert crds.startswith("FAIL") and "1 error(s), 0 warning(s)" in crds
    assert "Error: HTTPRoute/shop/to-nowhere spec.rules[0].backendRefs[0]: BackendNotFound" in out
    [certificates] = lines_with(out, "certificates")
    assert certificates.startswith("OK") and "no certificate in use yet" in certificates

    # The route is fixed: analyze is clean and exits 0.
    write(Path(cp.settings.source.directory()) / "routes.yaml", ROUTES)
    assert cp.publisher is not None
    publisher = cp.publisher
    await wait_until(lambda: not publisher.diagnostics, within=10)
    code, out, _ = await meshctl(*flags(cp), "analyze")
    assert (code, out) == (0, "no problems found\n")

    # A node agent gets its workload's certificate, and its plan stream syncs.
    signed = await sign(cp, tmp_path, ttl=timedelta(hours=1))
    async with synced_agent(cp):
        code, out, err = await meshctl(*flags(cp), "describe", "pod", "shop/reviews-1")
        assert code == 0, err
        lines = out.splitlines()
        for expected in [
            "Pod:              shop/reviews-1",
            "Node:             node-a (198.19.0.1)",
            "IPs:              198.18.1.5",
            "Mesh:             meshed",
            "Identity:         spiffe://cluster.local/ns/shop/sa/reviews",
            "  shop/reviews  198.19.128.10  http 9080->8080 HTTP  (via selector and endpoints)",
            "  as Service/shop/reviews: HTTPRoute/web/reviews-from-web",
            "  workload     STRICT     (namespace by PeerAuthentication/shop/strict)",
            "  port 8080    STRICT     (namespace by PeerAuthentication/shop/strict)",
            "Node sync (node-a):",
            "  envoy  not connected",
        ]:
            assert expected in lines, f"{expected!r} not in:\n{out}"
        [agent] = [line for line in lines if line.startswith("  agent")]
        assert "SYNCED  node_settings=SYNCED service_vip=SYNCED workload=SYNCED" in agent
        [cert] = [line for line in lines if "serial" in line]
        assert cert.split()[:3] == [
            "spiffe://cluster.local/ns/shop/sa/reviews",
            "serial",
            f"{signed.serial:x}",
        ]
        assert cert.endswith("VALID")

        code, out, _ = await meshctl(*flags(cp), "describe", "pod", "shop/reviews-1", "-o", "json")
        assert code == 0
        document = json.loads(out)
        assert document["sync"]["agent"]["synced"] is True
        assert document["certificates"]["certificates"][0]["serial"] == f"{signed.serial:x}"
        assert document["routes"]["outbound"] == []  # the only route is web's consumer route

        code, out, _ = await meshctl(*flags(cp), "check")
        assert code == 0, out
        [certificates] = lines_with(out, "certificates")
        assert certificates.startswith("OK")
        assert "1 certificate(s) on 1 node(s) valid; next to expire: node-a " in certificates
        assert f"serial {signed.serial:x} expires in" in certificates
        assert lines_with(out, "crds")[0].startswith("OK")

    # An opted-out pod says why; a missing pod exits 1 with a clear message; a bad argument exits 2.
    code, out, _ = await meshctl(*flags(cp), "describe", "pod", "shop/legacy")
    assert code == 0
    assert "Mesh:             not meshed" in out
    assert "the pod opted out with label nodemesh.io/mesh=disabled" in out
    code, out, err = await meshctl(*flags(cp), "describe", "pod", "shop/nope")
    assert (code, out) == (1, "")
    assert "pod shop/nope not found" in err
    code, _, err = await meshctl(*flags(cp), "describe", "pod", "nope")
    assert code == 2 and "NAMESPACE/NAME" in err

    # A certificate in the last quarter of its life (the agent should have renewed it): check warns.
    short = await sign(cp, tmp_path, ttl=timedelta(seconds=90))
    code, out, _ = await meshctl(*flags(cp), "check")
    assert code == 0
    [certificates] = lines_with(out, "certificates")
    assert certificates.startswith("WARN") and "1 in the last quarter of their lifetime" in certificates
    assert f"serial {short.serial:x} expires in" in out


async def test_unreachable_control_plane_exits_3() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    for argv in (["analyze"], ["describe", "pod", "shop/x"]):
        code, out, err = await meshctl("--admin", dead, *argv)
        assert (code, out) == (3, "")
        assert f"cannot reach the control plane's admin endpoint at {dead}" in err
