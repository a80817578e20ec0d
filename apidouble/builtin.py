"""What the real server does to built-in kinds on write: defaults, cluster-IP allocation, name checks."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from apidouble.errors import FieldError
from apidouble.jsonvalue import JsonObject

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# Kinds whose names must be DNS labels (the rest are subdomains).
_LABEL_NAMED = frozenset({"Namespace"})
_DNS1035_NAMED = frozenset({"Service"})


def validate_name(kind: str, name: str) -> list[FieldError]:
    if kind in _DNS1035_NAMED:
        ok, limit, what, regex = (
            _DNS1035.match(name) is not None,
            63,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character",
            _DNS1035.pattern,
        )
    elif kind in _LABEL_NAMED:
        ok, limit, what, regex = (
            _LABEL.match(name) is not None,
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character",
            _LABEL.pattern,
        )
    else:
        ok, limit, what, regex = (
            _SUBDOMAIN.match(name) is not None,
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character",
            _SUBDOMAIN.pattern,
        )
    errors: list[FieldError] = []
    if not ok:
        errors.append(
            FieldError(
                field="metadata.name",
                reason="FieldValueInvalid",
                message=f"Invalid value: \"{name}\": {what} (regex used for validation is '{regex}')",
            )
        )
    if len(name) > limit:
        errors.append(
            FieldError(
                field="metadata.name",
                reason="FieldValueInvalid",
                message=f'Invalid value: "{name}": must be no more than {limit} characters',
            )
        )
    return errors


def validate_labels(meta: JsonObject) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or (value and not _LABEL_VALUE.match(value)):
            errors.append(
                FieldError(
                    field="metadata.labels",
                    reason="FieldValueInvalid",
                    message=f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character",
                )
            )
        if not isinstance(key, str) or not key:
            errors.append(
                FieldError(field="metadata.labels", reason="FieldValueInvalid", message="Invalid value: key")
            )
    return errors


def default_on_create(kind: str, obj: JsonObject) -> None:
    """Status a new object starts with, where the real server's create strategy sets one."""
    if kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif kind == "Service":
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Pod":
        obj.setdefault("status", {"phase": "Pending"})
    apply_defaults(kind, obj)


def apply_defaults(kind: str, obj: JsonObject) -> None:
    """The defaults a real server's defaulting functions fill on every write (the ones consumers read)."""
    spec = obj.get("spec")
    if kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
    elif kind == "Pod" and isinstance(spec, dict):
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        service_account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = service_account
        spec["serviceAccount"] = service_account
        for container in _containers(spec):
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    elif kind == "EndpointSlice":
        for port in obj.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _containers(spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                yield container


class ClusterIpAllocator:
    """Hands out Service cluster IPs from a CIDR, tracking which are in use.

    A cursor makes sequential allocation O(1), so creating thousands of Services stays fast.
    """

    def __init__(self, cidr: str) -> None:
        self._network = ipaddress.ip_network(cidr)
        # Host offsets 1..size-2 (no network or broadcast address); the first host is reserved for the
        # `kubernetes` Service, as in a real cluster.
        self._first = int(self._network.network_address) + 2
        self._count = max(0, self._network.num_addresses - 3)
        self._cursor = 0
        self.in_use: set[str] = set()

    def allocate(self) -> str | None:
        for step in range(self._count):
            offset = (self._cursor + step) % self._count
            candidate = str(ipaddress.ip_address(self._first + offset))
            if candidate not in self.in_use:
                self._cursor = (offset + 1) % self._count
                return candidate
        return None
