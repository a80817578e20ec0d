"""Workload keys and CSRs: P-256, the SPIFFE ID as the only SAN, no way to leak the key by printing it."""

from __future__ import annotations

import pickle

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.ca.authority import CertificateAuthority, generate_root
from controlplane.ca.identity import SpiffeId
from nodeagent.identity.keys import WorkloadKey, generate_key
from tests.ca.builders import START, FakeClock

WEB = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")


def test_a_key_is_p256_and_each_identity_gets_its_own() -> None:
    first, second = generate_key(WEB), generate_key(WEB)
    assert first.public_key_der() != second.public_key_der()
    loaded = serialization.load_pem_private_key(first.private_key_pem(), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert isinstance(loaded.curve, ec.SECP256R1)
    assert first.private_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_other_curves_are_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        WorkloadKey(WEB, ec.generate_private_key(ec.SECP384R1()))


def test_the_csr_has_an_empty_subject_and_only_the_spiffe_id_and_is_signed_by_the_key() -> None:
    key = generate_key(WEB)
    csr = x509.load_pem_x509_csr(key.csr_pem().encode())
    assert csr.is_signature_valid
    assert len(csr.subject) == 0
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(str(WEB))]
    public = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == key.public_key_der()


def test_printing_a_key_shows_the_identity_never_the_key() -> None:
    key = generate_key(WEB)
    pem = key.private_key_pem().decode()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(key), str(key), f"{key}", f"{[key]}"):
        assert str(WEB) in text
        assert "redacted" in text
        assert body[:16] not in text
        assert "PRIVATE" not in text


def test_a_key_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(generate_key(WEB))


def test_matches_tells_our_certificate_from_another() -> None:
    key, other = generate_key(WEB), generate_key(WEB)
    clock = FakeClock(START)
    ca = CertificateAuthority(generate_root("cluster.local", clock), clock=clock)
    issued = ca.sign(key.csr_pem(), WEB)
    assert key.matches(issued.certificate)
    assert not other.matches(issued.certificate)
