"""The CA package's exceptions: one root, so callers catch `CAError` and never a `cryptography` type."""

from __future__ import annotations


class CAError(Exception):
    """Root of every error raised by controlplane.ca."""


class InvalidSpiffeIdError(CAError, ValueError):
    """A string is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>."""


class InvalidCSRError(CAError, ValueError):
    """A certificate signing request is malformed, unsigned, or asks for an unsupported key."""


class UnsupportedKeyError(InvalidCSRError):
    """The CSR's public key is not ECDSA P-256."""


class InvalidCAMaterialError(CAError):
    """Operator-supplied or stored CA certificate/key material fails a check (not a CA, key mismatch, ...)."""


class CAStoreError(CAError):
    """The CA store cannot be read or written safely (for example a key file others can read)."""


class CAStoreConflictError(CAStoreError):
    """Someone else stored CA material first (another replica won a race to create or rotate): load again
    and use theirs, so the mesh keeps one root."""


class RotationError(CAError):
    """A root rotation step was requested out of order or too early."""


class ChainVerificationError(CAError):
    """A certificate does not chain to any root of a trust bundle at the given time."""


class AuthenticatorUnavailableError(CAError):
    """The authenticator cannot check a token right now (e.g. the TokenReview API is unreachable); unlike a
    refusal, the caller should retry."""
