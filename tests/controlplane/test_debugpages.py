"""The admin server's mesh pages: diagnostics, describe (with sync and certificate state), certificates;
served through a real AdminServer on port 0."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from controlplane.admin import AdminServer, DebugQueryError
from controlplane.ca.identity import SpiffeId
from controlplane.ca.issued import IssuedCertificates, IssuedRecord
from controlplane.debugpages import MeshPages
from controlplane.model.authz import AuthorizationPolicy
from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.refs import ObjectRef
from controlplane.model.snapshot import MeshSnapshot
from controlplane.xds.status import ProxyStatusRegistry, Variant
from tests.translate.builders import http_port, mesh, namespace, node, pod, service

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def model() -> MeshSnapshot:
    reviews = dataclasses.replace(
        service("shop", "reviews", "10.96.0.10", http_port(9080)), selector=FrozenMap({"app": "reviews"})
    )
    ghost_target = AuthorizationPolicy(
        namespace="shop", name="ghost", target_refs=(PolicyTargetRef(name="ghost"),)
    )
    return mesh(
        namespace("shop"),
        node("node-a", "192.168.0.1"),
        pod("shop", "reviews-1", "node-a", "10.0.1.5", sa="reviews", labels=FrozenMap({"app": "reviews"})),
        reviews,
        ghost_target,
    )


ROUTE_ERROR = Diagnostic(
    severity=Severity.ERROR,
    reason=Reason.BACKEND_NOT_FOUND,
    message="Service shop/missing not found",
    ref=ObjectRef(kind="HTTPRoute", namespace="shop", name="r"),
    field="spec.rules[0].backendRefs[0]",
)


def record(node_name: str, sa: str, not_before: datetime, lifetime: timedelta) -> IssuedRecord:
    return IssuedRecord(
        node=node_name,
        spiffe_id=SpiffeId.for_workload("cluster.local", "shop", sa),
        serial=0xABC,
        not_before=not_before,
        not_after=not_before + lifetime,
    )


def pages(*, issued: IssuedCertificates | None, proxies: ProxyStatusRegistry | None = None) -> MeshPages:
    registry = proxies or ProxyStatusRegistry()
    return MeshPages(
        mesh=model,
        diagnostics=lambda: (ROUTE_ERROR,),
        streams=registry.streams,
        issued=issued,
        clock=FixedClock(),
    )


def test_diagnostics_merge_the_push_and_the_security_checks() -> None:
    documents = pages(issued=None).diagnostics()
    assert [(d["reason"], d["object"]) for d in documents] == [
        ("TargetNotFound", {"kind": "AuthorizationPolicy", "namespace": "shop", "name": "ghost"}),
        ("BackendNotFound", {"kind": "HTTPRoute", "namespace": "shop", "name": "r"}),
    ]


def test_certificates_page_marks_state_and_use() -> None:
    issued = IssuedCertificates()
    issued.record(record("node-a", "reviews", NOW - 2 * HOUR, 24 * HOUR))
    issued.record(record("node-a", "gone", NOW - 23 * HOUR, 24 * HOUR))  # no pod with it any more
    issued.record(record("node-b", "reviews", NOW - 25 * HOUR, 24 * HOUR))  # no such node now
    document = pages(issued=issued).certificates()
    assert document["ca"] is True
    certificates = document["certificates"]
    assert isinstance(certificates, list)
    summary = [(c["node"], c["spiffe_id"].rsplit("/", 1)[1], c["state"], c["in_use"]) for c in certificates]
    assert summary == [
        ("node-a", "gone", "expiring", False),
        ("node-a", "reviews", "valid", True),
        ("node-b", "reviews", "expired", False),
    ]
    assert certificates[1]["remaining_seconds"] == 22 * 3600
    assert certificates[1]["lifetime_seconds"] == 24 * 3600
    assert pages(issued=None).certificates() == {"ca": False, "certificates": []}


def test_describe_adds_sync_and_certificates() -> None:
    issued = IssuedCertificates()
    issued.record(record("node-a", "reviews", NOW - 2 * HOUR, 24 * HOUR))
    issued.record(record("node-a", "other", NOW - 2 * HOUR, 24 * HOUR))
    proxies = ProxyStatusRegistry(clock=lambda: 5.0)
    proxies.open_stream(
        node_id="node-a", cluster="nodemesh-agent", node_bytes=b"", peer="p", variant=Variant.DELTA
    )
    document = pages(issued=issued, proxies=proxies).describe(
        {"kind": "pod", "namespace": "shop", "name": "reviews-1"}
    )
    assert document["identity"] == "spiffe://cluster.local/ns/shop/sa/reviews"
    sync: Any = document["sync"]
    assert sync["agent"]["connected"] is True and sync["agent"]["synced"] is False
    assert sync["envoy"]["connected"] is False
    certificates: Any = document["certificates"]
    assert [c["spiffe_id"] for c in certificates["certificates"]] == [
        "spiffe://cluster.local/ns/shop/sa/reviews"
    ]
    assert certificates["certificates"][0]["state"] == "valid"
    assert pages(issued=None).describe({"namespace": "shop", "name": "reviews-1"})["certificates"] == {
        "ca": False,
        "certificates": [],
    }


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"kind": "pod", "namespace": "shop", "name": "nope"}, 404, "pod shop/nope not found"),
        ({"kind": "service", "namespace": "shop", "name": "reviews"}, 400, "cannot describe kind 'service'"),
        ({"kind": "pod", "name": "reviews-1"}, 400, "needs namespace and name"),
    ],
)
def test_describe_errors(query: dict[str, str], status: int, message: str) -> None:
    with pytest.raises(DebugQueryError, match=message) as caught:
        pages(issued=None).describe(query)
    assert caught.value.status == status


async def test_served_by_the_admin_server() -> None:
    mesh_pages = pages(issued=IssuedCertificates())
    async with (
        AdminServer(
            address="127.0.0.1:0",
            registry=CollectorRegistry(),
            readiness=asyncio.Event(),
            debug_pages=mesh_pages.pages(),
            debug_queries=mesh_pages.queries(),
        ) as admin,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(admin.url + "/debug") as response:
            index = await response.json()
        assert {"/debug/describe", "/debug/diagnostics", "/debug/certificates"} <= set(index["pages"])
        async with session.get(admin.url + "/debug/diagnostics") as response:
            assert response.status == 200
            assert len(await response.json()) == 2
        url = admin.url + "/debug/describe?kind=pod&namespace=shop&name=reviews-1"
        async with session.get(url) as response:
            assert response.status == 200
            assert (await response.json())["pod"]["name"] == "reviews-1"
        async with session.get(admin.url + "/debug/describe?kind=pod&namespace=shop&name=x") as response:
            assert response.status == 404
            assert await response.json() == {"error": "pod shop/x not found"}
