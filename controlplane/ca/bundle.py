"""The trust bundle (every root the mesh trusts) and the root rotation procedure.

Rotation keeps every handshake working because peers learn the bundle only when they renew, which each does
within one maximum leaf lifetime:
  1. trust_new_root: the bundle holds old and new roots, still signing with the old one;
  2. switch_signing (once every peer has fetched the two-root bundle): new leaves chain to the new root;
  3. retire_old_root (once every leaf signed by the old root has expired or been replaced).
Each step is an explicit call; steps 2 and 3 refuse to run early unless forced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from controlplane.ca.clock import Clock
from controlplane.ca.errors import ChainVerificationError, InvalidCAMaterialError, RotationError

if TYPE_CHECKING:
    from controlplane.ca.authority import Issuer

log = logging.getLogger(__name__)


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustBundle:
    """Ordered, duplicate-free, non-empty tuple of self-signed CA certificates."""

    roots: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.roots:
            raise InvalidCAMaterialError("a trust bundle needs at least one root")
        if len(set(self.roots)) != len(self.roots):
            raise InvalidCAMaterialError("a trust bundle lists the same root twice")
        for root in self.roots:
            if not is_self_signed(root):
                subject = root.subject.rfc4514_string()
                raise InvalidCAMaterialError(f"trust bundle entry {subject} is not self-signed")

    @classmethod
    def of(cls, *roots: x509.Certificate) -> TrustBundle:
        return cls(roots=tuple(roots))

    @classmethod
    def from_pem(cls, pem: bytes | str | Sequence[str]) -> TrustBundle:
        if isinstance(pem, str | bytes):
            data = pem.encode() if isinstance(pem, str) else pem
        else:
            data = "".join(pem).encode()
        try:
            roots = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidCAMaterialError(f"trust bundle is not PEM certificates: {exc}") from exc
        return cls(roots=tuple(roots))

    def __contains__(self, cert: object) -> bool:
        return cert in self.roots

    def with_root(self, root: x509.Certificate) -> TrustBundle:
        """This bundle plus `root` (appended); the same bundle if it is already there."""
        if root in self.roots:
            return self
        return TrustBundle(roots=(*self.roots, root))

    def without_root(self, root: x509.Certificate) -> TrustBundle:
        if root not in self.roots:
            raise InvalidCAMaterialError(f"root {root.subject.rfc4514_string()} is not in the trust bundle")
        if len(self.roots) == 1:
            raise InvalidCAMaterialError("cannot remove the last root of a trust bundle")
        return TrustBundle(roots=tuple(r for r in self.roots if r != root))

    def pem(self) -> tuple[str, ...]:
        return tuple(r.public_bytes(serialization.Encoding.PEM).decode() for r in self.roots)


def verify_chain(
    leaf: x509.Certificate, chain: Iterable[x509.Certificate], bundle: TrustBundle, now: datetime
) -> list[x509.GeneralName]:
    """Verify `leaf` (with its intermediates) against `bundle` at `now` as a client certificate.

    Uses cryptography's path builder with its WebPKI defaults (signatures, validity, CA constraints, key
    usage, clientAuth EKU). Returns the leaf's SANs; raises ChainVerificationError.
    """
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(bundle.roots)))
        .time(now)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(chain))
    except verification.VerificationError as exc:
        raise ChainVerificationError(f"certificate does not chain to the trust bundle: {exc}") from exc
    return list(verified.subjects or ())


class RotatableAuthority(Protocol):
    @property
    def issuer(self) -> Issuer: ...

    @property
    def trust_bundle(self) -> TrustBundle: ...

    @property
    def max_ttl(self) -> timedelta: ...

    def replace_trust_bundle(self, bundle: TrustBundle) -> None: ...

    def replace_issuer(self, issuer: Issuer) -> None: ...


class RotationPhase(StrEnum):
    PENDING = "pending"
    TRUSTING_BOTH = "trusting_both"
    SIGNING_WITH_NEW = "signing_with_new"
    DONE = "done"


class RootRotation:
    """Drives one root rotation of `authority` to `new_issuer`; see the module docstring."""

    def __init__(self, authority: RotatableAuthority, new_issuer: Issuer, *, clock: Clock) -> None:
        if new_issuer.root == authority.issuer.root:
            raise RotationError("the new issuer chains to the root already in use")
        self._authority = authority
        self._old_root = authority.issuer.root
        self._new_issuer = new_issuer
        self._clock = clock
        self._phase = RotationPhase.PENDING
        self._step_at: datetime | None = None

    @property
    def phase(self) -> RotationPhase:
        return self._phase

    @property
    def next_step_after(self) -> datetime | None:
        """When the next step becomes safe: one maximum leaf lifetime after the previous step."""
        if self._step_at is None:
            return None
        return self._step_at + self._authority.max_ttl

    def trust_new_root(self) -> TrustBundle:
        self._expect(RotationPhase.PENDING, "trust_new_root")
        bundle = self._authority.trust_bundle.with_root(self._new_issuer.root)
        self._authority.replace_trust_bundle(bundle)
        self._advance(RotationPhase.TRUSTING_BOTH)
        return bundle

    def switch_signing(self, *, force: bool = False) -> None:
        self._expect(RotationPhase.TRUSTING_BOTH, "switch_signing")
        self._check_time(force, "peers may not all have fetched the bundle with the new root yet")
        self._authority.replace_issuer(self._new_issuer)
        self._advance(RotationPhase.SIGNING_WITH_NEW)

    def retire_old_root(self, *, force: bool = False) -> TrustBundle:
        self._expect(RotationPhase.SIGNING_WITH_NEW, "retire_old_root")
        self._check_time(force, "leaves signed by the old root may still be in use")
        bundle = self._authority.trust_bundle.without_root(self._old_root)
        self._authority.replace_trust_bundle(bundle)
        self._advance(RotationPhase.DONE)
        return bundle

    def _expect(self, phase: RotationPhase, step: str) -> None:
        if self._phase is not phase:
            raise RotationError(f"{step} needs rotation phase {phase}, but it is {self._phase}")

    def _check_time(self, force: bool, why: str) -> None:
        safe_at = self.next_step_after
        now = self._clock.now()
        if safe_at is not None and now < safe_at:
            if not force:
                raise RotationError(f"too early: {why}; safe after {safe_at.isoformat()}")
            log.warning("root rotation step forced before %s: %s", safe_at.isoformat(), why)

    def _advance(self, phase: RotationPhase) -> None:
        self._phase = phase
        self._step_at = self._clock.now()
        log.info("root rotation phase %s", phase)
