"""`meshctl check`: is the running mesh healthy? The control plane ready, every connected proxy in sync,
the certificates the CA issued not about to expire, no errors on routes and policies.

`judge_mesh` is pure over what the control plane answered, so every verdict is unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.ca.issued import ExpiryState, expiry_state
from controlplane.inspect import CRD_KINDS
from meshctl.analyze import is_error, object_text
from meshctl.output import age
from meshctl.proxystatus import ProxyKind, ProxyRow, SyncState, short_version
from meshctl.verdict import CheckResult, Verdict

# A response unACKed for longer than this is stuck, not in flight.
STALE_AFTER = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    ready: bool
    detail: str  # the /readyz body
    url: str


def judge_readiness(readiness: Readiness) -> CheckResult:
    if readiness.ready:
        return CheckResult(
            name="controlplane-ready", verdict=Verdict.OK, detail=f"{readiness.url} says ready"
        )
    return CheckResult(
        name="controlplane-ready",
        verdict=Verdict.FAIL,
        detail=f"{readiness.url}: {readiness.detail.strip() or 'not ready'}",
        fix="see the control plane's log and /debug/source; it is ready once its first snapshot is built",
    )


def judge_proxy(row: ProxyRow, *, now: float, stale_after: float = STALE_AFTER) -> CheckResult:
    name = "proxy-synced"
    who = f"{row.node} ({row.kind.value}, {row.variant or '?'})"
    if not row.types:
        return CheckResult(
            name=name,
            verdict=Verdict.WARN,
            detail=f"{who}: connected, nothing sent yet",
            fix="wait a moment; if it persists, the proxy subscribed to nothing this node has",
        )
    nacks = [t for t in row.types if t.state is SyncState.ERROR]
    if nacks:
        details = "; ".join(
            f"{t.label} version {short_version(t.version)} rejected: {t.nack.message if t.nack else '?'}"
            for t in nacks
        )
        return CheckResult(
            name=name,
            verdict=Verdict.FAIL,
            detail=f"{who}: {details}",
            fix="fix the resource the message names; the proxy keeps its last accepted config",
        )
    pending = [t for t in row.types if t.state is not SyncState.SYNCED]
    if not pending:
        labels = " ".join(t.label for t in row.types)
        return CheckResult(name=name, verdict=Verdict.OK, detail=f"{who}: {labels} synced")
    stuck = [t for t in pending if t.updated is not None and now - t.updated > stale_after]
    listed = ", ".join(
        f"{t.label} {t.state.value}" + (f" for {age(now - t.updated)}" if t.updated is not None else "")
        for t in pending
    )
    if stuck:
        return CheckResult(
            name=name,
            verdict=Verdict.FAIL,
            detail=f"{who}: {listed}",
            fix="the proxy is not ACKing: check its log and its connection to the control plane",
        )
    return CheckResult(
        name=name,
        verdict=Verdict.WARN,
        detail=f"{who}: {listed} (in flight)",
        fix="run again in a few seconds",
    )


def judge_node(node: str, rows: Sequence[ProxyRow]) -> CheckResult:
    """A node runs one Envoy and one agent; both should hold a stream to the control plane."""
    kinds = [r.kind for r in rows]
    missing = [k.value for k in (ProxyKind.ENVOY, ProxyKind.AGENT) if k not in kinds]
    present = ", ".join(sorted(k.value for k in kinds))
    if not missing:
        return CheckResult(name="node-connected", verdict=Verdict.OK, detail=f"{node}: {present} connected")
    return CheckResult(
        name="node-connected",
        verdict=Verdict.WARN,
        detail=f"{node}: {present} connected, no {' or '.join(missing)}",
        fix="fine for a bare Envoy run by hand; on a real node check the DaemonSet pod's containers",
    )


def _certificate_line(cert: Mapping[str, Any], now: datetime) -> str:
    not_after = datetime.fromisoformat(cert["not_after"])
    remaining = (not_after - now).total_seconds()
    when = f"expires in {age(remaining)}" if remaining > 0 else f"expired {age(-remaining)} ago"
    return f"{cert['node']} {cert['spiffe_id']} serial {cert['serial']} {when}"


def judge_certificates(document: Mapping[str, Any] | None, *, now: float) -> CheckResult:
    """From `/debug/certificates`: FAIL if an in-use certificate expired, WARN if one is in the last
    quarter of its lifetime (the agent renews at half, so its renewals are failing)."""
    name = "certificates"
    if document is None:
        return CheckResult(
            name=name,
            verdict=Verdict.SKIP,
            detail="this control plane reports no certificates (it serves raw Envoy config, or is older)",
        )
    if not document.get("ca"):
        return CheckResult(
            name=name,
            verdict=Verdict.SKIP,
            detail="no CA configured on the control plane (--ca-file): it issues no certificates",
        )
    at = datetime.fromtimestamp(now, UTC)
    in_use = [c for c in document.get("certificates", []) if c.get("in_use", True)]
    states = {
        id(c): expiry_state(
            datetime.fromisoformat(c["not_before"]), datetime.fromisoformat(c["not_after"]), at
        )
        for c in in_use
    }
    expired = [c for c in in_use if states[id(c)] is ExpiryState.EXPIRED]
    expiring = [c for c in in_use if states[id(c)] is ExpiryState.EXPIRING]
    if expired or expiring:
        lines = [_certificate_line(c, at) for c in (*expired, *expiring)]
        return CheckResult(
            name=name,
            verdict=Verdict.FAIL if expired else Verdict.WARN,
            detail=f"{len(expired)} expired, {len(expiring)} in the last quarter of their lifetime:\n"
            + "\n".join(lines),
            fix="the node agent renews at half lifetime: check its log and its bootstrap token",
        )
    if not in_use:
        return CheckResult(name=name, verdict=Verdict.OK, detail="CA running; no certificate in use yet")
    first = min(in_use, key=lambda c: datetime.fromisoformat(c["not_after"]))
    nodes = len({c["node"] for c in in_use})
    return CheckResult(
        name=name,
        verdict=Verdict.OK,
        detail=f"{len(in_use)} certificate(s) on {nodes} node(s) valid; next to expire: "
        + _certificate_line(first, at),
    )


def judge_crds(diagnostics: Sequence[Mapping[str, Any]] | None) -> CheckResult:
    """From `/debug/diagnostics`: FAIL on an error about a route or policy, WARN on a warning."""
    name = "crds"
    if diagnostics is None:
        return CheckResult(
            name=name,
            verdict=Verdict.SKIP,
            detail="this control plane reports no diagnostics (it serves raw Envoy config, or is older)",
        )
    about = [d for d in diagnostics if (d.get("object") or {}).get("kind") in CRD_KINDS]
    errors = [d for d in about if is_error(d)]
    if not about:
        return CheckResult(
            name=name, verdict=Verdict.OK, detail="no problems reported on routes and policies"
        )
    listed = "\n".join(
        f"{d['severity']}: {object_text(d)}{' ' + d['field'] if d.get('field') else ''}: {d['reason']}: "
        f"{d['message']}"
        for d in (*errors, *(d for d in about if not is_error(d)))
    )
    objects = len({object_text(d) for d in about})
    return CheckResult(
        name=name,
        verdict=Verdict.FAIL if errors else Verdict.WARN,
        detail=f"{len(errors)} error(s), {len(about) - len(errors)} warning(s) on {objects} route(s) or "
        f"policies:\n{listed}",
        fix="`meshctl analyze` lists them all; an object with an error is left out of the config",
    )


def judge_mesh(
    readiness: Readiness,
    rows: Sequence[ProxyRow],
    *,
    now: float,
    certificates: Mapping[str, Any] | None = None,
    diagnostics: Sequence[Mapping[str, Any]] | None = None,
) -> list[CheckResult]:
    results = [judge_readiness(readiness)]
    if not rows:
        results.append(
            CheckResult(
                name="proxies-connected",
                verdict=Verdict.WARN,
                detail="no proxy is connected to this replica",
                fix="start a node (agent, Envoy) pointed at this control plane; other replicas may hold them",
            )
        )
    else:
        kinds = ", ".join(sorted({r.kind.value for r in rows}))
        nodes = len({r.node for r in rows})
        results.append(
            CheckResult(
                name="proxies-connected",
                verdict=Verdict.OK,
                detail=f"{len(rows)} stream(s) from {nodes} node(s) ({kinds})",
            )
        )
    results.extend(
        judge_node(node, [r for r in rows if r.node == node]) for node in sorted({r.node for r in rows})
    )
    results.extend(judge_proxy(r, now=now) for r in rows)
    results.append(judge_certificates(certificates, now=now))
    results.append(judge_crds(diagnostics))
    return results
