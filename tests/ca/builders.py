"""Small builders and fakes shared by the CA tests."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from controlplane.ca.authority import IssuedCertificate, Issuer, generate_root, load_issuer
from controlplane.ca.store import CAMaterial

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(slots=True)
class FakeClock:
    current: datetime = START

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    common_name: str = "",
    sans: list[x509.GeneralName] | None = None,
) -> bytes:
    """A CSR for `key`, optionally asking for a subject and SANs (which the CA must ignore)."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def tampered_csr_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A well-formed CSR whose signature no longer matches: the last signature byte is flipped."""
    der = bytearray(
        x509.load_pem_x509_csr(csr_pem(key, common_name="x")).public_bytes(serialization.Encoding.DER)
    )
    der[-1] ^= 0x01
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


def make_intermediate(root: Issuer, clock: FakeClock, *, validity: timedelta = timedelta(days=365)) -> Issuer:
    """An intermediate CA under `root`, loaded through the operator path (load_issuer)."""
    key = p256_key()
    now = clock.now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nodemesh test intermediate")]))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    material = CAMaterial(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        chain_pem=root.certificate.public_bytes(serialization.Encoding.PEM),
    )
    return load_issuer(material, now=now)


def new_root(clock: FakeClock) -> Issuer:
    return generate_root("cluster.local", clock)


def pem_certs(pems: tuple[str, ...] | list[str]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.encode()) for p in pems]


@dataclass(slots=True)
class TlsPeer:
    """What a node agent hands its Envoy for one identity: key, leaf + chain, and the trust bundle."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=p256_key)
    issued: IssuedCertificate | None = None

    @property
    def current(self) -> IssuedCertificate:
        assert self.issued is not None, f"{self.name} has no certificate yet"
        return self.issued

    def context(self, directory: Path, *, server_side: bool) -> ssl.SSLContext:
        issued = self.current
        cert_file = directory / f"{self.name}-chain.pem"
        key_file = directory / f"{self.name}-key.pem"
        cert_file.write_text(issued.certificate_pem + "".join(issued.chain_pem))
        key_file.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        # The tests run on a fake clock, so OpenSSL must not judge validity by the real one
        # (X509_V_FLAG_NO_CHECK_TIME); validity periods are checked by verify_chain at the fake time.
        ctx.verify_flags |= ssl.VerifyFlags(0x200000)
        ctx.load_verify_locations(cadata="".join(issued.trust_bundle_pem))
        ctx.load_cert_chain(cert_file, key_file)
        return ctx


def tls_handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> tuple[str, str]:
    """Run a TLS handshake in memory; return the URI SAN each side saw of the other (client's, server's).

    Raises ssl.SSLError when either side rejects the other.
    """
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c_done = s_done = False
    for _ in range(10):
        if not c_done:
            try:
                c.do_handshake()
                c_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not s_done:
            try:
                s.do_handshake()
                s_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if c_done and s_done:
            break
    else:
        raise AssertionError("TLS handshake did not finish")
    # TLS 1.3: the client finishes before the server has judged its certificate; a byte round trip
    # makes the client see a rejection alert, if any.
    c.write(b"ping")
    s_in.write(c_out.read())
    assert s.read(4) == b"ping"
    return _uri_san(s.getpeercert()), _uri_san(c.getpeercert())


def _uri_san(peer: object) -> str:
    assert isinstance(peer, dict)
    uris = [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
    assert len(uris) == 1, uris
    return str(uris[0])
