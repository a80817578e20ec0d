"""Identity for end-to-end mTLS tests: the real CA service, and per node the agent's identity half (its
IdentityManager requesting certificates over gRPC, its SdsServer serving them to the node's Envoy), plus a
minimal HTTP/1.1 client that binds a chosen source address (a "pod" on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from controlplane.ca.authority import CertificateAuthority
from controlplane.ca.authorization import BootstrapTokenAuthenticator, StaticPlacement
from controlplane.ca.clock import Clock, SystemClock
from controlplane.ca.identity import SpiffeId
from controlplane.ca.service import CertificateService
from nodeagent.identity.client import GrpcCertificateClient, TokenFile
from nodeagent.identity.manager import IdentityManager
from nodeagent.sds import SdsServer


@contextlib.asynccontextmanager
async def certificate_service(
    ca: CertificateAuthority, placement: Mapping[str, Sequence[SpiffeId]], trust_domain: str = "cluster.local"
) -> AsyncIterator[str]:
    """The CA's gRPC service on loopback; node N authenticates with token "token-N" and may have the
    identities `placement[N]`. Yields its target."""
    service = CertificateService(
        signer=ca,
        authenticator=BootstrapTokenAuthenticator({n: f"token-{n}" for n in placement}, clock=SystemClock()),
        placement=StaticPlacement(
            {n: [(i.namespace, i.service_account) for i in ids] for n, ids in placement.items()}
        ),
        trust_domain=trust_domain,
        registry=CollectorRegistry(),
    )
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(1)


@contextlib.asynccontextmanager
async def node_identities(
    node: str,
    target: str,
    identities: frozenset[SpiffeId],
    directory: Path,
    *,
    clock: Clock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[tuple[IdentityManager, SdsServer]]:
    """The agent's identity half for `node`, as `nodeagent.agent` wires it, with every certificate issued.
    `clock` and `sleep` are the manager's time (a test that renews on demand passes a fake)."""
    token_file = directory / f"{node}-token"
    token_file.write_text(f"token-{node}")
    sds = SdsServer(directory / node / "sds.sock")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            GrpcCertificateClient(target=target, token=TokenFile(token_file))
        )
        await stack.enter_async_context(sds)
        manager = IdentityManager(
            node=node, client=client, clock=clock or SystemClock(), sleep=sleep, listeners=[sds]
        )
        manager.set_wanted(identities)
        run = asyncio.create_task(manager.run())
        try:
            deadline = time.monotonic() + 10
            while not all(manager.certificate(i) is not None for i in identities):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{node}: certificates not issued in time")
                await asyncio.sleep(0.02)
            yield manager, sds
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


async def http_get(
    host: str,
    port: int,
    source_ip: str,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "GET",
) -> tuple[int, str]:
    """One HTTP/1.1 request (a new connection) from `source_ip`; (status, body), status 0 when the
    connection closed without a response."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(source_ip, 0)), 5)
    try:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"{method} {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nContent-Length: 0\r\n"
        writer.write(f"{head}{extra}\r\n".encode())
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), 10)
        except ConnectionError:
            data = b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/") else 0
    return status, body
