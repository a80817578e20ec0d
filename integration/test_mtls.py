"""mTLS end to end through exactly what translation produces: two node Envoys (loopback "nodes"
127.0.0.11 and 127.0.0.12) boot the static form of their NodeConfigs, take their certificates from real
agent SDS (issued by the real CA service), and carry a pod's HTTP request over HBONE to a pod on the other
node, where an AuthorizationPolicy decides and the server learns the caller's SPIFFE ID.

No redirect here: a client connects straight to its node's outbound listener, whose address is the
Service's ClusterIP:port (so the original destination is the listener's own address), binding its pod IP
as the source.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.clock import SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Source,
    StringMatch,
)
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator
from integration.envoy import EnvoyProcess
from integration.meshidentity import certificate_service, http_get, node_identities
from integration.staticconfig import static_bootstrap
from tests.translate.builders import endpoint, endpoint_slice, http_port, mesh, namespace, node, pod, service

pytestmark = pytest.mark.envoy

TD = "cluster.local"
NODE_A, NODE_B = "127.0.0.11", "127.0.0.12"
FRONTEND, BATCH, API = "127.0.1.1", "127.0.1.2", "127.0.2.1"
STRANGER = "127.0.1.9"  # no pod of the mesh
FRONTEND_ID = SpiffeId.for_workload(TD, "web", "frontend")
BATCH_ID = SpiffeId.for_workload(TD, "web", "batch")
API_ID = SpiffeId.for_workload(TD, "shop", "api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _mesh(service_port: int, server_port: int) -> MeshSnapshot:
    only_frontend = AuthorizationPolicy(
        namespace="shop",
        name="api-callers",
        selector=FrozenMap({"app": "api"}),
        action=AuthorizationAction.ALLOW,
        rules=(
            AuthorizationRule(sources=(Source(principals=(StringMatch.parse(f"{TD}/ns/web/sa/frontend"),)),)),
        ),
    )
    return mesh(
        namespace("web"),
        namespace("shop"),
        node("node-a", NODE_A),
        node("node-b", NODE_B),
        pod("web", "frontend-1", "node-a", FRONTEND, sa="frontend"),
        pod("web", "batch-1", "node-a", BATCH, sa="batch"),
        pod("shop", "api-1", "node-b", API, sa="api", labels=FrozenMap({"app": "api"})),
        service("shop", "api", NODE_A, http_port(service_port, target=server_port)),
        endpoint_slice("shop", "api", endpoint(API), ports=(("http", server_port),)),
        only_frontend,
    )


@dataclass
class Server:
    port: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def api_server() -> AsyncIterator[Server]:
    server = Server()

    async def handle(request: web.Request) -> web.Response:
        server.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(text="hello from api")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        with socket.socket() as probe:
            # An ephemeral port on the pod's address, learnt first: aiohttp's site hides its socket.
            probe.bind((API, 0))
            server.port = probe.getsockname()[1]
        site = web.TCPSite(runner, API, server.port)
        await site.start()
        yield server
    finally:
        await runner.cleanup()


async def _plaintext_answer(host: str, port: int, source_ip: str) -> bytes:
    """What a plaintext HTTP request to a TLS-only port gets back before the connection ends."""
    return (await http_get(host, port, source_ip))[1].encode()


async def test_http_between_nodes_goes_over_hbone_with_identity_and_authorization(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    service_port, hbone_port = _free_port(), _free_port()
    settings = TranslateSettings(outbound_port=service_port, hbone_port=hbone_port)
    ca = CertificateAuthority(generate_root(TD, SystemClock()), clock=SystemClock())
    placement = {"node-a": [FRONTEND_ID, BATCH_ID], "node-b": [API_ID]}
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(api_server())
        translator = Translator(settings)
        snapshot = _mesh(service_port, server.port)
        target = await stack.enter_async_context(certificate_service(ca, placement))
        envoys = {}
        for name in ("node-a", "node-b"):
            _, sds = await stack.enter_async_context(
                node_identities(name, target, frozenset(placement[name]), short_dir)
            )
            config = translator.translate_node(snapshot, name)
            bootstrap = json.loads(json.dumps(static_bootstrap(config, sds_socket=str(sds.socket_path))))
            envoys[name] = await stack.enter_async_context(
                EnvoyProcess(bootstrap=bootstrap, workdir=tmp_path / name, name=name, binary=envoy_binary)
            )
        a, b = envoys["node-a"], envoys["node-b"]
        try:
            await a.wait_ready()
            await b.wait_ready()

            # The allowed caller: its request arrives with its identity, whatever XFCC it forged.
            status, body = await http_get(
                NODE_A, service_port, FRONTEND, headers={"x-forwarded-client-cert": f"URI={BATCH_ID}"}
            )
            assert (status, body) == (200, "hello from api")
            (seen,) = server.headers
            assert seen["x-forwarded-client-cert"] == f"By={API_ID};URI={FRONTEND_ID}"

            # Another identity on the same node: authenticated, but the policy does not allow it.
            assert (await http_get(NODE_A, service_port, BATCH))[0] == 403
            # No pod of the mesh at all: no identity to borrow, so no tunnel (hbone_originate has no chain
            # for it) and the request never reaches the server.
            assert (await http_get(NODE_A, service_port, STRANGER))[0] == 503
            assert len(server.headers) == 1

            # A pod talking plaintext straight to its own or another node's 15008 gets no HTTP answer: TLS
            # with a client certificate from the mesh's CA is the only way in.
            assert await _plaintext_answer(NODE_B, hbone_port, FRONTEND) == b""
            assert await _plaintext_answer(NODE_A, hbone_port, BATCH) == b""

            # TLS on the wire: node-a opened HBONE connections with the callers' identities, node-b's 15008
            # completed TLS handshakes, and the api pod was reached only through the pod listener.
            stats_a = await a.stats("cluster.hbone")
            assert stats_a["cluster.hbone|web|frontend.upstream_cx_total"] >= 1, stats_a
            assert stats_a["cluster.hbone|web|frontend.ssl.handshake"] >= 1, stats_a
            assert stats_a["cluster.hbone|web|batch.ssl.handshake"] >= 1, stats_a
            stats_b = await b.stats("listener")
            handshakes = {k: v for k, v in stats_b.items() if k.endswith(".ssl.handshake")}
            assert sum(handshakes.values()) >= 2, stats_b
        except BaseException:
            print(f"--- node-a ---\n{a.log_tail(60)}\n--- node-b ---\n{b.log_tail(60)}")
            raise
