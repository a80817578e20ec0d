"""The certificate authority: issuer material (root or intermediate), root generation, and leaf signing."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane.ca.bundle import TrustBundle, is_self_signed
from controlplane.ca.clock import Clock
from controlplane.ca.errors import (
    CAStoreConflictError,
    CAStoreError,
    InvalidCAMaterialError,
    InvalidCSRError,
    UnsupportedKeyError,
)
from controlplane.ca.identity import SCHEME, SpiffeId, validate_trust_domain
from controlplane.ca.store import CAMaterial, CAStore

log = logging.getLogger(__name__)

IssuerKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_ROOT_VALIDITY = timedelta(days=3650)
DEFAULT_TTL = timedelta(hours=24)
DEFAULT_MAX_TTL = timedelta(days=7)
# Leaves start a little in the past so a peer whose clock lags ours still accepts them.
DEFAULT_BACKDATE = timedelta(minutes=5)
_MIN_RSA_BITS = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Issuer:
    """What signs leaves: a CA key and certificate, the intermediates above it, and the root they end at."""

    key: IssuerKey
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    def __repr__(self) -> str:
        return f"Issuer(subject={self.certificate.subject.rfc4514_string()!r}, key=<redacted>)"

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """What a leaf carries after itself: the issuer and its intermediates, never the root."""
        if self.certificate == self.root:
            return ()
        return (self.certificate, *self.intermediates)

    @property
    def not_after(self) -> datetime:
        return min(c.not_valid_after_utc for c in (self.certificate, *self.intermediates, self.root))

    def to_material(self) -> CAMaterial:
        above = (*self.intermediates, self.root) if self.certificate != self.root else ()
        return CAMaterial(
            certificate_pem=_pem(self.certificate).encode(),
            key_pem=self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            chain_pem="".join(_pem(c) for c in above).encode(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCertificate:
    spiffe_id: SpiffeId
    certificate: x509.Certificate
    certificate_pem: str
    # The leaf's issuer and intermediates, issuer first, without the root.
    chain_pem: tuple[str, ...]
    trust_bundle_pem: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial: int


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _signing_hash(key: IssuerKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _check_issuer_key(key: object) -> IssuerKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise InvalidCAMaterialError(f"CA key curve {key.curve.name} is unsupported; use P-256 or P-384")
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise InvalidCAMaterialError(f"CA RSA key has {key.key_size} bits, fewer than {_MIN_RSA_BITS}")
        return key
    raise InvalidCAMaterialError(f"CA key type {type(key).__name__} is not supported; use ECDSA or RSA")


def generate_root(
    trust_domain: str,
    clock: Clock,
    *,
    validity: timedelta = DEFAULT_ROOT_VALIDITY,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issuer:
    """A fresh self-signed ECDSA P-256 root for `trust_domain`."""
    validate_trust_domain(trust_domain)
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    # A per-key suffix keeps two roots of one trust domain distinguishable by name during a rotation;
    # OpenSSL looks issuers up by subject first.
    suffix = hashlib.sha256(ski.digest).hexdigest()[:12]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, f"nodemesh root CA {suffix}"),
        ]
    )
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DEFAULT_BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{SCHEME}{trust_domain}")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    log.info("generated root CA %s for trust domain %s", cert.subject.rfc4514_string(), trust_domain)
    return Issuer(key=key, certificate=cert, intermediates=(), root=cert)


def load_issuer(material: CAMaterial, *, now: datetime, trust_domain: str | None = None) -> Issuer:
    """Check and load operator-supplied or stored CA material.

    The certificate must be a CA valid at `now` whose key matches; `chain_pem` must link it, issuer by
    issuer, to a self-signed root (empty when the certificate is the root). With `trust_domain`, a SPIFFE
    trust-domain URI SAN on the certificate, if any, must name it.
    """
    try:
        cert = x509.load_pem_x509_certificate(material.certificate_pem)
    except ValueError as exc:
        raise InvalidCAMaterialError(f"CA certificate is not a PEM certificate: {exc}") from exc
    try:
        above = x509.load_pem_x509_certificates(material.chain_pem) if material.chain_pem.strip() else []
    except ValueError as exc:
        raise InvalidCAMaterialError(f"CA chain is not PEM certificates: {exc}") from exc
    try:
        raw_key = serialization.load_pem_private_key(material.key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The message of these exceptions never contains key bytes.
        raise InvalidCAMaterialError(f"CA key is not an unencrypted PEM private key: {exc}") from exc
    key = _check_issuer_key(raw_key)

    for c in (cert, *above):
        _check_is_ca(c)
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise InvalidCAMaterialError(
                f"CA certificate {c.subject.rfc4514_string()} is not valid now: valid from "
                f"{c.not_valid_before_utc.isoformat()} to {c.not_valid_after_utc.isoformat()}"
            )
    public_der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*public_der) != key.public_key().public_bytes(*public_der):
        raise InvalidCAMaterialError("CA key does not match the CA certificate's public key")

    links = (cert, *above)
    for child, parent in pairwise(links):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise InvalidCAMaterialError(
                f"CA chain is broken: {child.subject.rfc4514_string()} is not issued by "
                f"{parent.subject.rfc4514_string()}"
            ) from exc
    root = links[-1]
    if not is_self_signed(root):
        raise InvalidCAMaterialError(
            f"CA chain ends at {root.subject.rfc4514_string()}, which is not a self-signed root; "
            "include the issuers up to the root in the chain"
        )
    if trust_domain is not None:
        _check_trust_domain(cert, trust_domain)
    return Issuer(key=key, certificate=cert, intermediates=tuple(above[:-1]), root=root)


def _check_is_ca(cert: x509.Certificate) -> None:
    subject = cert.subject.rfc4514_string()
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise InvalidCAMaterialError(f"certificate {subject} is not a CA (basicConstraints CA:true missing)")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise InvalidCAMaterialError(f"CA certificate {subject} lacks the keyCertSign key usage")


def _check_trust_domain(cert: x509.Certificate, trust_domain: str) -> None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(SCHEME) and uri != f"{SCHEME}{trust_domain}":
            raise InvalidCAMaterialError(f"CA certificate is for {uri}, not trust domain {trust_domain}")


async def load_or_generate_authority(
    store: CAStore,
    trust_domain: str,
    clock: Clock,
    *,
    default_ttl: timedelta = DEFAULT_TTL,
    max_ttl: timedelta = DEFAULT_MAX_TTL,
) -> CertificateAuthority:
    """The CA as stored (issuer and trust bundle), or one with a new root saved to `store` on first start."""
    material = await store.load()
    if material is None:
        issuer = generate_root(trust_domain, clock)
        ca = CertificateAuthority(issuer, clock=clock, default_ttl=default_ttl, max_ttl=max_ttl)
        try:
            await store.save(ca.material())
            return ca
        except CAStoreConflictError:
            # Another replica started at the same time and stored its root first: one mesh, one root.
            log.info("another replica created the CA first; using its root")
            material = await store.load()
            if material is None:
                raise CAStoreError("the CA store reported a conflict but holds no CA material") from None
    issuer = load_issuer(material, now=clock.now(), trust_domain=trust_domain)
    bundle = TrustBundle.from_pem(material.trust_bundle_pem) if material.trust_bundle_pem.strip() else None
    log.info("loaded CA %s", issuer.certificate.subject.rfc4514_string())
    return CertificateAuthority(
        issuer, clock=clock, trust_bundle=bundle, default_ttl=default_ttl, max_ttl=max_ttl
    )


class CertificateAuthority:
    """Signs workload leaves with the current issuer; publishes the current trust bundle.

    The issuer and bundle are swapped whole (see bundle.RootRotation); `sign` reads each once, so a
    concurrent swap never mixes them within one certificate.
    """

    def __init__(
        self,
        issuer: Issuer,
        *,
        clock: Clock,
        trust_bundle: TrustBundle | None = None,
        default_ttl: timedelta = DEFAULT_TTL,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        backdate: timedelta = DEFAULT_BACKDATE,
    ) -> None:
        if not timedelta(0) < default_ttl <= max_ttl:
            raise ValueError("need 0 < default_ttl <= max_ttl")
        self._clock = clock
        self._default_ttl = default_ttl
        self._max_ttl = max_ttl
        self._backdate = backdate
        self._bundle = trust_bundle if trust_bundle is not None else TrustBundle.of(issuer.root)
        self._check_root_trusted(issuer, self._bundle)
        self._issuer = issuer

    @property
    def issuer(self) -> Issuer:
        return self._issuer

    @property
    def trust_bundle(self) -> TrustBundle:
        return self._bundle

    @property
    def max_ttl(self) -> timedelta:
        return self._max_ttl

    def material(self) -> CAMaterial:
        """Everything a CAStore keeps: save it after each rotation step so a restart resumes there."""
        return dataclasses.replace(
            self._issuer.to_material(), trust_bundle_pem="".join(self._bundle.pem()).encode()
        )

    def replace_trust_bundle(self, bundle: TrustBundle) -> None:
        self._check_root_trusted(self._issuer, bundle)
        self._bundle = bundle

    def replace_issuer(self, issuer: Issuer) -> None:
        self._check_root_trusted(issuer, self._bundle)
        self._issuer = issuer
        log.info("CA now signs with %s", issuer.certificate.subject.rfc4514_string())

    @staticmethod
    def _check_root_trusted(issuer: Issuer, bundle: TrustBundle) -> None:
        if issuer.root not in bundle:
            raise InvalidCAMaterialError("the issuer's root is not in the trust bundle")

    def sign(
        self, csr_pem: bytes | str, spiffe_id: SpiffeId, ttl: timedelta | None = None
    ) -> IssuedCertificate:
        """Issue a leaf for `spiffe_id` over the CSR's key. Only the key is taken from the CSR: its subject
        and SANs are ignored; the SPIFFE ID is the only SAN. `ttl` is capped at max_ttl (None: default)."""
        issuer, bundle = self._issuer, self._bundle
        public = _csr_public_key(csr_pem)
        lifetime = self._default_ttl if ttl is None or ttl <= timedelta(0) else min(ttl, self._max_ttl)
        now = self._clock.now()
        not_before = now - self._backdate
        # A leaf never outlives its issuer: a verifier would reject the chain from then on anyway.
        not_after = min(now + lifetime, issuer.not_after)
        if not_after <= now:
            raise InvalidCAMaterialError("the CA certificate has expired; it cannot sign")
        serial = x509.random_serial_number()
        issuer_public = issuer.certificate.public_key()
        try:
            ski_ext = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            issuer_ski = ski_ext.value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public)  # type: ignore[arg-type]
        cert = (
            x509.CertificateBuilder()
            # Empty subject, so the SAN is critical (RFC 5280 §4.2.1.6), as SPIFFE X.509-SVIDs allow.
            .subject_name(x509.Name([]))
            .issuer_name(issuer.certificate.subject)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .sign(issuer.key, _signing_hash(issuer.key))
        )
        return IssuedCertificate(
            spiffe_id=spiffe_id,
            certificate=cert,
            certificate_pem=_pem(cert),
            chain_pem=tuple(_pem(c) for c in issuer.chain),
            trust_bundle_pem=bundle.pem(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=serial,
        )


def _csr_public_key(csr_pem: bytes | str) -> ec.EllipticCurvePublicKey:
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise InvalidCSRError(f"CSR is not a PEM-encoded PKCS#10 request: {exc}") from exc
    try:
        public = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKeyError(f"CSR public key cannot be read: {exc}") from exc
    if not isinstance(public, ec.EllipticCurvePublicKey):
        kind = "RSA" if isinstance(public, rsa.RSAPublicKey) else type(public).__name__
        raise UnsupportedKeyError(f"CSR key is {kind}; only ECDSA P-256 keys are accepted")
    if not isinstance(public.curve, ec.SECP256R1):
        raise UnsupportedKeyError(f"CSR key is on curve {public.curve.name}; only ECDSA P-256 is accepted")
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidCSRError(f"CSR signature cannot be checked: {exc}") from exc
    if not valid:
        raise InvalidCSRError("CSR signature does not verify against its own public key")
    return public
