from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from controlplane.ca.errors import CAError, InvalidSpiffeIdError
from controlplane.ca.identity import SpiffeId

VALID = [
    ("spiffe://cluster.local/ns/default/sa/default", "cluster.local", "default", "default"),
    ("spiffe://example.org/ns/team-a/sa/web", "example.org", "team-a", "web"),
    ("spiffe://td_1-x.io/ns/a1/sa/svc.account-2", "td_1-x.io", "a1", "svc.account-2"),
    ("spiffe://mesh/ns/" + "n" * 63 + "/sa/s", "mesh", "n" * 63, "s"),
]

INVALID = [
    ("", "does not start with 'spiffe://'"),
    ("https://cluster.local/ns/a/sa/b", "does not start with 'spiffe://'"),
    ("SPIFFE://cluster.local/ns/a/sa/b", "scheme must be lowercase"),
    ("spiffe:///ns/a/sa/b", "trust domain is empty"),
    ("spiffe://Cluster.Local/ns/a/sa/b", "only lowercase letters"),
    ("spiffe://cluster.local:8443/ns/a/sa/b", "port"),
    ("spiffe://user@cluster.local/ns/a/sa/b", "userinfo"),
    ("spiffe://cluster.local/ns/a/sa/b?x=1", "query"),
    ("spiffe://cluster.local/ns/a/sa/b#frag", "fragment"),
    ("spiffe://cluster.local", "has no path"),
    ("spiffe://cluster.local/", "path must be exactly"),
    ("spiffe://cluster.local/ns/a/sa/b/", "path must be exactly"),
    ("spiffe://cluster.local/ns/a/sa", "path must be exactly"),
    ("spiffe://cluster.local/ns/a/serviceaccount/b", "path must be exactly"),
    ("spiffe://cluster.local/sa/b/ns/a", "path must be exactly"),
    ("spiffe://cluster.local/ns//sa/b", "namespace is empty"),
    ("spiffe://cluster.local/ns/a/sa/", "service account is empty"),
    ("spiffe://cluster.local/ns/A/sa/b", "namespace 'A' is not a DNS label"),
    ("spiffe://cluster.local/ns/-a/sa/b", "is not a DNS label"),
    ("spiffe://cluster.local/ns/a.b/sa/c", "is not a DNS label"),
    ("spiffe://cluster.local/ns/" + "n" * 64 + "/sa/b", "is not a DNS label"),
    ("spiffe://cluster.local/ns/a/sa/B", "is not a DNS subdomain"),
    ("spiffe://cluster.local/ns/a/sa/b..c", "is not a DNS subdomain"),
    ("spiffe://cluster.local/ns/a/sa/" + "s" * 254, "is not a DNS subdomain"),
    ("spiffe://cluster.local/ns/a/sa/%41", "is not a DNS subdomain"),
    ("spiffe://" + "t" * 256 + "/ns/a/sa/b", "longer than 255"),
    ("spiffe://cluster.local/ns/a/sa/" + "s" * 2100, "longer than 2048"),
]


@pytest.mark.parametrize(("text", "trust_domain", "namespace", "service_account"), VALID)
def test_parse_valid(text: str, trust_domain: str, namespace: str, service_account: str) -> None:
    sid = SpiffeId.parse(text)
    assert (sid.trust_domain, sid.namespace, sid.service_account) == (
        trust_domain,
        namespace,
        service_account,
    )
    assert str(sid) == text
    assert SpiffeId.parse(str(sid)) == sid


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_parse_invalid_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as info:
        SpiffeId.parse(text)
    assert message in str(info.value)
    assert isinstance(info.value, CAError)


def test_for_workload_and_principal() -> None:
    sid = SpiffeId.for_workload("cluster.local", "shop", "checkout")
    assert str(sid) == "spiffe://cluster.local/ns/shop/sa/checkout"
    assert sid.principal == "cluster.local/ns/shop/sa/checkout"
    assert sid.trust_domain_id == "spiffe://cluster.local"


@pytest.mark.parametrize(
    ("trust_domain", "namespace", "service_account"),
    [("Bad", "a", "b"), ("td", "a/b", "c"), ("td", "a", "b/c"), ("td", "", "b")],
)
def test_for_workload_validates(trust_domain: str, namespace: str, service_account: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.for_workload(trust_domain, namespace, service_account)


def test_frozen_and_hashable() -> None:
    sid = SpiffeId.parse("spiffe://cluster.local/ns/a/sa/b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sid.namespace = "c"  # type: ignore[misc]
    assert len({sid, SpiffeId.for_workload("cluster.local", "a", "b")}) == 1
    with pytest.raises(InvalidSpiffeIdError):
        dataclasses.replace(sid, namespace="NOPE")


def test_identity_and_rotation_import_only_the_standard_library() -> None:
    """The node agent reuses these modules; they must not pull in cryptography, grpc or prometheus."""
    code = (
        "import sys\n"
        "import controlplane.ca.identity, controlplane.ca.rotation, controlplane.ca.clock\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted({'cryptography', 'grpc', 'prometheus_client', 'google'} & loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
