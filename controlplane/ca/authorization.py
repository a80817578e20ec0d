"""Node authorization: who is calling (a node, proven by a token) and whether that node may get a
certificate for an identity (only if a pod with that service account is scheduled on it right now)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from controlplane.ca.clock import Clock
from controlplane.ca.errors import CAError
from controlplane.ca.identity import SpiffeId

log = logging.getLogger(__name__)


class RefusalReason(StrEnum):
    """Why a signing request was refused. Closed: these are metric labels and log fields."""

    MISSING_TOKEN = "missing_token"
    INVALID_TOKEN = "invalid_token"
    EXPIRED_TOKEN = "expired_token"
    NODE_MISMATCH = "node_mismatch"
    TRUST_DOMAIN_MISMATCH = "trust_domain_mismatch"
    NO_WORKLOAD_ON_NODE = "no_workload_on_node"


class AuthenticationError(CAError):
    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeIdentity:
    """A node whose credentials were verified."""

    node: str


class NodeAuthenticator(Protocol):
    async def authenticate(self, token: str) -> NodeIdentity:
        """The node `token` proves, or AuthenticationError."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapToken:
    node: str
    token: str = field(repr=False)
    expires_at: datetime | None = None


class BootstrapTokenAuthenticator:
    """Per-node static tokens for the local setup (a cluster uses TokenReview instead).

    A node may have several tokens, so they can be rolled. Tokens are compared as SHA-256 digests with
    `hmac.compare_digest` against every entry, so timing reveals neither a token nor which one matched.
    """

    def __init__(self, tokens: Iterable[BootstrapToken] | Mapping[str, str], *, clock: Clock) -> None:
        entries = (
            [BootstrapToken(node=n, token=t) for n, t in tokens.items()]
            if isinstance(tokens, Mapping)
            else list(tokens)
        )
        digests: list[tuple[bytes, BootstrapToken]] = []
        for entry in entries:
            if not entry.node or not entry.token:
                raise CAError("bootstrap tokens need a node name and a non-empty token")
            digest = _digest(entry.token)
            if any(hmac.compare_digest(digest, d) for d, _ in digests):
                raise CAError(f"bootstrap token for node {entry.node} is also used by another entry")
            digests.append((digest, entry))
        self._digests = tuple(digests)
        self._clock = clock

    @classmethod
    def from_file(cls, path: Path, *, clock: Clock) -> BootstrapTokenAuthenticator:
        """Read lines `<node> <token> [<expiry, ISO 8601 with offset>]`; '#' starts a comment."""
        entries: list[BootstrapToken] = []
        try:
            text = path.read_text()
        except OSError as exc:
            raise CAError(f"cannot read bootstrap token file {path}: {exc.strerror}") from exc
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) not in (2, 3):
                raise CAError(f"{path}:{number}: expected '<node> <token> [<expiry>]'")
            expires_at = None
            if len(fields) == 3:
                try:
                    expires_at = datetime.fromisoformat(fields[2])
                except ValueError as exc:
                    raise CAError(f"{path}:{number}: expiry {fields[2]!r} is not an ISO 8601 time") from exc
                if expires_at.tzinfo is None:
                    raise CAError(f"{path}:{number}: expiry {fields[2]!r} needs a UTC offset, e.g. Z")
            entries.append(BootstrapToken(node=fields[0], token=fields[1], expires_at=expires_at))
        return cls(entries, clock=clock)

    async def authenticate(self, token: str) -> NodeIdentity:
        if not token:
            raise AuthenticationError(RefusalReason.MISSING_TOKEN, "no bearer token")
        digest = _digest(token)
        match: BootstrapToken | None = None
        for candidate, entry in self._digests:
            if hmac.compare_digest(digest, candidate):
                match = entry
        if match is None:
            raise AuthenticationError(RefusalReason.INVALID_TOKEN, "unknown bootstrap token")
        if match.expires_at is not None and self._clock.now() >= match.expires_at:
            raise AuthenticationError(
                RefusalReason.EXPIRED_TOKEN, f"bootstrap token of node {match.node} has expired"
            )
        return NodeIdentity(node=match.node)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class WorkloadPlacement(Protocol):
    def service_accounts_on_node(self, node: str) -> frozenset[tuple[str, str]]:
        """(namespace, service account) of every pod scheduled on `node` right now."""
        ...


class StaticPlacement:
    """An in-memory WorkloadPlacement (tests, local runs); the model snapshot provides the real one."""

    def __init__(self, placements: Mapping[str, Iterable[tuple[str, str]]] | None = None) -> None:
        self._by_node = {node: frozenset(accounts) for node, accounts in (placements or {}).items()}

    def set_node(self, node: str, accounts: Iterable[tuple[str, str]]) -> None:
        self._by_node[node] = frozenset(accounts)

    def service_accounts_on_node(self, node: str) -> frozenset[tuple[str, str]]:
        return self._by_node.get(node, frozenset())


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    reason: RefusalReason | None = None

    @classmethod
    def allow(cls) -> Decision:
        return cls(allowed=True)

    @classmethod
    def deny(cls, reason: RefusalReason) -> Decision:
        return cls(allowed=False, reason=reason)


def authorize(
    node_identity: NodeIdentity,
    claimed_node: str,
    spiffe_id: SpiffeId,
    placement: WorkloadPlacement,
    trust_domain: str,
) -> Decision:
    """May the authenticated node get a certificate for `spiffe_id`?"""
    if node_identity.node != claimed_node:
        return Decision.deny(RefusalReason.NODE_MISMATCH)
    if spiffe_id.trust_domain != trust_domain:
        return Decision.deny(RefusalReason.TRUST_DOMAIN_MISMATCH)
    accounts = placement.service_accounts_on_node(node_identity.node)
    if (spiffe_id.namespace, spiffe_id.service_account) not in accounts:
        return Decision.deny(RefusalReason.NO_WORKLOAD_ON_NODE)
    return Decision.allow()
