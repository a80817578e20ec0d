"""The identity package's exceptions: one root; gRPC and cryptography errors are mapped onto it."""

from __future__ import annotations

from nodeagent.errors import AgentError


class IdentityError(AgentError):
    """Root of every error raised by nodeagent.identity."""


class CertificateRequestError(IdentityError):
    """A certificate request failed. Subclasses say whether retrying soon can help."""


class CertificateDeniedError(CertificateRequestError):
    """The CA refused us (unauthenticated or not authorized), or we have no usable token: retrying soon will
    not help and would only hammer the CA, so retry slowly."""


class CertificateUnavailableError(CertificateRequestError):
    """The CA was unreachable or failed transiently (unavailable, deadline, overload): retry with backoff."""


class CertificateRejectedError(CertificateRequestError):
    """The CA judged the request malformed, or answered with a certificate we cannot use: a bug or a version
    skew on one side, so retry slowly."""
