"""The CA's record of what it issued, and when a certificate counts as expiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.ca.identity import SpiffeId
from controlplane.ca.issued import ExpiryState, IssuedCertificates, IssuedRecord, expiry_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.mark.parametrize(
    ("elapsed", "state"),
    [
        (timedelta(0), ExpiryState.VALID),
        (DAY / 2, ExpiryState.VALID),  # the agent renews here
        (DAY * 3 / 4 - timedelta(seconds=1), ExpiryState.VALID),
        (DAY * 3 / 4 + timedelta(seconds=1), ExpiryState.EXPIRING),  # inside the last quarter
        (DAY - timedelta(seconds=1), ExpiryState.EXPIRING),
        (DAY, ExpiryState.EXPIRED),
        (DAY * 2, ExpiryState.EXPIRED),
    ],
)
def test_expiry_state(elapsed: timedelta, state: ExpiryState) -> None:
    assert expiry_state(T0, T0 + DAY, T0 + elapsed) is state


def record(node: str, sa: str, serial: int) -> IssuedRecord:
    return IssuedRecord(
        node=node,
        spiffe_id=SpiffeId.for_workload("cluster.local", "shop", sa),
        serial=serial,
        not_before=T0,
        not_after=T0 + DAY,
    )


def test_one_record_per_node_and_identity_sorted() -> None:
    issued = IssuedCertificates()
    issued.record(record("node-b", "web", 1))
    issued.record(record("node-a", "web", 2))
    issued.record(record("node-a", "cart", 3))
    issued.record(record("node-a", "web", 4))  # a renewal replaces the entry
    assert [(r.node, r.spiffe_id.service_account, r.serial) for r in issued.records()] == [
        ("node-a", "cart", 3),
        ("node-a", "web", 4),
        ("node-b", "web", 1),
    ]
    assert len(issued) == 3
    assert [r.serial for r in issued.for_node("node-b")] == [1]
    assert record("node-a", "web", 255).to_document() == {
        "node": "node-a",
        "spiffe_id": "spiffe://cluster.local/ns/shop/sa/web",
        "serial": "ff",
        "not_before": "2026-01-01T00:00:00+00:00",
        "not_after": "2026-01-02T00:00:00+00:00",
    }
