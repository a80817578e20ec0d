"""SPIFFE IDs of mesh workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>.

Standard library only: the node agent imports this module too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.ca.errors import InvalidSpiffeIdError

SCHEME = "spiffe://"
# SPIFFE ID spec §2.1/§2.3: a trust domain is lowercase letters, digits, '.', '-', '_'; the whole ID is
# at most 2048 bytes and the trust domain at most 255.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_MAX_ID_LENGTH = 2048
_MAX_TRUST_DOMAIN_LENGTH = 255
# Kubernetes: namespaces are RFC 1123 labels, service accounts RFC 1123 subdomains.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_LABEL_LENGTH = 63
_MAX_SUBDOMAIN_LENGTH = 253


def validate_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a valid SPIFFE trust domain name, else raise InvalidSpiffeIdError."""
    if not trust_domain:
        raise InvalidSpiffeIdError("trust domain is empty")
    if len(trust_domain) > _MAX_TRUST_DOMAIN_LENGTH:
        raise InvalidSpiffeIdError(f"trust domain is longer than {_MAX_TRUST_DOMAIN_LENGTH} characters")
    if "@" in trust_domain:
        raise InvalidSpiffeIdError(f"trust domain {trust_domain!r} has userinfo ('@'), which is not allowed")
    if ":" in trust_domain:
        raise InvalidSpiffeIdError(f"trust domain {trust_domain!r} has a port (':'), which is not allowed")
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise InvalidSpiffeIdError(
            f"trust domain {trust_domain!r} may contain only lowercase letters, digits, '.', '-' and '_'"
        )
    return trust_domain


def _validate_namespace(namespace: str) -> None:
    if not namespace:
        raise InvalidSpiffeIdError("namespace is empty")
    if len(namespace) > _MAX_LABEL_LENGTH or not _DNS_LABEL.fullmatch(namespace):
        raise InvalidSpiffeIdError(
            f"namespace {namespace!r} is not a DNS label (at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )


def _validate_service_account(service_account: str) -> None:
    if not service_account:
        raise InvalidSpiffeIdError("service account is empty")
    labels = service_account.split(".")
    if len(service_account) > _MAX_SUBDOMAIN_LENGTH or not all(
        len(label) <= _MAX_LABEL_LENGTH and _DNS_LABEL.fullmatch(label) for label in labels
    ):
        raise InvalidSpiffeIdError(
            f"service account {service_account!r} is not a DNS subdomain (dot-separated labels of lowercase "
            "letters, digits and '-', at most 253 characters)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        _validate_namespace(self.namespace)
        _validate_service_account(self.service_account)
        if len(str(self)) > _MAX_ID_LENGTH:
            raise InvalidSpiffeIdError(f"SPIFFE ID is longer than {_MAX_ID_LENGTH} characters")

    @classmethod
    def for_workload(cls, trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
        return cls(trust_domain=trust_domain, namespace=namespace, service_account=service_account)

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse and validate; the error message says which part is wrong."""
        if len(text) > _MAX_ID_LENGTH:
            raise InvalidSpiffeIdError(f"SPIFFE ID is longer than {_MAX_ID_LENGTH} characters")
        if not text.startswith(SCHEME):
            if text[: len(SCHEME)].lower() == SCHEME:
                raise InvalidSpiffeIdError(f"{text!r}: the scheme must be lowercase 'spiffe://'")
            raise InvalidSpiffeIdError(f"{text!r} does not start with 'spiffe://'")
        if "?" in text:
            raise InvalidSpiffeIdError(f"{text!r} has a query ('?'), which SPIFFE IDs may not have")
        if "#" in text:
            raise InvalidSpiffeIdError(f"{text!r} has a fragment ('#'), which SPIFFE IDs may not have")
        trust_domain, slash, path = text[len(SCHEME) :].partition("/")
        try:
            validate_trust_domain(trust_domain)
        except InvalidSpiffeIdError as exc:
            raise InvalidSpiffeIdError(f"{text!r}: {exc}") from None
        if not slash:
            raise InvalidSpiffeIdError(f"{text!r} has no path; expected /ns/<namespace>/sa/<serviceaccount>")
        segments = path.split("/")
        if len(segments) != 4 or segments[0] != "ns" or segments[2] != "sa":
            raise InvalidSpiffeIdError(
                f"{text!r}: path must be exactly /ns/<namespace>/sa/<serviceaccount>, got /{path}"
            )
        try:
            return cls(trust_domain=trust_domain, namespace=segments[1], service_account=segments[3])
        except InvalidSpiffeIdError as exc:
            raise InvalidSpiffeIdError(f"{text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The Istio-style principal AuthorizationPolicy matches on: <trust-domain>/ns/<ns>/sa/<sa>."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def trust_domain_id(self) -> str:
        """The trust domain's own SPIFFE ID, spiffe://<trust-domain>, carried by CA certificates."""
        return f"{SCHEME}{self.trust_domain}"
