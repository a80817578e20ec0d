"""GAMMA attachment: which Service ports a route's parentRefs bind it to, and what is wrong with them.

A parentRef to a Service binds every port of it, or only the port it names (by `port`, or by port name in
`sectionName`). Only ports that Envoy proxies as HTTP take routes; an opaque TCP port cannot. When both
HTTPRoutes and GRPCRoutes attach to one port, the kind of the oldest route wins and the others conflict.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.routes import GRPCRoute, HTTPRoute, ParentRef, Route
from controlplane.model.service import L7Protocol, Service, ServicePort
from controlplane.translate.matches import route_ordering


def _selects(parent: ParentRef, service: Service, port: ServicePort) -> bool:
    return (
        parent.is_service
        and parent.namespace == service.namespace
        and parent.name == service.name
        and (parent.port is None or parent.port == port.port)
        and (parent.section_name is None or parent.section_name == port.name)
    )


def binds(route: Route, service: Service, port: ServicePort) -> bool:
    return any(_selects(p, service, port) for p in route.parent_refs)


def _diag(route: Route, reason: Reason, path: str, message: str, *, error: bool = True) -> Diagnostic:
    return Diagnostic(
        severity=Severity.ERROR if error else Severity.WARNING,
        reason=reason,
        ref=route.ref,
        field=path,
        message=message,
    )


def parent_diagnostics(route: Route, lookup: Callable[[str, str], Service | None]) -> tuple[Diagnostic, ...]:
    """Problems with each Service parentRef of `route` (Gateway parents are not the mesh's: ignored)."""
    out: list[Diagnostic] = []
    for i, parent in enumerate(route.parent_refs):
        if not parent.is_service:
            continue
        path = f"spec.parentRefs[{i}]"
        service = lookup(parent.namespace, parent.name)
        if service is None:
            out.append(
                _diag(
                    route,
                    Reason.PARENT_NOT_FOUND,
                    path,
                    f"Service {parent.namespace}/{parent.name} does not exist",
                )
            )
            continue
        if service.headless:
            out.append(
                _diag(
                    route,
                    Reason.UNSUPPORTED_FEATURE,
                    path,
                    f"{service.ref} is headless: routes bind to a ClusterIP",
                )
            )
            continue
        if parent.port is not None and service.port(parent.port) is None:
            out.append(
                _diag(
                    route, Reason.PARENT_NOT_FOUND, f"{path}.port", f"{service.ref} has no port {parent.port}"
                )
            )
            continue
        if parent.section_name is not None and service.port_named(parent.section_name) is None:
            out.append(
                _diag(
                    route,
                    Reason.PARENT_NOT_FOUND,
                    f"{path}.sectionName",
                    f"{service.ref} has no port named {parent.section_name!r}",
                )
            )
            continue
        selected = [p for p in service.ports if _selects(parent, service, p)]
        if selected and all(p.l7_protocol is L7Protocol.TCP for p in selected):
            numbers = ", ".join(str(p.port) for p in selected)
            out.append(
                _diag(
                    route,
                    Reason.UNSUPPORTED_FEATURE,
                    path,
                    f"{service.ref} port {numbers} is opaque TCP, so HTTP routing cannot apply; "
                    "name the port http-*/grpc-* or set appProtocol",
                    error=False,
                )
            )
    return tuple(out)


def attached(
    routes: tuple[Route, ...], service: Service, port: ServicePort
) -> tuple[tuple[Route, ...], tuple[Diagnostic, ...]]:
    """The routes bound to `port`, all of one kind, ordered by reference (the other kind: conflicts)."""
    bound = [r for r in routes if binds(r, service, port)]
    kinds = {type(r) for r in bound}
    if len(kinds) <= 1:
        return tuple(sorted(bound, key=lambda r: r.ref)), ()
    oldest = min(bound, key=route_ordering)
    winner_kind = HTTPRoute if isinstance(oldest, HTTPRoute) else GRPCRoute
    kept = tuple(sorted((r for r in bound if isinstance(r, winner_kind)), key=lambda r: r.ref))
    diagnostics = tuple(
        _diag(
            r,
            Reason.CONFLICT,
            "spec.parentRefs",
            f"{service.ref} port {port.port} already has {winner_kind.__name__}s attached (the oldest route "
            f"wins): this {type(r).__name__} is not applied there",
            error=False,
        )
        for r in bound
        if not isinstance(r, winner_kind)
    )
    return kept, diagnostics
