from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from meshctl.meshcheck import Readiness, judge_certificates, judge_crds, judge_mesh, judge_proxy
from meshctl.output import Painter
from meshctl.proxystatus import Nack, ProxyKind, ProxyRow, SyncState, TypeState
from meshctl.verdict import CheckResult, Verdict, failed, render

NOW = 1000.0
READY = Readiness(ready=True, detail="ready\n", url="http://cp/readyz")


def row(*types: TypeState, node: str = "node-a", kind: ProxyKind = ProxyKind.ENVOY) -> ProxyRow:
    return ProxyRow(
        node=node,
        kind=kind,
        cluster="nodemesh-envoy",
        variant="sotw",
        replica="cp",
        peer="p",
        stream_id=1,
        connected_since=NOW - 60,
        types=types,
    )


def state(label_url: str, s: SyncState, *, updated: float = NOW - 1, nack: str = "") -> TypeState:
    return TypeState(
        type_url=f"type.googleapis.com/envoy.config.{label_url}",
        state=s,
        version="v123456789",
        updated=updated,
        nack=Nack(version="v1", message=nack, at="") if nack else None,
    )


def test_all_synced_is_ok_and_unreported_checks_are_skipped_honestly() -> None:
    # A control plane without a mesh model (raw Envoy config) reports neither certificates nor diagnostics.
    results = judge_mesh(READY, [row(state("cluster.v3.Cluster", SyncState.SYNCED))], now=NOW)
    verdicts = {r.name: r.verdict for r in results}
    assert verdicts == {
        "controlplane-ready": Verdict.OK,
        "proxies-connected": Verdict.OK,
        "proxy-synced": Verdict.OK,
        "node-connected": Verdict.WARN,  # an Envoy without its agent
        "certificates": Verdict.SKIP,
        "crds": Verdict.SKIP,
    }
    assert not failed(results)
    assert all("reports no" in r.detail for r in results if r.verdict is Verdict.SKIP)
    with_model = judge_mesh(READY, [], now=NOW, certificates={"ca": True, "certificates": []}, diagnostics=[])
    assert {r.name: r.verdict for r in with_model if r.name in ("certificates", "crds")} == {
        "certificates": Verdict.OK,
        "crds": Verdict.OK,
    }


def test_not_ready_fails() -> None:
    results = judge_mesh(Readiness(ready=False, detail="not ready: no snapshot\n", url="u"), [], now=NOW)
    assert results[0].verdict is Verdict.FAIL and "no snapshot" in results[0].detail
    assert results[1].verdict is Verdict.WARN  # nobody connected
    assert failed(results)


def test_a_nack_fails_with_the_proxys_message() -> None:
    result = judge_proxy(
        row(
            state("cluster.v3.Cluster", SyncState.SYNCED),
            state("listener.v3.Listener", SyncState.ERROR, nack="bad port"),
        ),
        now=NOW,
    )
    assert result.verdict is Verdict.FAIL
    assert "node-a" in result.detail and "bad port" in result.detail and "v1234567" in result.detail


def test_unacked_is_in_flight_at_first_then_stuck() -> None:
    fresh = judge_proxy(row(state("cluster.v3.Cluster", SyncState.STALE, updated=NOW - 2)), now=NOW)
    assert fresh.verdict is Verdict.WARN and "in flight" in fresh.detail
    stuck = judge_proxy(row(state("cluster.v3.Cluster", SyncState.STALE, updated=NOW - 120)), now=NOW)
    assert stuck.verdict is Verdict.FAIL and "2m0s" in stuck.detail
    assert judge_proxy(row(), now=NOW).verdict is Verdict.WARN


def test_rendered_checks_keep_multi_line_details_indented() -> None:
    results = [
        CheckResult(name="a", verdict=Verdict.OK, detail="fine"),
        CheckResult(name="longer", verdict=Verdict.FAIL, detail="first\nsecond  ", fix="do this"),
        CheckResult(name="c", verdict=Verdict.SKIP, detail="later", fix="not shown for a skip"),
    ]
    assert render(results, Painter(enabled=False)).splitlines() == [
        "OK    a       fine",
        "FAIL  longer  first",
        "              second",
        "              fix: do this",
        "SKIP  c       later",
        "",
        "1 OK, 1 FAIL, 1 SKIP",
    ]


def test_each_node_should_have_its_envoy_and_its_agent_connected() -> None:
    synced = state("cluster.v3.Cluster", SyncState.SYNCED)
    rows = [row(synced), row(synced, kind=ProxyKind.AGENT), row(synced, node="node-b")]
    results = [r for r in judge_mesh(READY, rows, now=NOW) if r.name == "node-connected"]
    assert [(r.verdict, r.detail) for r in results] == [
        (Verdict.OK, "node-a: agent, envoy connected"),
        (Verdict.WARN, "node-b: envoy connected, no agent"),
    ]


T0 = datetime.fromtimestamp(NOW, UTC)


def cert(
    node: str, sa: str, *, age_hours: float, lifetime_hours: float = 24, in_use: bool = True
) -> dict[str, Any]:
    not_before = T0 - timedelta(hours=age_hours)
    return {
        "node": node,
        "spiffe_id": f"spiffe://cluster.local/ns/shop/sa/{sa}",
        "serial": "abc",
        "not_before": not_before.isoformat(),
        "not_after": (not_before + timedelta(hours=lifetime_hours)).isoformat(),
        "in_use": in_use,
    }


@pytest.mark.parametrize(
    ("certificates", "verdict", "says"),
    [
        pytest.param(None, Verdict.SKIP, "reports no certificates", id="not-reported"),
        pytest.param({"ca": False, "certificates": []}, Verdict.SKIP, "no CA configured", id="no-ca"),
        pytest.param(
            {"ca": True, "certificates": []}, Verdict.OK, "no certificate in use yet", id="none-yet"
        ),
        pytest.param(
            {
                "ca": True,
                "certificates": [cert("node-a", "web", age_hours=2), cert("node-b", "db", age_hours=10)],
            },
            Verdict.OK,
            "2 certificate(s) on 2 node(s) valid; next to expire: "
            "node-b spiffe://cluster.local/ns/shop/sa/db serial abc expires in 14h0m",
            id="valid",
        ),
        pytest.param(
            {
                "ca": True,
                "certificates": [cert("node-a", "web", age_hours=2), cert("node-a", "db", age_hours=19)],
            },
            Verdict.WARN,
            "0 expired, 1 in the last quarter of their lifetime:\n"
            "node-a spiffe://cluster.local/ns/shop/sa/db serial abc expires in 5h0m",
            id="expiring",
        ),
        pytest.param(
            {
                "ca": True,
                "certificates": [cert("node-a", "db", age_hours=19), cert("node-a", "web", age_hours=25)],
            },
            Verdict.FAIL,
            "1 expired, 1 in the last quarter of their lifetime:\n"
            "node-a spiffe://cluster.local/ns/shop/sa/web serial abc expired 1h0m ago\n"
            "node-a spiffe://cluster.local/ns/shop/sa/db serial abc expires in 5h0m",
            id="expired",
        ),
        pytest.param(
            {"ca": True, "certificates": [cert("node-a", "old", age_hours=30, in_use=False)]},
            Verdict.OK,
            "no certificate in use yet",
            id="expired-but-unused",
        ),
    ],
)
def test_certificates(certificates: dict[str, Any] | None, verdict: Verdict, says: str) -> None:
    result = judge_certificates(certificates, now=NOW)
    assert result.name == "certificates"
    assert result.verdict is verdict
    assert says in result.detail


def diagnostic(kind: str, severity: str = "Error", field: str = "spec") -> dict[str, Any]:
    return {
        "severity": severity,
        "reason": "InvalidValue",
        "object": {"kind": kind, "namespace": "shop", "name": "x"},
        "field": field,
        "message": "bad",
        "location": None,
    }


@pytest.mark.parametrize(
    ("diagnostics", "verdict", "says"),
    [
        pytest.param(None, Verdict.SKIP, "reports no diagnostics", id="not-reported"),
        pytest.param([], Verdict.OK, "no problems reported on routes and policies", id="clean"),
        pytest.param([diagnostic("Service")], Verdict.OK, "no problems", id="not-a-crd"),
        pytest.param(
            [diagnostic("TrafficPolicy", "Warning", "spec.timeout")],
            Verdict.WARN,
            "0 error(s), 1 warning(s) on 1 route(s) or policies:\n"
            "Warning: TrafficPolicy/shop/x spec.timeout: InvalidValue: bad",
            id="warning",
        ),
        pytest.param(
            [diagnostic("PeerAuthentication", "Warning"), diagnostic("HTTPRoute", field="spec.rules[0]")],
            Verdict.FAIL,
            "1 error(s), 1 warning(s) on 2 route(s) or policies:\n"
            "Error: HTTPRoute/shop/x spec.rules[0]: InvalidValue: bad\n"
            "Warning: PeerAuthentication/shop/x spec: InvalidValue: bad",
            id="error",
        ),
    ],
)
def test_crds(diagnostics: list[dict[str, Any]] | None, verdict: Verdict, says: str) -> None:
    result = judge_crds(diagnostics)
    assert result.verdict is verdict
    assert says in result.detail
