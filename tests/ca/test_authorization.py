from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.ca.authorization import (
    AuthenticationError,
    BootstrapToken,
    BootstrapTokenAuthenticator,
    Decision,
    NodeAuthenticator,
    NodeIdentity,
    RefusalReason,
    StaticPlacement,
    WorkloadPlacement,
    authorize,
)
from controlplane.ca.errors import CAError
from controlplane.ca.identity import SpiffeId
from tests.ca.builders import START, FakeClock


async def test_bootstrap_tokens_identify_their_node() -> None:
    auth: NodeAuthenticator = BootstrapTokenAuthenticator(
        {"node-a": "token-a", "node-b": "token-b"}, clock=FakeClock()
    )
    assert await auth.authenticate("token-a") == NodeIdentity(node="node-a")
    assert await auth.authenticate("token-b") == NodeIdentity(node="node-b")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", RefusalReason.MISSING_TOKEN),
        ("token-c", RefusalReason.INVALID_TOKEN),
        ("token-a ", RefusalReason.INVALID_TOKEN),
        ("TOKEN-A", RefusalReason.INVALID_TOKEN),
        ("token-", RefusalReason.INVALID_TOKEN),
        ("expired-token", RefusalReason.EXPIRED_TOKEN),
    ],
)
async def test_bootstrap_token_refusals(token: str, reason: RefusalReason) -> None:
    clock = FakeClock()
    auth = BootstrapTokenAuthenticator(
        [
            BootstrapToken(node="node-a", token="token-a"),
            BootstrapToken(node="node-b", token="expired-token", expires_at=START - timedelta(seconds=1)),
        ],
        clock=clock,
    )
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(token)
    assert info.value.reason is reason


async def test_token_expiry_follows_the_clock() -> None:
    clock = FakeClock()
    auth = BootstrapTokenAuthenticator(
        [BootstrapToken(node="node-a", token="t", expires_at=START + timedelta(hours=1))], clock=clock
    )
    assert (await auth.authenticate("t")).node == "node-a"
    clock.advance(timedelta(hours=1))
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate("t")
    assert info.value.reason is RefusalReason.EXPIRED_TOKEN


async def test_tokens_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# node token [expiry]\n"
        "node-a  secret-a\n"
        "\n"
        "node-b secret-b 2026-03-01T13:00:00Z   # rolled next week\n"
        "node-b secret-b2\n"
    )
    clock = FakeClock()
    auth = BootstrapTokenAuthenticator.from_file(path, clock=clock)
    assert (await auth.authenticate("secret-a")).node == "node-a"
    assert (await auth.authenticate("secret-b")).node == "node-b"
    assert (await auth.authenticate("secret-b2")).node == "node-b"
    clock.advance(timedelta(hours=2))
    with pytest.raises(AuthenticationError):
        await auth.authenticate("secret-b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("node-a\n", "expected '<node> <token> \\[<expiry>\\]'"),
        ("node-a t 2026-03-01 extra\n", "expected"),
        ("node-a t tomorrow\n", "not an ISO 8601 time"),
        ("node-a t 2026-03-01T13:00:00\n", "needs a UTC offset"),
        ("node-a t\nnode-b t\n", "also used by another entry"),
    ],
)
def test_bad_token_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(CAError, match=message):
        BootstrapTokenAuthenticator.from_file(path, clock=FakeClock())


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="cannot read bootstrap token file"):
        BootstrapTokenAuthenticator.from_file(tmp_path / "absent", clock=FakeClock())


def test_token_repr_hides_the_secret() -> None:
    assert "hunter2" not in repr(BootstrapToken(node="n", token="hunter2"))


PLACEMENT = StaticPlacement({"node-a": [("shop", "web"), ("shop", "api")], "node-b": [("data", "db")]})


@pytest.mark.parametrize(
    ("authenticated", "claimed", "spiffe_id", "expected"),
    [
        ("node-a", "node-a", "spiffe://cluster.local/ns/shop/sa/web", Decision.allow()),
        ("node-b", "node-b", "spiffe://cluster.local/ns/data/sa/db", Decision.allow()),
        (
            "node-a",
            "node-b",
            "spiffe://cluster.local/ns/data/sa/db",
            Decision.deny(RefusalReason.NODE_MISMATCH),
        ),
        ("node-a", "", "spiffe://cluster.local/ns/shop/sa/web", Decision.deny(RefusalReason.NODE_MISMATCH)),
        (
            "node-a",
            "node-a",
            "spiffe://other.td/ns/shop/sa/web",
            Decision.deny(RefusalReason.TRUST_DOMAIN_MISMATCH),
        ),
        # db runs on node-b only: node-a may not get its identity.
        (
            "node-a",
            "node-a",
            "spiffe://cluster.local/ns/data/sa/db",
            Decision.deny(RefusalReason.NO_WORKLOAD_ON_NODE),
        ),
        # Same service account name in another namespace is another identity.
        (
            "node-a",
            "node-a",
            "spiffe://cluster.local/ns/other/sa/web",
            Decision.deny(RefusalReason.NO_WORKLOAD_ON_NODE),
        ),
        (
            "node-c",
            "node-c",
            "spiffe://cluster.local/ns/shop/sa/web",
            Decision.deny(RefusalReason.NO_WORKLOAD_ON_NODE),
        ),
    ],
)
def test_authorize(authenticated: str, claimed: str, spiffe_id: str, expected: Decision) -> None:
    placement: WorkloadPlacement = PLACEMENT
    decision = authorize(
        NodeIdentity(node=authenticated), claimed, SpiffeId.parse(spiffe_id), placement, "cluster.local"
    )
    assert decision == expected


def test_authorization_follows_placement_changes() -> None:
    placement = StaticPlacement()
    sid = SpiffeId.parse("spiffe://cluster.local/ns/shop/sa/web")
    node = NodeIdentity(node="node-a")
    assert not authorize(node, "node-a", sid, placement, "cluster.local").allowed
    placement.set_node("node-a", [("shop", "web")])
    assert authorize(node, "node-a", sid, placement, "cluster.local").allowed
    placement.set_node("node-a", [])
    assert authorize(node, "node-a", sid, placement, "cluster.local") == Decision.deny(
        RefusalReason.NO_WORKLOAD_ON_NODE
    )
