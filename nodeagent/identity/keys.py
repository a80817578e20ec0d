"""Workload keys: ECDSA P-256, generated and held in memory only, and the CSRs that carry their public half.

A WorkloadKey never prints its key (repr shows only the identity) and offers no way to write it to a file:
the PEM exists only to hand to the local Envoy over SDS.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.ca.identity import SpiffeId

_SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


class WorkloadKey:
    """The private key of one identity. Not a dataclass on purpose: no generated repr, eq or pickling help."""

    __slots__ = ("_key", "spiffe_id")

    def __init__(self, spiffe_id: SpiffeId, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"workload keys are ECDSA P-256, not {key.curve.name}")
        self.spiffe_id = spiffe_id
        self._key = key

    def __repr__(self) -> str:
        return f"WorkloadKey(spiffe_id={str(self.spiffe_id)!r}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling is how keys end up in caches, queues and files by accident.
        raise TypeError("WorkloadKey cannot be pickled: private keys stay in this process")

    def public_key_der(self) -> bytes:
        return self._key.public_key().public_bytes(*_SPKI)

    def matches(self, certificate: x509.Certificate) -> bool:
        """Whether `certificate` certifies this key's public half."""
        return certificate.public_key().public_bytes(*_SPKI) == self.public_key_der()

    def csr_pem(self) -> str:
        """A PKCS#10 CSR: empty subject, the SPIFFE ID as its only (URI) SAN, signed with this key.

        The CA ignores the CSR's names and puts the identity it authorized into the certificate; the SAN here
        only documents what is asked for.
        """
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(self.spiffe_id))]),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted, for the local Envoy's SDS secret only."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def generate_key(spiffe_id: SpiffeId) -> WorkloadKey:
    """A fresh P-256 key for `spiffe_id`."""
    return WorkloadKey(spiffe_id, ec.generate_private_key(ec.SECP256R1()))
