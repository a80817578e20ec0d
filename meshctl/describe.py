"""`meshctl describe pod NS/NAME`: the control plane's view of one pod, in sections like `kubectl
describe`. Renders the `/debug/describe` document; `-o json|yaml` prints the document itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from meshctl.analyze import location_text, object_text
from meshctl.output import Color, Painter, age

Document = Mapping[str, Any]

_LABEL_WIDTH = 18
_STATE_COLORS = {
    "synced": Color.GREEN,
    "valid": Color.GREEN,
    "stale": Color.YELLOW,
    "not_sent": Color.YELLOW,
    "expiring": Color.YELLOW,
    "error": Color.RED,
    "expired": Color.RED,
}


def _field(label: str, value: str) -> str:
    return f"{(label + ':').ljust(_LABEL_WIDTH)}{value}"


def _list(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "-"


def _state(painter: Painter, state: str) -> str:
    return painter.paint(state.upper(), _STATE_COLORS.get(state.lower()))


def _header(document: Document, painter: Painter) -> list[str]:
    pod = document["pod"]
    node = document.get("node")
    node_text = "-"
    if node:
        node_text = node["name"]
        if node.get("internal_ip"):
            node_text += f" ({node['internal_ip']})"
        if not node.get("known", True):
            node_text += " (not known to the control plane)"
    phase = pod["phase"] + (" (ready)" if pod.get("ready") else " (not ready)")
    if pod.get("terminating"):
        phase += ", terminating"
    mesh = document["mesh"]
    meshed = (
        painter.paint("meshed", Color.GREEN) if mesh["meshed"] else painter.paint("not meshed", Color.YELLOW)
    )
    indent = " " * _LABEL_WIDTH
    lines = [
        _field("Pod", f"{pod['namespace']}/{pod['name']}"),
        _field("Node", node_text),
        _field("IPs", _list(pod.get("ips", []))),
        _field("Service account", pod.get("service_account", "-")),
        _field("Phase", phase),
        _field("Labels", _list([f"{k}={v}" for k, v in pod.get("labels", {}).items()])),
        _field("Mesh", meshed),
        *(f"{indent}{reason}" for reason in mesh.get("reasons", [])),
        _field("Identity", document.get("identity") or "-"),
    ]
    return lines


def _services(document: Document) -> list[str]:
    lines = ["Services:"]
    for service in document.get("services", []):
        via = f"via {' and '.join(service.get('via', []))}"
        if service.get("missing"):
            lines.append(f"  {service['ref']}  (not found; named by an EndpointSlice)  {via}")
            continue
        ports = ", ".join(
            f"{p['name'] + ' ' if p.get('name') else ''}{p['port']}->{p['target_port']} {p['protocol']}"
            for p in service.get("ports", [])
        )
        ips = _list(service.get("cluster_ips", [])) if service.get("cluster_ips") else "headless"
        lines.append(f"  {service['namespace']}/{service['name']}  {ips}  {ports or 'no ports'}  ({via})")
    if len(lines) == 1:
        lines.append("  none select this pod")
    return lines


def _routes(document: Document) -> list[str]:
    routes = document.get("routes", {})
    lines = ["Routes for traffic it sends:"]
    if not document.get("mesh", {}).get("meshed", True):
        lines = ["Routes for traffic it sends (once it is meshed; its traffic bypasses the mesh now):"]
    for entry in routes.get("outbound", []):
        for route in entry.get("routes", []):
            ports = route.get("ports") or []
            where = f" port {', '.join(map(str, ports))}" if ports else ""
            text = f"  to {entry['service']}{where}: {route['ref']} ({route['role']})"
            if entry.get("overridden"):
                text += f", overrides {_list(entry['overridden'])}"
            lines.append(text)
    if len(lines) == 1:
        lines.append("  none (requests go straight to the Services' endpoints)")
    lines.append("Routes for traffic it receives:")
    inbound = routes.get("inbound", [])
    lines.extend(f"  as {e['service']}: {_list(e['routes'])}" for e in inbound)
    if not inbound:
        lines.append("  none send to its Services")
    return lines


def _policies(document: Document, painter: Painter) -> list[str]:
    lines = ["Traffic policies:"]
    policies = document.get("traffic_policies", [])
    lines.extend(f"  on {e['service']}: {_list(e['policies'])}" for e in policies)
    if not policies:
        lines.append("  none")
    lines.append("Authorization:")
    authz = document.get("authorization", {})
    any_policy = False
    for action in ("deny", "allow", "audit"):
        for policy in authz.get(action, []):
            any_policy = True
            rejected = painter.paint(" REJECTED: fails closed", Color.RED) if policy.get("rejected") else ""
            lines.append(f"  {action.upper():<6} {policy['ref']} ({policy['scope']}){rejected}")
    if not any_policy:
        lines.append("  no policy selects it: every caller is allowed")
    elif authz.get("default_deny"):
        lines.append("  default deny: a request no ALLOW policy allows is refused")
    if line := _plaintext(authz.get("plaintext") or {}):
        lines.append(line)
    lines.append("mTLS:")
    mtls = document.get("mtls", {})
    decisions = [("workload", mtls.get("workload"))] + [
        (f"port {p['port']}", p) for p in mtls.get("ports", [])
    ]
    for label, decision in decisions:
        if not decision:
            continue
        by = f" by {decision['policy']}" if decision.get("policy") else ""
        lines.append(f"  {label:<12} {decision['mode']:<10} ({decision['level'].lower()}{by})")
    return lines


def _plaintext(plaintext: Document) -> str:
    """Where the policies make the node refuse plaintext (they cannot be checked on it): "" for nowhere."""
    ports = plaintext.get("ports", [])
    if plaintext.get("refused"):
        admitted = [str(p["port"]) for p in ports if not p.get("refused")]
        where = f"every port but {_list(admitted)}" if admitted else "every port"
    else:
        refused = [str(p["port"]) for p in ports if p.get("refused")]
        if not refused:
            return ""
        where = f"port {_list(refused)}"
    return f"  plaintext refused on {where} (no identity to authorize: only mTLS callers are let in)"


def _sync(document: Document, painter: Painter, now: float) -> list[str]:
    if "sync" not in document:
        return []
    sync = document.get("sync")
    node = (document.get("node") or {}).get("name", "")
    lines = [f"Node sync ({node}):" if node else "Node sync:"]
    if not sync:
        return [*lines, "  the pod is not scheduled"]
    for kind in ("agent", "envoy"):
        proxy = sync.get(kind) or {}
        if not proxy.get("connected"):
            lines.append(f"  {kind:<6} {painter.paint('not connected', Color.RED)}")
            continue
        overall = (
            _state(painter, "synced") if proxy.get("synced") else painter.paint("NOT SYNCED", Color.YELLOW)
        )
        types = " ".join(f"{name}={_state(painter, state)}" for name, state in proxy.get("types", {}).items())
        since = proxy.get("connected_since")
        connected = f", connected {age(now - since)} ago" if isinstance(since, (int, float)) else ""
        lines.append(f"  {kind:<6} {overall}  {types}{connected}")
    return lines


def _certificates(document: Document, painter: Painter) -> list[str]:
    if "certificates" not in document:
        return []
    state = document.get("certificates") or {}
    lines = ["Certificates:"]
    if not state.get("ca"):
        return [*lines, "  no CA runs in this control plane"]
    for cert in state.get("certificates", []):
        remaining = float(cert.get("remaining_seconds", 0))
        when = f"expires in {age(remaining)}" if remaining > 0 else f"expired {age(-remaining)} ago"
        lines.append(
            f"  {cert['spiffe_id']}  serial {cert['serial']}  {when} ({cert['not_after']})  "
            f"{_state(painter, cert['state'])}"
        )
    if len(lines) == 1:
        lines.append("  none issued to this node for the pod's identity yet")
    return lines


def _diagnostics(document: Document, painter: Painter) -> list[str]:
    lines = ["Diagnostics:"]
    for d in document.get("diagnostics", []):
        color = Color.RED if d.get("severity") == "Error" else Color.YELLOW
        field = f" {d['field']}" if d.get("field") else ""
        where = f" ({location_text(d)})" if d.get("location") else ""
        lines.append(
            f"  {painter.paint(str(d.get('severity')), color)}  {object_text(d)}{field}: "
            f"{d.get('reason')}: {d.get('message')}{where}"
        )
    if len(lines) == 1:
        lines.append("  none about this pod or what applies to it")
    return lines


def render(document: Document, painter: Painter, *, now: float | None = None) -> str:
    at = now if now is not None else datetime.now(UTC).timestamp()
    sections = [
        _header(document, painter),
        _services(document),
        _routes(document),
        _policies(document, painter),
        _sync(document, painter, at),
        _certificates(document, painter),
        _diagnostics(document, painter),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"
