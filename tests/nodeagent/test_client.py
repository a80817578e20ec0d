"""The gRPC certificate client against the real CertificateService on a real grpc.aio server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.authorization import (
    BootstrapToken,
    BootstrapTokenAuthenticator,
    NodeIdentity,
    StaticPlacement,
)
from controlplane.ca.bundle import TrustBundle, verify_chain
from controlplane.ca.errors import AuthenticatorUnavailableError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.service import CertificateService
from nodeagent.identity.client import GrpcCertificateClient, TokenFile, parse_response
from nodeagent.identity.errors import (
    CertificateDeniedError,
    CertificateRejectedError,
    CertificateUnavailableError,
)
from nodeagent.identity.keys import generate_key
from protos.nodemesh.v1alpha1 import certificate_pb2
from tests.ca.builders import FakeClock, pem_certs

WEB = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")
DB = SpiffeId.parse("spiffe://cluster.local/ns/data/sa/db")


class SwitchableAuthenticator:
    """The bootstrap-token authenticator, or (when `broken`) one whose backend is unreachable, or (when
    `stalled`) one that never answers."""

    def __init__(self, inner: BootstrapTokenAuthenticator) -> None:
        self.inner = inner
        self.broken = False
        self.stalled = False

    async def authenticate(self, token: str) -> NodeIdentity:
        if self.broken:
            raise AuthenticatorUnavailableError("TokenReview unreachable")
        if self.stalled:
            await asyncio.Event().wait()
        return await self.inner.authenticate(token)


@dataclass
class Rig:
    target: str
    ca: CertificateAuthority
    clock: FakeClock
    authenticator: SwitchableAuthenticator
    token_file: Path

    def client(self, *, target: str | None = None, deadline: float = 5.0) -> GrpcCertificateClient:
        return GrpcCertificateClient(
            target=target or self.target, token=TokenFile(self.token_file), deadline=deadline
        )


async def _serve(tmp_path: Path, address: str) -> AsyncIterator[Rig]:
    clock = FakeClock()
    ca = CertificateAuthority(generate_root("cluster.local", clock), clock=clock)
    tokens = [
        BootstrapToken(node="node-a", token="token-a"),
        BootstrapToken(node="node-a", token="token-a-rolled"),
        BootstrapToken(node="node-b", token="token-b"),
    ]
    authenticator = SwitchableAuthenticator(BootstrapTokenAuthenticator(tokens, clock=clock))
    service = CertificateService(
        signer=ca,
        authenticator=authenticator,
        placement=StaticPlacement({"node-a": [("shop", "web")], "node-b": [("data", "db")]}),
        trust_domain="cluster.local",
        registry=CollectorRegistry(),
    )
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port(address)
    await server.start()
    token_file = tmp_path / "token"
    token_file.write_text("token-a\n")
    target = address if address.startswith("unix:") else f"127.0.0.1:{port}"
    try:
        yield Rig(target=target, ca=ca, clock=clock, authenticator=authenticator, token_file=token_file)
    finally:
        await server.stop(5)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for value in _serve(tmp_path, "127.0.0.1:0"):
        yield value


async def test_signs_our_csr_as_the_identity_asked_for(rig: Rig) -> None:
    key = generate_key(WEB)
    async with rig.client() as client:
        signed = await client.sign(key.csr_pem(), WEB, "node-a")
    assert signed.spiffe_id == WEB
    assert key.matches(signed.leaf)
    assert signed.trust_bundle_pem == rig.ca.trust_bundle.pem()
    chain = pem_certs(signed.chain_pem)
    verify_chain(chain[0], chain[1:], TrustBundle.from_pem(list(signed.trust_bundle_pem)), rig.clock.now())
    assert signed.not_before < rig.clock.now() < signed.not_after
    assert signed.serial == chain[0].serial_number


async def test_the_token_file_is_read_on_every_call(rig: Rig) -> None:
    key = generate_key(WEB)
    async with rig.client() as client:
        await client.sign(key.csr_pem(), WEB, "node-a")
        rig.token_file.write_text("token-a-rolled")
        await client.sign(key.csr_pem(), WEB, "node-a")
        rig.token_file.write_text("token-revoked")
        with pytest.raises(CertificateDeniedError, match="UNAUTHENTICATED"):
            await client.sign(key.csr_pem(), WEB, "node-a")


@pytest.mark.parametrize(
    ("token", "spiffe_id", "node", "code"),
    [
        ("token-a", DB, "node-a", "PERMISSION_DENIED"),  # no pod of DB on node-a
        ("token-a", DB, "node-b", "PERMISSION_DENIED"),  # node-a's token claiming node-b
        ("nobody", WEB, "node-a", "UNAUTHENTICATED"),
    ],
)
async def test_refusals_are_denied(rig: Rig, token: str, spiffe_id: SpiffeId, node: str, code: str) -> None:
    rig.token_file.write_text(token)
    async with rig.client() as client:
        with pytest.raises(CertificateDeniedError, match=code) as info:
            await client.sign(generate_key(spiffe_id).csr_pem(), spiffe_id, node)
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)


@pytest.mark.parametrize("content", [None, "", "  \n"])
async def test_a_missing_or_empty_token_file_is_denied_before_calling(rig: Rig, content: str | None) -> None:
    if content is None:
        rig.token_file.unlink()
    else:
        rig.token_file.write_text(content)
    async with rig.client() as client:
        with pytest.raises(CertificateDeniedError, match="token file"):
            await client.sign(generate_key(WEB).csr_pem(), WEB, "node-a")


async def test_an_unavailable_authenticator_is_unavailable(rig: Rig) -> None:
    rig.authenticator.broken = True
    async with rig.client() as client:
        with pytest.raises(CertificateUnavailableError, match="UNAVAILABLE"):
            await client.sign(generate_key(WEB).csr_pem(), WEB, "node-a")


async def test_a_ca_that_does_not_answer_in_time_is_unavailable(rig: Rig) -> None:
    rig.authenticator.stalled = True
    async with rig.client(deadline=0.2) as client:
        with pytest.raises(CertificateUnavailableError, match="DEADLINE_EXCEEDED"):
            await client.sign(generate_key(WEB).csr_pem(), WEB, "node-a")


async def test_nothing_listening_is_unavailable(rig: Rig) -> None:
    # A port that was free a moment ago: bound then closed, so nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with rig.client(target=f"127.0.0.1:{port}") as client:
        with pytest.raises(CertificateUnavailableError, match="UNAVAILABLE"):
            await client.sign(generate_key(WEB).csr_pem(), WEB, "node-a")


async def test_a_malformed_csr_is_rejected(rig: Rig) -> None:
    async with rig.client() as client:
        with pytest.raises(CertificateRejectedError, match="INVALID_ARGUMENT"):
            await client.sign("-----BEGIN CERTIFICATE REQUEST-----\nnope\n", WEB, "node-a")


async def test_over_a_unix_socket(tmp_path: Path) -> None:
    async for rig in _serve(tmp_path, f"unix:{tmp_path / 'ca.sock'}"):
        key = generate_key(WEB)
        async with rig.client() as client:
            signed = await client.sign(key.csr_pem(), WEB, "node-a")
        assert key.matches(signed.leaf)


async def test_use_outside_async_with_is_an_error(rig: Rig) -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await rig.client().sign(generate_key(WEB).csr_pem(), WEB, "node-a")


def _response(rig_ca: CertificateAuthority, spiffe_id: SpiffeId) -> certificate_pb2.SignCertificateResponse:
    issued = rig_ca.sign(generate_key(spiffe_id).csr_pem(), spiffe_id)
    return certificate_pb2.SignCertificateResponse(
        cert_chain_pem=[issued.certificate_pem, *issued.chain_pem],
        trust_bundle_pem=list(issued.trust_bundle_pem),
    )


def test_responses_that_do_not_fit_the_request_are_rejected() -> None:
    clock = FakeClock()
    ca = CertificateAuthority(generate_root("cluster.local", clock), clock=clock)
    assert parse_response(_response(ca, WEB), WEB).spiffe_id == WEB
    with pytest.raises(CertificateRejectedError, match="not for"):
        parse_response(_response(ca, DB), WEB)
    empty_chain = _response(ca, WEB)
    del empty_chain.cert_chain_pem[:]
    with pytest.raises(CertificateRejectedError, match="no certificate"):
        parse_response(empty_chain, WEB)
    no_bundle = _response(ca, WEB)
    del no_bundle.trust_bundle_pem[:]
    with pytest.raises(CertificateRejectedError, match="no trust bundle"):
        parse_response(no_bundle, WEB)
    garbled = _response(ca, WEB)
    garbled.cert_chain_pem[0] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateRejectedError, match="malformed"):
        parse_response(garbled, WEB)
