"""The agent's identities in a real Envoy: certificates issued by the real CA service, served by our SDS
server on a unix socket, used by an mTLS listener, and renewed with no restart and no dropped connection.

Envoy's bootstrap is static but for the secrets: a listener on 127.0.0.1 whose DownstreamTlsContext takes
its certificate (by SPIFFE ID) and its validation context (ROOTCA) over SDS, and requires client certificates;
behind it a tcp_proxy to an echo server. The client is Python's ssl, presenting another identity of the CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, wrappers_pb2
from prometheus_client import CollectorRegistry

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.authorization import BootstrapTokenAuthenticator, StaticPlacement
from controlplane.ca.clock import SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.ca.sdsnames import certificate_secret_config, sds_cluster, trust_bundle_secret_config
from controlplane.ca.service import CertificateService
from integration.envoy import EnvoyProcess
from nodeagent.identity.client import GrpcCertificateClient, TokenFile
from nodeagent.identity.keys import generate_key
from nodeagent.identity.manager import IdentityManager
from nodeagent.sds import SdsServer
from tests.nodeagent.fakes import FakeTime

pytestmark = pytest.mark.envoy

NODE = "node-a"
SERVER = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")
CLIENT = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/frontend")
LISTENER = "mtls"


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _static_cluster(name: str, port: int) -> cluster_pb2.Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
            )
        )
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def bootstrap(sds_socket: Path, echo_port: int) -> dict[str, Any]:
    tls = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[certificate_secret_config(SERVER)],
            validation_context_sds_secret_config=trust_bundle_secret_config(),
        ),
    )
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix="echo", cluster="echo")
    listener = listener_pb2.Listener(
        name=LISTENER,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=0)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                transport_socket=base_pb2.TransportSocket(
                    name="envoy.transport_sockets.tls", typed_config=_packed(tls)
                ),
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.tcp_proxy", typed_config=_packed(proxy)
                    )
                ],
            )
        ],
    )
    config = bootstrap_pb2.Bootstrap(
        node=base_pb2.Node(id=NODE, cluster="nodemesh"),
        static_resources=bootstrap_pb2.Bootstrap.StaticResources(
            listeners=[listener], clusters=[sds_cluster(str(sds_socket)), _static_cluster("echo", echo_port)]
        ),
    )
    result: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return result


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    handlers: set[asyncio.Task[None]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        handlers.add(current)
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            handlers.discard(current)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def certificate_service(ca: CertificateAuthority, token: str) -> AsyncIterator[str]:
    service = CertificateService(
        signer=ca,
        authenticator=BootstrapTokenAuthenticator({NODE: token}, clock=SystemClock()),
        placement=StaticPlacement({NODE: [(SERVER.namespace, SERVER.service_account)]}),
        trust_domain="cluster.local",
        registry=CollectorRegistry(),
    )
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(2)


def client_context(ca: CertificateAuthority, directory: Path) -> ssl.SSLContext:
    """Python's ssl as a mesh client: CLIENT's certificate from the same CA, the bundle as its roots."""
    key = generate_key(CLIENT)
    issued = ca.sign(key.csr_pem(), CLIENT)
    chain_file, key_file = directory / "client-chain.pem", directory / "client-key.pem"
    chain_file.write_text(issued.certificate_pem + "".join(issued.chain_pem))
    # A test identity's key, on disk only because ssl.load_cert_chain reads files.
    key_file.write_bytes(key.private_key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata="".join(issued.trust_bundle_pem))
    context.load_cert_chain(chain_file, key_file)
    return context


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        self.peer = x509.load_der_x509_certificate(der)

    @property
    def peer_uris(self) -> list[str]:
        san = self.peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return san.get_values_for_type(x509.UniformResourceIdentifier)

    async def echo(self, text: str) -> str:
        # With TLS 1.3 the client is done before the server has judged its certificate: a round trip
        # through Envoy and the upstream proves the server accepted it.
        self.writer.write(text.encode())
        await self.writer.drain()
        data = await asyncio.wait_for(self.reader.readexactly(len(text)), 5)
        return data.decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def connect(port: int, context: ssl.SSLContext) -> Connection:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=context), 5)
    return Connection(reader, writer)


async def test_envoy_serves_sds_certificates_and_renews_them_without_restart(
    envoy_binary: str, short_dir: Path, tmp_path: Path
) -> None:
    ca = CertificateAuthority(generate_root("cluster.local", SystemClock()), clock=SystemClock())
    token_file = tmp_path / "token"
    token_file.write_text("node-a-secret\n")
    # The CA signs on the real clock (Envoy and ssl check validity against it); the manager's clock and
    # sleep are ours to move, so the renewal happens when the test says.
    agent_time = FakeTime(datetime.now(UTC))
    sds = SdsServer(short_dir / "sds" / "agent.sock")
    async with contextlib.AsyncExitStack() as stack:
        echo_port = await stack.enter_async_context(echo_server())
        target = await stack.enter_async_context(certificate_service(ca, "node-a-secret"))
        client = await stack.enter_async_context(
            GrpcCertificateClient(target=target, token=TokenFile(token_file))
        )
        await stack.enter_async_context(sds)
        manager = IdentityManager(
            node=NODE, client=client, clock=agent_time, sleep=agent_time.sleep, listeners=[sds]
        )
        manager.set_wanted(frozenset({SERVER}))
        run = asyncio.create_task(manager.run())
        stack.push_async_callback(_cancel, run)
        # Real gRPC round trips: wait by wall-clock deadline, not by loop turns.
        await _eventually(lambda: manager.certificate(SERVER) is not None, "the first certificate")
        first = manager.certificate(SERVER)
        assert first is not None

        envoy = await stack.enter_async_context(
            EnvoyProcess(
                bootstrap=bootstrap(sds.socket_path, echo_port),
                workdir=tmp_path / "envoy",
                binary=envoy_binary,
            )
        )
        try:
            await envoy.wait_ready()
            port = (await envoy.wait_for(envoy.listener_ports, what="the mtls listener's port"))[LISTENER]
            pid = envoy.pid
            context = client_context(ca, tmp_path)

            before = await connect(port, context)
            assert before.peer_uris == [str(SERVER)]
            assert before.peer.serial_number == first.serial
            assert await before.echo("hello before renewal") == "hello before renewal"

            # Renew: move the agent's clock to whatever it sleeps until (its renewal, at about half the
            # lifetime). Advancing before the agent has gone to sleep would be lost, so advance as it waits.
            def renewed_by_agent() -> bool:
                current = manager.certificate(SERVER)
                if current is not None and current.serial != first.serial:
                    return True
                if agent_time.next_wake is not None:
                    agent_time.advance_to(agent_time.next_wake)
                return False

            await _eventually(renewed_by_agent, "the renewed certificate")
            renewed = manager.certificate(SERVER)
            assert renewed is not None

            async def serves_renewed() -> bool:
                after = await connect(port, context)
                try:
                    assert await after.echo("hello after renewal") == "hello after renewal"
                    assert after.peer_uris == [str(SERVER)]
                    return after.peer.serial_number == renewed.serial
                finally:
                    await after.close()

            await envoy.wait_for(serves_renewed, what="a new connection to present the renewed certificate")
            # The connection from before the renewal still works, through the same Envoy process.
            assert await before.echo("still here") == "still here"
            await before.close()
            assert envoy.pid == pid
            # Envoy took both certificates over SDS and refused nothing (its stat names replace "://").
            stats = await sds_counters(envoy)
            web = "sds.spiffe_cluster.local/ns/shop/sa/web"
            assert stats[f"{web}.update_success"] == 2, stats
            assert stats[f"{web}.update_rejected"] == stats["sds.ROOTCA.update_rejected"] == 0, stats
        except BaseException:
            print(f"--- envoy log tail ---\n{envoy.log_tail(80)}")
            raise


async def sds_counters(envoy: EnvoyProcess) -> dict[str, int]:
    _, text = await envoy.admin_get("/stats?filter=^sds\\.")
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(": ")
        if value.isdigit():
            counters[name] = int(value)
    return counters


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _eventually(condition: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
