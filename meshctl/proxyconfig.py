"""`meshctl proxy-config KIND NODE`: tables over the Envoy JSON the control plane's `/debug/config` returns.

One function per kind, each from the resource dicts (Envoy JSON, proto field names) to table rows; pure.
Secrets arrive with their keys already redacted by the control plane; the table shows what the certificate
says (identity, serial, expiry), read from its PEM.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from enum import StrEnum
from typing import Any

from cryptography import x509

from meshctl.output import Cell, Color, Painter, render_table

Row = list[Cell | str]


class ConfigKind(StrEnum):
    LISTENERS = "listeners"
    ROUTES = "routes"
    CLUSTERS = "clusters"
    ENDPOINTS = "endpoints"
    SECRETS = "secrets"


def _address(address: Mapping[str, Any]) -> str:
    if "socket_address" in address:
        socket_address = address["socket_address"]
        host = socket_address.get("address", "")
        host = f"[{host}]" if ":" in host else host
        port = socket_address.get("port_value", socket_address.get("named_port", 0))
        return f"{host}:{port}"
    if "pipe" in address:
        return f"unix:{address['pipe'].get('path', '')}"
    if "envoy_internal_address" in address:
        return f"internal:{address['envoy_internal_address'].get('server_listener_name', '')}"
    return "-"


def listener_rows(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in resources:
        address = (
            _address(r["address"]) if "address" in r else ("internal" if "internal_listener" in r else "-")
        )
        chains = len(r.get("filter_chains", []))
        default = " +default" if "default_filter_chain" in r else ""
        rows.append([r.get("name", ""), address, f"{chains}{default}"])
    return ["NAME", "ADDRESS", "FILTER CHAINS"], rows


def route_rows(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in resources:
        hosts = r.get("virtual_hosts", [])
        names = ", ".join(h.get("name", "") for h in hosts)
        routes = sum(len(h.get("routes", [])) for h in hosts)
        rows.append([r.get("name", ""), f"{len(hosts)} ({names})" if hosts else "0", str(routes)])
    return ["NAME", "VIRTUAL HOSTS", "ROUTES"], rows


def _cluster_type(cluster: Mapping[str, Any]) -> str:
    if "cluster_type" in cluster:
        return str(cluster["cluster_type"].get("name", "custom"))
    return str(cluster.get("type", "STATIC"))  # proto3 JSON omits the default enum value


def _lb_policy(cluster: Mapping[str, Any]) -> str:
    policies = cluster.get("load_balancing_policy", {}).get("policies", [])
    if policies:
        return str(policies[0].get("typed_extension_config", {}).get("name", "custom"))
    return str(cluster.get("lb_policy", "ROUND_ROBIN"))


def cluster_rows(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in resources:
        kind = _cluster_type(r)
        eds = (
            (r.get("eds_cluster_config", {}).get("service_name") or r.get("name", ""))
            if kind == "EDS"
            else "-"
        )
        rows.append([r.get("name", ""), kind, _lb_policy(r), eds])
    return ["NAME", "TYPE", "LB", "EDS NAME"], rows


_HEALTH_COLORS = {"HEALTHY": Color.GREEN, "UNHEALTHY": Color.RED, "DRAINING": Color.YELLOW}


def _locality(locality: Mapping[str, Any]) -> str:
    parts = [locality.get(k, "") for k in ("region", "zone", "sub_zone")]
    return "/".join(p for p in parts if p) or "-"


def endpoint_rows(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in resources:
        cluster = r.get("cluster_name", "")
        for group in r.get("endpoints", []):
            locality = _locality(group.get("locality", {}))
            for lb in group.get("lb_endpoints", []):
                endpoint = lb.get("endpoint", {})
                address = _address(endpoint["address"]) if "address" in endpoint else "-"
                health = str(lb.get("health_status", "UNKNOWN"))
                rows.append([cluster, address, Cell(text=health, color=_HEALTH_COLORS.get(health)), locality])
        if not r.get("endpoints"):
            rows.append([cluster, "(none)", "-", "-"])
    return ["CLUSTER", "ENDPOINT", "HEALTH", "LOCALITY"], rows


def _data_source_bytes(source: Mapping[str, Any]) -> bytes | None:
    if "inline_bytes" in source:
        return base64.b64decode(source["inline_bytes"])
    if "inline_string" in source:
        return str(source["inline_string"]).encode()
    return None


def _certificate_facts(pem: bytes | None) -> tuple[str, str, str]:
    """(identity, serial, not-after) of the first certificate in a PEM chain."""
    if pem is None:
        return "-", "-", "-"
    try:
        cert = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        return "(unparsable)", "-", "-"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        identity = uris[0] if uris else cert.subject.rfc4514_string()
    except x509.ExtensionNotFound:
        identity = cert.subject.rfc4514_string()
    not_after = cert.not_valid_after_utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return identity, format(cert.serial_number, "x"), not_after


def secret_rows(resources: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    for r in resources:
        name = r.get("name", "")
        if "tls_certificate" in r:
            chain = r["tls_certificate"].get("certificate_chain", {})
            identity, serial, not_after = _certificate_facts(_data_source_bytes(chain))
            rows.append([name, "certificate", identity, serial, not_after])
        elif "validation_context" in r:
            ca = r["validation_context"].get("trusted_ca", {})
            identity, serial, not_after = _certificate_facts(_data_source_bytes(ca))
            rows.append([name, "trust bundle", identity, serial, not_after])
        else:
            kind = next((k for k in r if k != "name" and not k.startswith("@")), "-")
            rows.append([name, kind, "-", "-", "-"])
    return ["NAME", "TYPE", "IDENTITY", "SERIAL", "NOT AFTER"], rows


TABLES: Mapping[ConfigKind, Callable[[Sequence[Mapping[str, Any]]], tuple[list[str], list[Row]]]] = {
    ConfigKind.LISTENERS: listener_rows,
    ConfigKind.ROUTES: route_rows,
    ConfigKind.CLUSTERS: cluster_rows,
    ConfigKind.ENDPOINTS: endpoint_rows,
    ConfigKind.SECRETS: secret_rows,
}


def render(kind: ConfigKind, document: Mapping[str, Any], painter: Painter) -> str:
    """The table for one kind from a `/debug/config` document; resources it could not render are listed."""
    resources = [e["resource"] for e in document.get("resources", []) if "resource" in e]
    headers, rows = TABLES[kind](resources)
    text = render_table(headers, rows, painter)
    for entry in document.get("resources", []):
        if "error" in entry:
            text += f"{entry.get('name', '')}: {entry['error']}\n"
    return text
