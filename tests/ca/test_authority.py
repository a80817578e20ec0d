from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from controlplane.ca.authority import (
    DEFAULT_BACKDATE,
    CertificateAuthority,
    Issuer,
    generate_root,
    load_issuer,
)
from controlplane.ca.bundle import TrustBundle, verify_chain
from controlplane.ca.errors import (
    ChainVerificationError,
    InvalidCAMaterialError,
    InvalidCSRError,
    InvalidSpiffeIdError,
    UnsupportedKeyError,
)
from controlplane.ca.identity import SpiffeId
from controlplane.ca.store import CAMaterial
from tests.ca.builders import FakeClock, csr_pem, make_intermediate, p256_key, pem_certs, tampered_csr_pem

SID = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/checkout")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def root(clock: FakeClock) -> Issuer:
    return generate_root("cluster.local", clock)


@pytest.fixture
def ca(root: Issuer, clock: FakeClock) -> CertificateAuthority:
    return CertificateAuthority(root, clock=clock)


def test_generated_root_is_a_p256_ca_for_the_trust_domain(root: Issuer, clock: FakeClock) -> None:
    cert = root.certificate
    assert cert.subject == cert.issuer
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(root.key, ec.EllipticCurvePrivateKey)
    assert isinstance(root.key.curve, ec.SECP256R1)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local"]
    lifetime = cert.not_valid_after_utc - clock.now()
    assert timedelta(days=3649) < lifetime <= timedelta(days=3650)
    assert root.chain == ()


def test_two_roots_have_distinct_names(clock: FakeClock) -> None:
    a, b = generate_root("cluster.local", clock), generate_root("cluster.local", clock)
    assert a.certificate.subject != b.certificate.subject


def test_leaf_has_only_the_spiffe_id_and_ignores_the_csr_subject_and_sans(
    ca: CertificateAuthority, root: Issuer, clock: FakeClock
) -> None:
    key = p256_key()
    asked = [
        x509.DNSName("evil.example.com"),
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/admin"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]
    issued = ca.sign(csr_pem(key, common_name="admin", sans=asked), SID)
    leaf = issued.certificate
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(str(SID))]
    assert leaf.public_key() == key.public_key()
    assert leaf.issuer == root.certificate.subject
    # Verified with cryptography's path builder, which also checks key usage, EKU and CA constraints.
    subjects = verify_chain(leaf, pem_certs(issued.chain_pem), TrustBundle.of(root.certificate), clock.now())
    assert subjects == [x509.UniformResourceIdentifier(str(SID))]


def test_leaf_extensions(ca: CertificateAuthority, root: Issuer) -> None:
    leaf = ca.sign(csr_pem(p256_key()), SID).certificate
    ext = leaf.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_agreement
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)


def test_serials_are_random_and_positive(ca: CertificateAuthority) -> None:
    serials = {ca.sign(csr_pem(p256_key()), SID).serial for _ in range(5)}
    assert len(serials) == 5
    assert all(0 < s < 2**159 for s in serials)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, timedelta(hours=24)),
        (timedelta(0), timedelta(hours=24)),
        (timedelta(hours=1), timedelta(hours=1)),
        (timedelta(days=30), timedelta(days=7)),
    ],
)
def test_ttl_default_and_cap(
    ca: CertificateAuthority, clock: FakeClock, requested: timedelta | None, expected: timedelta
) -> None:
    issued = ca.sign(csr_pem(p256_key()), SID, requested)
    assert issued.not_before == clock.now() - DEFAULT_BACKDATE
    assert issued.not_after == clock.now() + expected
    assert issued.certificate.not_valid_after_utc == issued.not_after


def test_leaf_never_outlives_its_issuer(root: Issuer, clock: FakeClock) -> None:
    intermediate = make_intermediate(root, clock, validity=timedelta(hours=2))
    ca = CertificateAuthority(intermediate, clock=clock)
    issued = ca.sign(csr_pem(p256_key()), SID)
    assert issued.not_after == intermediate.certificate.not_valid_after_utc


def test_leaf_expires(ca: CertificateAuthority, root: Issuer, clock: FakeClock) -> None:
    issued = ca.sign(csr_pem(p256_key()), SID, timedelta(hours=1))
    bundle = TrustBundle.of(root.certificate)
    verify_chain(issued.certificate, [], bundle, clock.now() + timedelta(minutes=59))
    with pytest.raises(ChainVerificationError):
        verify_chain(issued.certificate, [], bundle, clock.now() + timedelta(minutes=61))


def test_signing_with_an_intermediate_returns_the_chain(root: Issuer, clock: FakeClock) -> None:
    intermediate = make_intermediate(root, clock)
    ca = CertificateAuthority(intermediate, clock=clock)
    issued = ca.sign(csr_pem(p256_key()), SID)
    assert pem_certs(issued.chain_pem) == [intermediate.certificate]
    assert pem_certs(issued.trust_bundle_pem) == [root.certificate]
    bundle = TrustBundle.of(root.certificate)
    verify_chain(issued.certificate, pem_certs(issued.chain_pem), bundle, clock.now())
    with pytest.raises(ChainVerificationError):
        verify_chain(issued.certificate, [], bundle, clock.now())


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("make_csr", "error", "message"),
    [
        (lambda: b"", InvalidCSRError, "not a PEM-encoded PKCS#10"),
        (
            lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            InvalidCSRError,
            "not a PEM-encoded PKCS#10",
        ),
        (lambda: "garbage", InvalidCSRError, "not a PEM-encoded PKCS#10"),
        (lambda: tampered_csr_pem(p256_key()), InvalidCSRError, "signature does not verify"),
        (lambda: csr_pem(_rsa_key()), UnsupportedKeyError, "CSR key is RSA; only ECDSA P-256"),
        (lambda: csr_pem(ec.generate_private_key(ec.SECP384R1())), UnsupportedKeyError, "curve secp384r1"),
    ],
    ids=["empty", "bad-base64-body", "not-pem", "bad-signature", "rsa", "p384"],
)
def test_bad_csrs_are_refused_clearly(
    ca: CertificateAuthority, make_csr: object, error: type[Exception], message: str
) -> None:
    assert callable(make_csr)
    with pytest.raises(error) as info:
        ca.sign(make_csr(), SID)
    assert message in str(info.value)


def test_sign_rejects_invalid_identity_at_construction() -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.for_workload("cluster.local", "ns", "UPPER")


# -- loading operator material ---------------------------------------------------------------------------


def _material(issuer: Issuer) -> CAMaterial:
    return issuer.to_material()


def test_load_root_round_trips(root: Issuer, clock: FakeClock) -> None:
    loaded = load_issuer(_material(root), now=clock.now(), trust_domain="cluster.local")
    assert loaded.certificate == root.certificate
    assert loaded.root == root.certificate
    assert loaded.chain == ()
    assert loaded.key.private_numbers() == root.key.private_numbers()


def test_load_intermediate_with_chain(root: Issuer, clock: FakeClock) -> None:
    intermediate = make_intermediate(root, clock)
    loaded = load_issuer(_material(intermediate), now=clock.now())
    assert loaded.root == root.certificate
    assert loaded.chain == (intermediate.certificate,)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_load_refusals(root: Issuer, clock: FakeClock) -> None:
    other = generate_root("cluster.local", clock)
    intermediate = make_intermediate(root, clock)
    leaf = CertificateAuthority(root, clock=clock).sign(csr_pem(leaf_key := p256_key()), SID).certificate
    cases: list[tuple[CAMaterial, str, str | None]] = [
        (CAMaterial(certificate_pem=b"nope", key_pem=_key_pem(root.key)), "not a PEM certificate", None),
        (CAMaterial(certificate_pem=_pem(root.certificate), key_pem=b"nope"), "not an unencrypted PEM", None),
        (
            CAMaterial(certificate_pem=_pem(root.certificate), key_pem=_key_pem(other.key)),
            "does not match",
            None,
        ),
        (CAMaterial(certificate_pem=_pem(leaf), key_pem=_key_pem(leaf_key)), "is not a CA", None),
        # An intermediate without its root.
        (
            CAMaterial(certificate_pem=_pem(intermediate.certificate), key_pem=_key_pem(intermediate.key)),
            "not a self-signed root",
            None,
        ),
        # An intermediate with the wrong root.
        (
            CAMaterial(
                certificate_pem=_pem(intermediate.certificate),
                key_pem=_key_pem(intermediate.key),
                chain_pem=_pem(other.certificate),
            ),
            "chain is broken",
            None,
        ),
        (_material(root), "not trust domain example.org", "example.org"),
        (
            CAMaterial(certificate_pem=_pem(root.certificate), key_pem=_key_pem(_rsa_small())),
            "fewer than 2048",
            None,
        ),
    ]
    for material, message, trust_domain in cases:
        with pytest.raises(InvalidCAMaterialError) as info:
            load_issuer(material, now=clock.now(), trust_domain=trust_domain)
        assert message in str(info.value), (message, str(info.value))


def _rsa_small() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_load_refuses_expired_and_not_yet_valid(root: Issuer, clock: FakeClock) -> None:
    for shift in (timedelta(days=3651), -timedelta(days=1)):
        with pytest.raises(InvalidCAMaterialError, match="is not valid now"):
            load_issuer(_material(root), now=clock.now() + shift)


def test_authority_refuses_an_issuer_whose_root_it_does_not_trust(root: Issuer, clock: FakeClock) -> None:
    other = generate_root("cluster.local", clock)
    with pytest.raises(InvalidCAMaterialError, match="not in the trust bundle"):
        CertificateAuthority(root, clock=clock, trust_bundle=TrustBundle.of(other.certificate))


def test_issuer_repr_hides_the_key(root: Issuer) -> None:
    assert "redacted" in repr(root)
    assert "PRIVATE" not in repr(root.to_material())
