"""Request paths of the resource API, parsed into what they address."""

from __future__ import annotations

from dataclasses import dataclass

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcePath:
    group: str
    version: str
    plural: str
    namespace: str | None = None  # None: cluster scope, or all namespaces for a namespaced kind
    name: str = ""
    subresource: str = ""
    legacy_watch: bool = False  # the old `/watch/` path prefix


def parse_resource_path(path: str) -> ResourcePath | None:
    """`/api/v1/namespaces/ns/pods/name/status` and friends; None when the path names no resource."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = False
    if rest and rest[0] == "watch":
        legacy_watch, rest = True, rest[1:]
    namespace: str | None = None
    # `/namespaces/<name>` and `/namespaces/<name>/status` address the Namespace itself.
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES)
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return ResourcePath(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else "",
        subresource=rest[2] if len(rest) > 2 else "",
        legacy_watch=legacy_watch,
    )
