"""TrafficPolicy resolution: which policies apply to a Service port and how several combine.

Several policies may target one Service. Per field, a port-scoped policy (targetRef port or sectionName)
beats a whole-Service one, then the first by reference wins; every other policy that sets the same field
gets a Conflict warning and is ignored for that field (the Gateway API's policy-attachment rule of "oldest
wins" needs a timestamp the model does not keep for policies; reference order is as deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.duration import Duration
from controlplane.model.policy import (
    ConnectionPool,
    FaultInjection,
    LoadBalancer,
    OutlierDetection,
    PolicyTargetRef,
    RetryPolicy,
    TrafficPolicy,
)
from controlplane.model.service import Service, ServicePort


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePolicy:
    """The combined TrafficPolicy settings for one Service port."""

    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    timeout: Duration | None = None
    retries: RetryPolicy | None = None
    fault: FaultInjection | None = None


NO_POLICY: Final = EffectivePolicy()

# (attribute, CRD field) pairs, in the CRD's order.
_FIELDS: Final = (
    ("load_balancer", "loadBalancer"),
    ("connection_pool", "connectionPool"),
    ("outlier_detection", "outlierDetection"),
    ("timeout", "timeout"),
    ("retries", "retries"),
    ("fault", "fault"),
)


def _is_service_target(target: PolicyTargetRef) -> bool:
    return target.group == "" and target.kind == "Service"


def _target_port_scope(target: PolicyTargetRef, port: ServicePort) -> bool | None:
    """None: the target does not select this port; False: the whole Service; True: exactly this port."""
    if target.port is None and target.section_name is None:
        return False
    if target.port is not None and target.port != port.port:
        return None
    if target.section_name is not None and target.section_name != port.name:
        return None
    return True


def _scope(policy: TrafficPolicy, service: Service, port: ServicePort) -> bool | None:
    best: bool | None = None
    for target in policy.target_refs:
        if not _is_service_target(target) or target.name != service.name:
            continue
        scope = _target_port_scope(target, port)
        if scope is not None:
            best = scope if best is None else (best or scope)
    return best


def effective_policy(
    service: Service, port: ServicePort, policies: tuple[TrafficPolicy, ...]
) -> tuple[EffectivePolicy, tuple[Diagnostic, ...]]:
    """Combine the policies targeting `service` (already filtered to its namespace) for `port`."""
    scoped = sorted(
        ((not scope, p.ref, p) for p in policies if (scope := _scope(p, service, port)) is not None),
        key=lambda item: (item[0], item[1]),
    )
    if not scoped:
        return NO_POLICY, ()
    values: dict[str, object] = {}
    diagnostics: list[Diagnostic] = []
    for attr, field in _FIELDS:
        winner: tuple[bool, TrafficPolicy] | None = None
        for broad, _, policy in scoped:
            if getattr(policy, attr) is None:
                continue
            if winner is None:
                winner = (broad, policy)
                values[attr] = getattr(policy, attr)
            elif winner[0] == broad:
                # A narrower (port-scoped) policy overriding a whole-Service one is no conflict.
                diagnostics.append(
                    Diagnostic(
                        severity=Severity.WARNING,
                        reason=Reason.CONFLICT,
                        ref=policy.ref,
                        field=f"spec.{field}",
                        message=(
                            f"ignored for {service.ref} port {port.port}: {winner[1].ref} also sets it and "
                            "takes precedence"
                        ),
                    )
                )
    return EffectivePolicy(**values), tuple(diagnostics)  # type: ignore[arg-type]


def target_diagnostics(policy: TrafficPolicy, services: dict[str, Service | None]) -> tuple[Diagnostic, ...]:
    """Targets that name no Service (or no port of it) in the policy's namespace. `services` maps every
    targeted Service name to the Service, or None when it does not exist."""
    out: list[Diagnostic] = []
    for i, target in enumerate(policy.target_refs):
        path = f"spec.targetRefs[{i}]"
        if not _is_service_target(target):
            out.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    reason=Reason.UNSUPPORTED_FEATURE,
                    ref=policy.ref,
                    field=path,
                    message=f"only Services can be targeted, not {target.group or 'core'}/{target.kind}",
                )
            )
            continue
        service = services.get(target.name)
        if service is None:
            out.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    reason=Reason.TARGET_NOT_FOUND,
                    ref=policy.ref,
                    field=path,
                    message=f"Service {policy.namespace}/{target.name} does not exist",
                )
            )
            continue
        if target.port is not None and service.port(target.port) is None:
            out.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    reason=Reason.TARGET_NOT_FOUND,
                    ref=policy.ref,
                    field=f"{path}.port",
                    message=f"Service {service.ref} has no port {target.port}",
                )
            )
        if target.section_name is not None and service.port_named(target.section_name) is None:
            out.append(
                Diagnostic(
                    severity=Severity.ERROR,
                    reason=Reason.TARGET_NOT_FOUND,
                    ref=policy.ref,
                    field=f"{path}.sectionName",
                    message=f"Service {service.ref} has no port named {target.section_name!r}",
                )
            )
    return tuple(out)
