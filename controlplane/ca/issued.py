"""What the CA issued, in memory: the latest certificate per (node, identity), for `meshctl check` and
`meshctl describe`. Serial and validity only, never key material or the certificate itself.

One entry per (node, SPIFFE ID): a renewal replaces the entry, so the record is bounded by the identities
ever placed on each node. A control-plane restart forgets it; the agents' next renewals fill it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from controlplane.ca.identity import SpiffeId


class ExpiryState(StrEnum):
    VALID = "valid"
    # Inside the last quarter of its lifetime: the agent renews at half, so renewal has been failing.
    EXPIRING = "expiring"
    EXPIRED = "expired"


def expiry_state(not_before: datetime, not_after: datetime, now: datetime) -> ExpiryState:
    if now >= not_after:
        return ExpiryState.EXPIRED
    if not_after - now < (not_after - not_before) / 4:
        return ExpiryState.EXPIRING
    return ExpiryState.VALID


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedRecord:
    node: str
    spiffe_id: SpiffeId
    serial: int
    not_before: datetime
    not_after: datetime

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    def remaining(self, now: datetime) -> timedelta:
        return self.not_after - now

    def state(self, now: datetime) -> ExpiryState:
        return expiry_state(self.not_before, self.not_after, now)

    def to_document(self) -> dict[str, object]:
        return {
            "node": self.node,
            "spiffe_id": str(self.spiffe_id),
            "serial": f"{self.serial:x}",
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
        }


class IssuedCertificates:
    """The record; the certificate service writes it on each issuance, the admin pages read it."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, SpiffeId], IssuedRecord] = {}

    def record(self, record: IssuedRecord) -> None:
        self._records[(record.node, record.spiffe_id)] = record

    def records(self) -> tuple[IssuedRecord, ...]:
        """Every record, sorted by node then SPIFFE ID."""
        return tuple(self._records[key] for key in sorted(self._records, key=lambda k: (k[0], str(k[1]))))

    def for_node(self, node: str) -> tuple[IssuedRecord, ...]:
        return tuple(r for r in self.records() if r.node == node)

    def __len__(self) -> int:
        return len(self._records)
