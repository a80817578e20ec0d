"""The CA client seam (`CertificateClient`) and its gRPC implementation.

The node proves itself with its bearer token, read from a file on every call so a rotated token (a
projected service-account token, a rolled bootstrap token) is used without a restart. gRPC failures are
mapped onto our exceptions by what the caller should do next: denied (retry slowly), unavailable (retry with
backoff), rejected (a bug or version skew: retry slowly).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import grpc
from cryptography import x509

from controlplane.ca.identity import SpiffeId
from nodeagent.identity.errors import (
    CertificateDeniedError,
    CertificateRejectedError,
    CertificateRequestError,
    CertificateUnavailableError,
)
from protos.nodemesh.v1alpha1 import certificate_pb2, certificate_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 10.0

_DENIED_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCertificate:
    """What the CA returned for one CSR, checked: the leaf names the identity asked for."""

    spiffe_id: SpiffeId
    # Leaf first, then intermediates; PEM.
    chain_pem: tuple[str, ...]
    # Every root the mesh trusts right now; PEM.
    trust_bundle_pem: tuple[str, ...]
    leaf: x509.Certificate

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def serial(self) -> int:
        return self.leaf.serial_number


class CertificateClient(Protocol):
    async def sign(self, csr_pem: str, spiffe_id: SpiffeId, node: str) -> SignedCertificate:
        """A certificate for the CSR's key as `spiffe_id`, asked for by `node`; raises
        CertificateRequestError (one of its subclasses)."""
        ...


class TokenSource(Protocol):
    def token(self) -> str:
        """The node's current bearer token; raises CertificateDeniedError when there is none."""
        ...


class TokenFile(TokenSource):
    """A token kept in a file (surrounding whitespace ignored), read afresh on every call."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def token(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError as exc:
            raise CertificateDeniedError(f"cannot read token file {self.path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CertificateDeniedError(f"token file {self.path} is not text") from exc
        if not text:
            raise CertificateDeniedError(f"token file {self.path} is empty")
        return text


def parse_response(
    response: certificate_pb2.SignCertificateResponse, spiffe_id: SpiffeId
) -> SignedCertificate:
    """Check a CA response; raises CertificateRejectedError when it is unusable."""
    if not response.cert_chain_pem:
        raise CertificateRejectedError("the CA returned no certificate")
    if not response.trust_bundle_pem:
        raise CertificateRejectedError("the CA returned no trust bundle")
    try:
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in response.cert_chain_pem]
        for pem in response.trust_bundle_pem:
            x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise CertificateRejectedError(f"the CA returned a malformed PEM certificate: {exc}") from exc
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateRejectedError("the CA returned a certificate without SANs") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [str(spiffe_id)]:
        raise CertificateRejectedError(f"the CA returned a certificate for {uris}, not for {spiffe_id}")
    if leaf.not_valid_after_utc <= leaf.not_valid_before_utc:
        raise CertificateRejectedError("the CA returned a certificate with an empty validity period")
    return SignedCertificate(
        spiffe_id=spiffe_id,
        chain_pem=tuple(response.cert_chain_pem),
        trust_bundle_pem=tuple(response.trust_bundle_pem),
        leaf=leaf,
    )


def map_rpc_error(exc: grpc.aio.AioRpcError, spiffe_id: SpiffeId) -> CertificateRequestError:
    code = exc.code()
    message = f"certificate request for {spiffe_id}: {code.name}: {exc.details()}"
    if code in _DENIED_CODES:
        return CertificateDeniedError(message)
    if code in _UNAVAILABLE_CODES:
        return CertificateUnavailableError(message)
    return CertificateRejectedError(message)


class GrpcCertificateClient(CertificateClient):
    """`async with GrpcCertificateClient(target=..., token=TokenFile(path)) as client: ...`.

    `target` is "host:port" or "unix:/path". Each call has `deadline` seconds; `ttl` asks the CA for a
    lifetime (None: the CA's default).
    """

    def __init__(
        self,
        *,
        target: str,
        token: TokenSource,
        deadline: float = DEFAULT_DEADLINE,
        ttl: timedelta | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        self.target = target
        self._token = token
        self._deadline = deadline
        self._ttl_seconds = int(ttl.total_seconds()) if ttl is not None else 0
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._stub: certificate_pb2_grpc.CertificateServiceStub | None = None

    async def __aenter__(self) -> Self:
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials)
        else:
            self._channel = grpc.aio.insecure_channel(self.target)
        self._stub = certificate_pb2_grpc.CertificateServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(None)

    async def sign(self, csr_pem: str, spiffe_id: SpiffeId, node: str) -> SignedCertificate:
        if self._stub is None:
            raise RuntimeError("GrpcCertificateClient used outside `async with`")
        request = certificate_pb2.SignCertificateRequest(
            csr_pem=csr_pem, spiffe_id=str(spiffe_id), node=node, ttl_seconds=self._ttl_seconds
        )
        metadata = (("authorization", f"Bearer {self._token.token()}"),)
        try:
            response: certificate_pb2.SignCertificateResponse = await self._stub.SignCertificate(
                request, metadata=metadata, timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, spiffe_id) from exc
        return parse_response(response, spiffe_id)
