"""mTLS end to end through exactly what translation produces: two node Envoys (loopback "nodes"
127.0.0.11 and 127.0.0.12) boot the static form of their NodeConfigs, take their certificates from real
agent SDS (issued by the real CA service), and carry pods' HTTP requests and TCP streams over HBONE to a
pod on the other node, where AuthorizationPolicies decide and the server learns the caller's SPIFFE ID
and which certificate it presented (XFCC `URI` and `Hash`).

No redirect here: a client connects straight to its node's outbound listener, whose addresses are the
Service's ClusterIP:ports (so the original destination is the listener's own address), binding its pod IP
as the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.clock import SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Operation,
    Source,
    StringMatch,
)
from controlplane.model.duration import Duration
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate import naming
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator
from integration.envoy import EnvoyProcess
from integration.meshidentity import certificate_service, http_get, node_identities
from integration.staticconfig import static_bootstrap
from integration.wire import CaptureError, PacketCapture, find_tcpdump, is_tls_client_hello
from nodeagent.identity.manager import IdentityManager
from tests.nodeagent.fakes import FakeTime
from tests.translate.builders import (
    endpoint,
    endpoint_slice,
    http_port,
    mesh,
    namespace,
    node,
    pod,
    service,
    tcp_port,
)

pytestmark = pytest.mark.envoy

TD = "cluster.local"
NODE_A, NODE_B = "127.0.0.11", "127.0.0.12"
FRONTEND, BATCH, CRON, API = "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.2.1"
STRANGER = "127.0.1.9"  # no pod of the mesh
FRONTEND_ID = SpiffeId.for_workload(TD, "web", "frontend")
BATCH_ID = SpiffeId.for_workload(TD, "web", "batch")
CRON_ID = SpiffeId.for_workload(TD, "web", "cron")
API_ID = SpiffeId.for_workload(TD, "shop", "api")
PLACEMENT = {"node-a": (FRONTEND_ID, BATCH_ID, CRON_ID), "node-b": (API_ID,)}
API_BODY = "hello from api"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the destination pod: an HTTP server and a TCP echo server -------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class ApiPod:
    http_port: int = 0
    echo_port: int = 0
    requests: list[Request] = field(default_factory=list)
    echo_connections: int = 0
    echo_received: bytearray = field(default_factory=bytearray)

    def caller(self, path: str) -> str:
        """The XFCC the request for `path` arrived with."""
        (found,) = [r for r in self.requests if r.path == path]
        return found.headers["x-forwarded-client-cert"]


def _port_on(ip: str) -> int:
    with socket.socket() as probe:
        # An ephemeral port on the pod's address, learnt first: aiohttp's site hides its socket.
        probe.bind((ip, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def api_pod() -> AsyncIterator[ApiPod]:
    pod_ = ApiPod()

    async def handle(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        pod_.requests.append(Request(method=request.method, path=request.path, headers=headers))
        return web.Response(text=API_BODY)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pod_.echo_connections += 1
        try:
            while data := await reader.read(65536):
                pod_.echo_received.extend(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    echo_server = await asyncio.start_server(echo, API, 0)
    try:
        pod_.echo_port = echo_server.sockets[0].getsockname()[1]
        pod_.http_port = _port_on(API)
        await web.TCPSite(runner, API, pod_.http_port).start()
        yield pod_
    finally:
        echo_server.close()
        await runner.cleanup()
        await echo_server.wait_closed()


# -- the mesh ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    http: int  # the Service's HTTP port on its ClusterIP (the outbound listener's own port)
    tcp: int  # its TCP (echo) port, another address of the outbound listener
    hbone: int


def _policies(api: ApiPod) -> tuple[AuthorizationPolicy, ...]:
    selector = FrozenMap({"app": "api"})

    def principal(spiffe_id: SpiffeId) -> StringMatch:
        return StringMatch.parse(f"{TD}/ns/{spiffe_id.namespace}/sa/{spiffe_id.service_account}")

    def policy(name: str, action: AuthorizationAction, *rules: AuthorizationRule) -> AuthorizationPolicy:
        return AuthorizationPolicy(namespace="shop", name=name, selector=selector, action=action, rules=rules)

    allow, deny = AuthorizationAction.ALLOW, AuthorizationAction.DENY
    return (
        # cron is authenticated but never allowed.
        policy(
            "callers",
            allow,
            AuthorizationRule(sources=(Source(principals=(principal(FRONTEND_ID), principal(BATCH_ID))),)),
        ),
        # L7: nobody reaches /admin/ over HTTP, and batch may only read.
        policy(
            "no-admin",
            deny,
            AuthorizationRule(
                operations=(Operation(ports=(api.http_port,), paths=(StringMatch.parse("/admin/*"),)),)
            ),
        ),
        policy(
            "batch-reads",
            deny,
            AuthorizationRule(
                sources=(Source(principals=(principal(BATCH_ID),)),),
                operations=(Operation(ports=(api.http_port,), not_methods=(StringMatch.parse("GET"),)),),
            ),
        ),
        # L4: batch may not open the echo port at all.
        policy(
            "no-batch-echo",
            deny,
            AuthorizationRule(
                sources=(Source(principals=(principal(BATCH_ID),)),),
                operations=(Operation(ports=(api.echo_port,)),),
            ),
        ),
    )


def _mesh(ports: Ports, api: ApiPod) -> MeshSnapshot:
    return mesh(
        namespace("web"),
        namespace("shop"),
        node("node-a", NODE_A),
        node("node-b", NODE_B),
        pod("web", "frontend-1", "node-a", FRONTEND, sa="frontend"),
        pod("web", "batch-1", "node-a", BATCH, sa="batch"),
        pod("web", "cron-1", "node-a", CRON, sa="cron"),
        pod("shop", "api-1", "node-b", API, sa="api", labels=FrozenMap({"app": "api"})),
        service(
            "shop",
            "api",
            NODE_A,
            http_port(ports.http, target=api.http_port),
            tcp_port(ports.tcp, target=api.echo_port),
        ),
        endpoint_slice("shop", "api", endpoint(API), ports=(("http", api.http_port), ("tcp", api.echo_port))),
        *_policies(api),
    )


def _listen_also_on(bootstrap: dict[str, Any], port: int) -> None:
    """The outbound listener takes the Service's second port too (a redirect would deliver it there)."""
    for listener in bootstrap["static_resources"]["listeners"]:
        if listener["name"] == "outbound":
            address = listener["address"]["socketAddress"]["address"]
            listener["additionalAddresses"] = [
                {"address": {"socketAddress": {"address": address, "portValue": port}}}
            ]


@dataclass
class Nodes:
    a: EnvoyProcess
    b: EnvoyProcess
    api: ApiPod
    ports: Ports
    managers: dict[str, IdentityManager]

    async def stats(self, envoy: EnvoyProcess, prefix: str) -> dict[str, int]:
        """Counters and gauges whose names start with `prefix` (taken literally: cluster names hold '|')."""
        data = await envoy.admin_json("/stats?format=json")
        return {
            s["name"]: int(s["value"])
            for s in data.get("stats", [])
            if isinstance(s.get("value"), int) and s["name"].startswith(prefix)
        }

    def service_cluster_stat(self, stats: dict[str, int], port: int, name: str) -> int:
        # Envoy writes the cluster name's ':' as '_' in stat names.
        return stats[f"cluster.shop/api_{port}.{name}"]


@contextlib.asynccontextmanager
async def two_nodes(
    envoy_binary: str,
    short_dir: Path,
    tmp_path: Path,
    *,
    max_connection_age: Duration | None = None,
    certificate_ttl: timedelta | None = None,
    node_a_time: FakeTime | None = None,
) -> AsyncIterator[Nodes]:
    ports = Ports(http=_free_port(), tcp=_free_port(), hbone=_free_port())
    settings = TranslateSettings(outbound_port=ports.http, hbone_port=ports.hbone)
    if max_connection_age is not None:
        settings = dataclasses.replace(settings, max_connection_age=max_connection_age)
    lifetimes: dict[str, Any] = {}
    if certificate_ttl is not None:
        # No backdating: the certificate's half life is then exactly when the agent renews it.
        lifetimes = {"default_ttl": certificate_ttl, "max_ttl": certificate_ttl, "backdate": timedelta(0)}
    ca = CertificateAuthority(generate_root(TD, SystemClock()), clock=SystemClock(), **lifetimes)
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(api_pod())
        snapshot = _mesh(ports, api)
        translator = Translator(settings)
        target = await stack.enter_async_context(certificate_service(ca, PLACEMENT))
        envoys, managers = {}, {}
        for name in ("node-a", "node-b"):
            fake = node_a_time if name == "node-a" else None
            time_seams: dict[str, Any] = {"clock": fake, "sleep": fake.sleep} if fake is not None else {}
            managers[name], sds = await stack.enter_async_context(
                node_identities(name, target, frozenset(PLACEMENT[name]), short_dir, **time_seams)
            )
            config = translator.translate_node(snapshot, name)
            bootstrap = json.loads(json.dumps(static_bootstrap(config, sds_socket=str(sds.socket_path))))
            _listen_also_on(bootstrap, ports.tcp)
            envoys[name] = await stack.enter_async_context(
                EnvoyProcess(bootstrap=bootstrap, workdir=tmp_path / name, name=name, binary=envoy_binary)
            )
        a, b = envoys["node-a"], envoys["node-b"]
        try:
            await a.wait_ready()
            await b.wait_ready()
            yield Nodes(a=a, b=b, api=api, ports=ports, managers=managers)
        except BaseException:
            print(f"--- node-a ---\n{a.log_tail(60)}\n--- node-b ---\n{b.log_tail(60)}")
            raise


# -- clients ----------------------------------------------------------------------------------------------


class TcpSession:
    """One TCP connection from a pod through its node's outbound listener."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, source_ip: str, port: int) -> TcpSession:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(NODE_A, port, local_addr=(source_ip, 0)), 5
        )
        return cls(reader, writer)

    async def exchange(self, line: str) -> str:
        """Send a line; the line that comes back, "" when the connection ends first."""
        try:
            self.writer.write(line.encode() + b"\n")
            await self.writer.drain()
            return (await asyncio.wait_for(self.reader.readline(), 10)).decode().rstrip("\n")
        except ConnectionError:
            return ""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def tcp_exchange(source_ip: str, port: int, line: str) -> str:
    """A new connection, one line there and back; "" when the connection ends first. A refusal can come so
    fast that the reset beats the event loop to the finished handshake: that too is "closed"."""
    try:
        session = await TcpSession.open(source_ip, port)
    except ConnectionResetError:
        return ""
    try:
        return await session.exchange(line)
    finally:
        await session.close()


def _xfcc(server: SpiffeId, caller: IdentityManager, spiffe_id: SpiffeId) -> str:
    """The XFCC the destination must see for a request `caller` makes with its current certificate."""
    material = caller.certificate(spiffe_id)
    assert material is not None
    digest = material.certificate.leaf.fingerprint(hashes.SHA256()).hex()
    return f"By={server};Hash={digest};URI={spiffe_id}"


async def _plaintext_answer(host: str, port: int, source_ip: str) -> bytes:
    """What a plaintext HTTP request to a TLS-only port gets back before the connection ends."""
    return (await http_get(host, port, source_ip))[1].encode()


# -- tests ------------------------------------------------------------------------------------------------


async def test_http_between_nodes_goes_over_hbone_encrypted_with_the_callers_identity(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    tcpdump = find_tcpdump()
    if tcpdump is None:
        pytest.skip("no tcpdump: the proof of TLS on the wire needs it (Debian package tcpdump)")
    async with two_nodes(envoy_binary, short_dir, tmp_path) as nodes:
        a, b, ports, api = nodes.a, nodes.b, nodes.ports, nodes.api
        marker = f"/private/{secrets.token_hex(8)}"
        # The pod-to-node leg and both nodes' 15008: what a fabric link between nodes would carry.
        expression = f"tcp and (port {ports.hbone} or port {ports.http})"
        try:
            capture = PacketCapture(interface="lo", expression=expression, path=tmp_path / "wire.pcap")
            async with capture:
                # The allowed caller: its request arrives with its identity, whatever XFCC it forged.
                status, body = await http_get(
                    NODE_A,
                    ports.http,
                    FRONTEND,
                    path=marker,
                    headers={"x-forwarded-client-cert": f"URI={BATCH_ID}"},
                )
        except CaptureError as exc:
            pytest.skip(f"tcpdump cannot capture here: {exc}")
        assert (status, body) == (200, API_BODY)
        assert api.caller(marker) == _xfcc(API_ID, nodes.managers["node-a"], FRONTEND_ID)

        # On the wire: the pod's plaintext leg carries the request and the answer in the clear (so the
        # capture saw this traffic), the node-to-node leg a TLS ClientHello and never either of them.
        flows = capture.flows()
        to_service = [
            p for f, p in flows.items() if (f.destination.ip, f.destination.port) == (NODE_A, ports.http)
        ]
        from_service = [p for f, p in flows.items() if (f.source.ip, f.source.port) == (NODE_A, ports.http)]
        tunnel_out = [
            p for f, p in flows.items() if (f.destination.ip, f.destination.port) == (NODE_B, ports.hbone)
        ]
        tunnel_back = [p for f, p in flows.items() if (f.source.ip, f.source.port) == (NODE_B, ports.hbone)]
        assert any(marker.encode() in p for p in to_service), flows.keys()
        assert any(API_BODY.encode() in p for p in from_service), flows.keys()
        assert tunnel_out and all(is_tls_client_hello(p) for p in tunnel_out), tunnel_out
        assert tunnel_back and all(p[:1] == b"\x16" for p in tunnel_back), tunnel_back  # ServerHello
        for payload in tunnel_out + tunnel_back:
            for secret in (marker.encode(), API_BODY.encode(), b"HTTP/1.1", b"x-forwarded-client-cert"):
                assert secret not in payload

        # No pod of the mesh at all: no identity to borrow, so no tunnel (hbone_originate has no chain
        # for it) and the request never reaches the server.
        assert (await http_get(NODE_A, ports.http, STRANGER))[0] == 503
        assert len(api.requests) == 1

        # A pod talking plaintext straight to its own or another node's 15008 gets no HTTP answer: TLS
        # with a client certificate from the mesh's CA is the only way in.
        assert await _plaintext_answer(NODE_B, ports.hbone, FRONTEND) == b""
        assert await _plaintext_answer(NODE_A, ports.hbone, BATCH) == b""

        # Envoy agrees: node-a opened an HBONE connection with the caller's identity, node-b's 15008
        # completed a TLS handshake.
        stats_a = await nodes.stats(a, "cluster.hbone")
        assert stats_a["cluster.hbone|web|frontend.ssl.handshake"] >= 1, stats_a
        stats_b = await nodes.stats(b, "listener")
        assert sum(v for k, v in stats_b.items() if k.endswith(".ssl.handshake")) >= 1, stats_b


async def test_authorization_by_identity_method_path_and_tcp_port(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    async with two_nodes(envoy_binary, short_dir, tmp_path) as nodes:
        ports, api = nodes.ports, nodes.api
        http = ports.http

        async def status(source: str, path: str, method: str = "GET") -> int:
            return (await http_get(NODE_A, http, source, path=path, method=method))[0]

        # HTTP: identity, method and path decide; 403 comes from node-b, before the pod.
        assert await status(FRONTEND, "/orders") == 200
        assert await status(FRONTEND, "/orders", "POST") == 200
        assert await status(FRONTEND, "/admin/users") == 403  # path
        assert await status(BATCH, "/reports") == 200
        assert await status(BATCH, "/reports", "POST") == 403  # method
        assert await status(BATCH, "/admin/users") == 403
        assert await status(CRON, "/orders") == 403  # identity
        assert [(r.method, r.path) for r in api.requests] == [
            ("GET", "/orders"),
            ("POST", "/orders"),
            ("GET", "/reports"),
        ]

        # TCP: frontend's stream echoes; batch (denied on that port) and cron (allowed nowhere) are
        # closed, and none of their data reaches the pod.
        assert await tcp_exchange(FRONTEND, ports.tcp, "from frontend") == "from frontend"
        assert await tcp_exchange(BATCH, ports.tcp, "from batch") == ""
        assert await tcp_exchange(CRON, ports.tcp, "from cron") == ""
        assert await tcp_exchange(STRANGER, ports.tcp, "from nowhere") == ""
        assert bytes(api.echo_received) == b"from frontend\n"

        # The TCP denials happened at the CONNECT on node-b's 15008: the pod never saw a connection from
        # batch or cron (so a server that speaks first greets no one it should not).
        assert api.echo_connections == 1
        stats_b = await nodes.stats(nodes.b, "http.")
        connect = naming.stat_prefix(naming.inbound_chain(API_ID.namespace, API_ID.service_account))
        requests = naming.stat_prefix(naming.inbound_pod_chain(API))
        assert stats_b[f"http.{connect}.rbac.denied"] == 2, stats_b
        assert stats_b[f"http.{requests}.rbac.denied"] == 4, stats_b


async def test_connections_are_pooled_per_source_identity_and_destination_node(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    rounds = 12
    async with two_nodes(envoy_binary, short_dir, tmp_path) as nodes:
        ports, api = nodes.ports, nodes.api
        for i in range(rounds):
            # A new client connection each time, both ports of the Service (one destination node and
            # identity), and another identity's requests interleaved.
            assert await tcp_exchange(FRONTEND, ports.tcp, f"line {i}") == f"line {i}"
            assert (await http_get(NODE_A, ports.http, FRONTEND, path=f"/frontend/{i}"))[0] == 200
            assert (await http_get(NODE_A, ports.http, BATCH, path=f"/batch/{i}"))[0] == 200
        # Pooled, and never shared across identities: every request arrived as its own caller.
        expected = {
            "frontend": _xfcc(API_ID, nodes.managers["node-a"], FRONTEND_ID),
            "batch": _xfcc(API_ID, nodes.managers["node-a"], BATCH_ID),
        }
        for request in api.requests:
            assert request.headers["x-forwarded-client-cert"] == expected[request.path.split("/")[1]]
        assert len(api.requests) == 2 * rounds

        stats = await nodes.stats(nodes.a, "cluster.")
        frontend_cx = stats["cluster.hbone|web|frontend.upstream_cx_total"]
        frontend_rq = stats["cluster.hbone|web|frontend.upstream_rq_total"]
        batch_cx = stats["cluster.hbone|web|batch.upstream_cx_total"]
        # Each TCP connection is one tunnel (CONNECT), all over the same HBONE connection or two.
        assert frontend_rq >= rounds + 1, stats
        assert 1 <= frontend_cx <= 2, stats
        assert 1 <= batch_cx <= 2, stats
        # HTTP: the Service cluster pools its tunnels by client IP, not per client connection.
        http_cx = nodes.service_cluster_stat(stats, ports.http, "upstream_cx_total")
        http_rq = nodes.service_cluster_stat(stats, ports.http, "upstream_rq_total")
        assert http_rq == 2 * rounds, stats
        assert 2 <= http_cx <= 4, stats
        # node-b completed as few handshakes.
        handshakes = sum(
            v for k, v in (await nodes.stats(nodes.b, "listener")).items() if k.endswith("ssl.handshake")
        )
        assert handshakes <= 4
        print(
            f"pooling: {3 * rounds} client connections; hbone frontend cx={frontend_cx} rq={frontend_rq}, "
            f"batch cx={batch_cx}; http service cluster cx={http_cx} rq={http_rq}; "
            f"node-b handshakes={handshakes}"
        )


async def _wait(condition: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_renewed_certificate_takes_new_connections_while_an_open_stream_keeps_working(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    ttl = timedelta(seconds=30)  # room for a loaded machine: the switch must come before expiry
    # Under a fifth of the lifetime: no pooled connection outlives a certificate's remaining validity.
    age = Duration.of(seconds=1)
    clock = FakeTime(datetime.now(UTC))
    async with two_nodes(
        envoy_binary, short_dir, tmp_path, max_connection_age=age, certificate_ttl=ttl, node_a_time=clock
    ) as nodes:
        ports, api, manager = nodes.ports, nodes.api, nodes.managers["node-a"]
        old = manager.certificate(FRONTEND_ID)
        assert old is not None
        old_xfcc = _xfcc(API_ID, manager, FRONTEND_ID)
        # A long-lived stream, opened with the first certificate.
        session = await TcpSession.open(FRONTEND, ports.tcp)
        try:
            assert await session.exchange("before renewal") == "before renewal"
            assert (await http_get(NODE_A, ports.http, FRONTEND, path="/before"))[0] == 200
            assert api.caller("/before") == old_xfcc

            # The agent renews (its clock reaches the renewal time): a new key, a new certificate, SDS.
            async def renewed_by_agent() -> bool:
                current = manager.certificate(FRONTEND_ID)
                if current is not None and current.serial != old.serial:
                    return True
                if clock.next_wake is not None:
                    clock.advance_to(clock.next_wake)
                return False

            await _wait(renewed_by_agent, "the agent to renew frontend's certificate")
            new = manager.certificate(FRONTEND_ID)
            assert new is not None and new.serial != old.serial and new.not_after > old.not_after
            new_xfcc = _xfcc(API_ID, manager, FRONTEND_ID)

            async def envoy_has_it() -> bool:
                dump = await nodes.a.admin_json("/certs")
                serials = {
                    int(c["serial_number"], 16)
                    for entry in dump.get("certificates", [])
                    for c in entry.get("cert_chain", [])
                }
                return new.serial in serials

            await _wait(envoy_has_it, "node-a's Envoy to load the renewed certificate")
            # New connections move to the new certificate once the pooled ones age out (a handful of
            # requests may still ride them: Envoy does not drain a pool when its secret changes).
            seen: list[str] = []

            async def renewed() -> bool:
                path = f"/renewal/{len(seen)}"
                assert (await http_get(NODE_A, ports.http, FRONTEND, path=path))[0] == 200
                seen.append(api.caller(path))
                return seen[-1] == new_xfcc

            await _wait(renewed, "a request with the renewed certificate")
            assert set(seen) <= {old_xfcc, new_xfcc}
            assert datetime.now(UTC) < old.not_after, (
                "too slow: the first certificate expired before the switch"
            )

            # Past the old certificate's expiry: every new request presents the new one, and the stream
            # opened before the renewal still echoes.
            await asyncio.sleep(max(0.0, (old.not_after - datetime.now(UTC)).total_seconds()) + 0.5)
            for i in range(5):
                path = f"/after/{i}"
                assert (await http_get(NODE_A, ports.http, FRONTEND, path=path))[0] == 200
                assert api.caller(path) == new_xfcc
            assert await tcp_exchange(FRONTEND, ports.tcp, "new stream") == "new stream"
            assert await session.exchange("after expiry") == "after expiry"
            # The first stream's server side never changed connection: 2 in all (it and "new stream").
            assert api.echo_connections == 2

            stats = await nodes.stats(nodes.a, "cluster.hbone|web|frontend.")
            print(
                f"renewal: serial {old.serial:x} -> {new.serial:x}; requests on the old certificate after "
                f"renewal: {seen.count(old_xfcc)} of {len(seen)}; hbone cx_total="
                f"{stats['cluster.hbone|web|frontend.upstream_cx_total']} max_duration_reached="
                f"{stats['cluster.hbone|web|frontend.upstream_cx_max_duration_reached']}"
            )
        finally:
            await session.close()
