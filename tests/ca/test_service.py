"""The certificate service end to end: a real grpc.aio server on 127.0.0.1:0 and a real client stub."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry

from controlplane.ca.authority import CertificateAuthority, IssuedCertificate, generate_root
from controlplane.ca.authorization import (
    BootstrapToken,
    BootstrapTokenAuthenticator,
    NodeIdentity,
    StaticPlacement,
)
from controlplane.ca.bundle import TrustBundle, verify_chain
from controlplane.ca.errors import AuthenticatorUnavailableError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.issued import IssuedCertificates
from controlplane.ca.service import CertificateService
from protos.nodemesh.v1alpha1 import certificate_pb2, certificate_pb2_grpc
from tests.ca.builders import START, FakeClock, csr_pem, p256_key, pem_certs, tampered_csr_pem

WEB = "spiffe://cluster.local/ns/shop/sa/web"
DB = "spiffe://cluster.local/ns/data/sa/db"


@dataclass
class Harness:
    stub: certificate_pb2_grpc.CertificateServiceStub
    ca: CertificateAuthority
    clock: FakeClock
    registry: CollectorRegistry
    issued: IssuedCertificates

    async def sign(
        self, *, token: str | None, node: str, spiffe_id: str, csr: bytes | None = None, ttl: int = 0
    ) -> certificate_pb2.SignCertificateResponse:
        metadata = [("authorization", f"Bearer {token}")] if token is not None else []
        request = certificate_pb2.SignCertificateRequest(
            csr_pem=(csr if csr is not None else csr_pem(p256_key())).decode(),
            spiffe_id=spiffe_id,
            node=node,
            ttl_seconds=ttl,
        )
        response: certificate_pb2.SignCertificateResponse = await self.stub.SignCertificate(
            request, metadata=metadata
        )
        return response

    def count(self, result: str, reason: str) -> float:
        value = self.registry.get_sample_value(
            "nodemesh_ca_sign_requests_total", {"result": result, "reason": reason}
        )
        return value or 0.0


@contextlib.asynccontextmanager
async def serving(service: CertificateService) -> AsyncIterator[certificate_pb2_grpc.CertificateServiceStub]:
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield certificate_pb2_grpc.CertificateServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        # A grace period lets the server finish its handler tasks for RPCs the client already saw end;
        # stop(None) cancels them and they can outlive the test by a loop turn or two.
        await server.stop(5)


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock()
    ca = CertificateAuthority(generate_root("cluster.local", clock), clock=clock)
    authenticator = BootstrapTokenAuthenticator(
        [
            BootstrapToken(node="node-a", token="token-a"),
            BootstrapToken(node="node-b", token="token-b"),
            BootstrapToken(node="node-c", token="token-c", expires_at=START - timedelta(minutes=1)),
        ],
        clock=clock,
    )
    placement = StaticPlacement({"node-a": [("shop", "web")], "node-b": [("data", "db")]})
    registry = CollectorRegistry()
    issued = IssuedCertificates()
    service = CertificateService(
        signer=ca,
        authenticator=authenticator,
        placement=placement,
        trust_domain="cluster.local",
        registry=registry,
        issued=issued,
    )
    assert service.issued is issued
    async with serving(service) as stub:
        yield Harness(stub=stub, ca=ca, clock=clock, registry=registry, issued=issued)


async def test_records_what_it_issued_per_node_and_identity(harness: Harness) -> None:
    first = await harness.sign(token="token-a", node="node-a", spiffe_id=WEB, ttl=3600)
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.sign(token="token-a", node="node-a", spiffe_id=DB)  # not placed there: refused
    harness.clock.advance(timedelta(minutes=30))
    renewed = await harness.sign(token="token-a", node="node-a", spiffe_id=WEB, ttl=7200)
    await harness.sign(token="token-b", node="node-b", spiffe_id=DB)
    [web, db] = harness.issued.records()
    leaf = pem_certs(list(renewed.cert_chain_pem))[0]
    assert (web.node, str(web.spiffe_id), web.serial) == ("node-a", WEB, leaf.serial_number)
    assert web.serial != pem_certs(list(first.cert_chain_pem))[0].serial_number  # the renewal replaced it
    assert web.not_after == renewed.not_after.ToDatetime(tzinfo=START.tzinfo)
    assert web.not_before == renewed.not_before.ToDatetime(tzinfo=START.tzinfo)
    assert (db.node, str(db.spiffe_id)) == ("node-b", DB)
    assert harness.issued.for_node("node-b") == (db,)
    assert "PRIVATE" not in str(web.to_document()) and "BEGIN" not in str(web.to_document())


async def test_issues_a_certificate_for_a_pod_on_the_callers_node(harness: Harness) -> None:
    key = p256_key()
    csr = csr_pem(key, common_name="admin", sans=[x509.DNSName("evil.example.com")])
    response = await harness.sign(token="token-a", node="node-a", spiffe_id=WEB, csr=csr, ttl=3600)
    chain = pem_certs(list(response.cert_chain_pem))
    assert len(chain) == 1
    leaf = chain[0]
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(WEB)]
    bundle = TrustBundle.from_pem(list(response.trust_bundle_pem))
    assert bundle == harness.ca.trust_bundle
    verify_chain(leaf, chain[1:], bundle, harness.clock.now())
    assert response.not_after.ToDatetime(tzinfo=START.tzinfo) == START + timedelta(hours=1)
    assert response.not_before.ToDatetime(tzinfo=START.tzinfo) < START
    assert harness.count("issued", "none") == 1


@dataclass(frozen=True)
class Refusal:
    token: str | None
    node: str
    spiffe_id: str
    code: grpc.StatusCode
    reason: str


REFUSALS = [
    Refusal(None, "node-a", WEB, grpc.StatusCode.UNAUTHENTICATED, "missing_token"),
    Refusal("wrong", "node-a", WEB, grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
    Refusal("token-c", "node-c", WEB, grpc.StatusCode.UNAUTHENTICATED, "expired_token"),
    # node-a's token used to ask for node-b's workload, claiming to be node-b.
    Refusal("token-a", "node-b", DB, grpc.StatusCode.PERMISSION_DENIED, "node_mismatch"),
    # node-a asks for an identity with no pod on node-a.
    Refusal("token-a", "node-a", DB, grpc.StatusCode.PERMISSION_DENIED, "no_workload_on_node"),
    Refusal(
        "token-a",
        "node-a",
        "spiffe://other.org/ns/shop/sa/web",
        grpc.StatusCode.PERMISSION_DENIED,
        "trust_domain_mismatch",
    ),
    # A bad SPIFFE ID from a caller that is not authenticated learns nothing either.
    Refusal("wrong", "node-a", "not-an-id", grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[f"{c.reason}-{c.node}" for c in REFUSALS])
async def test_refusals_say_only_denied_and_are_logged_and_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture, case: Refusal
) -> None:
    caplog.set_level(logging.WARNING, logger="controlplane.ca.service")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.sign(token=case.token, node=case.node, spiffe_id=case.spiffe_id)
    assert info.value.code() == case.code
    assert info.value.details() == "denied"
    result = "unauthenticated" if case.code == grpc.StatusCode.UNAUTHENTICATED else "denied"
    assert harness.count(result, case.reason) == 1
    assert harness.count("issued", "none") == 0
    refusals = [r for r in caplog.records if getattr(r, "reason", None) == case.reason]
    assert len(refusals) == 1
    assert refusals[0].claimed_node == case.node  # type: ignore[attr-defined]
    assert refusals[0].node == ("" if result == "unauthenticated" else "node-a")  # type: ignore[attr-defined]
    assert refusals[0].spiffe_id == case.spiffe_id  # type: ignore[attr-defined]


def _rsa_csr() -> bytes:
    return csr_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.mark.parametrize(
    ("spiffe_id", "csr", "message", "reason"),
    [
        (
            WEB,
            b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n",
            "invalid csr_pem: CSR is not a PEM",
            "invalid_csr",
        ),
        (WEB, b"", "invalid csr_pem", "invalid_csr"),
        (WEB, tampered_csr_pem(p256_key()), "signature does not verify", "invalid_csr"),
        (WEB, _rsa_csr(), "CSR key is RSA; only ECDSA P-256", "unsupported_key"),
        (WEB, csr_pem(ec.generate_private_key(ec.SECP384R1())), "curve secp384r1", "unsupported_key"),
        ("spiffe://cluster.local/ns/shop/sa/Web", None, "invalid spiffe_id", "invalid_spiffe_id"),
        (
            "https://cluster.local/ns/shop/sa/web",
            None,
            "does not start with 'spiffe://'",
            "invalid_spiffe_id",
        ),
    ],
)
async def test_malformed_requests_get_invalid_argument(
    harness: Harness, spiffe_id: str, csr: bytes | None, message: str, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.sign(token="token-a", node="node-a", spiffe_id=spiffe_id, csr=csr)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")
    assert harness.count("invalid", reason) == 1


async def test_authorization_header_forms(harness: Harness) -> None:
    csr = csr_pem(p256_key()).decode()
    request = certificate_pb2.SignCertificateRequest(csr_pem=csr, spiffe_id=WEB, node="node-a")
    ok = await harness.stub.SignCertificate(request, metadata=[("authorization", "bearer   token-a")])
    assert len(ok.cert_chain_pem) == 1
    for value in ("token-a", "Basic token-a", "Bearer"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await harness.stub.SignCertificate(request, metadata=[("authorization", value)])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_every_metric_series_exists_from_the_start() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    CertificateService(
        signer=CertificateAuthority(generate_root("cluster.local", clock), clock=clock),
        authenticator=BootstrapTokenAuthenticator({}, clock=clock),
        placement=StaticPlacement(),
        trust_domain="cluster.local",
        registry=registry,
    )
    labels = {
        (s.labels["result"], s.labels["reason"])
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "nodemesh_ca_sign_requests_total"
    }
    assert ("issued", "none") in labels
    assert ("denied", "no_workload_on_node") in labels
    assert ("unauthenticated", "expired_token") in labels
    assert ("denied", "expired_token") not in labels
    assert len(labels) == 12


class UnreachableAuthenticator:
    """Stands in for a TokenReview authenticator whose API server is down."""

    async def authenticate(self, token: str) -> NodeIdentity:
        raise AuthenticatorUnavailableError("TokenReview: connection refused")


class BrokenSigner:
    def sign(
        self, csr_pem: bytes | str, spiffe_id: SpiffeId, ttl: timedelta | None = None
    ) -> IssuedCertificate:
        raise RuntimeError("secret internal detail")


async def test_unreachable_authenticator_asks_the_caller_to_retry() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    service = CertificateService(
        signer=CertificateAuthority(generate_root("cluster.local", clock), clock=clock),
        authenticator=UnreachableAuthenticator(),
        placement=StaticPlacement({"node-a": [("shop", "web")]}),
        trust_domain="cluster.local",
        registry=registry,
    )
    async with serving(service) as stub:
        request = certificate_pb2.SignCertificateRequest(csr_pem="x", spiffe_id=WEB, node="node-a")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SignCertificate(request, metadata=[("authorization", "Bearer t")])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    labels = {"result": "error", "reason": "authenticator_unavailable"}
    assert registry.get_sample_value("nodemesh_ca_sign_requests_total", labels) == 1


async def test_unexpected_signing_failure_reveals_nothing() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    service = CertificateService(
        signer=BrokenSigner(),
        authenticator=BootstrapTokenAuthenticator({"node-a": "token-a"}, clock=clock),
        placement=StaticPlacement({"node-a": [("shop", "web")]}),
        trust_domain="cluster.local",
        registry=registry,
    )
    async with serving(service) as stub:
        request = certificate_pb2.SignCertificateRequest(csr_pem="x", spiffe_id=WEB, node="node-a")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SignCertificate(request, metadata=[("authorization", "Bearer token-a")])
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "signing failed"
    labels = {"result": "error", "reason": "signing_failed"}
    assert registry.get_sample_value("nodemesh_ca_sign_requests_total", labels) == 1
