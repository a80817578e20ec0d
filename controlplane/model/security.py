"""Which security policies apply to a workload: AuthorizationPolicy selection and effective mTLS mode.

Pure functions over a `MeshSnapshot`; the semantics are in `authz.py` and `peerauth.py`. The root namespace
(whose policies without a selector are mesh-wide) is a setting: every function takes it as
`root_namespace`, `nodemesh-system` by default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from controlplane.model.authz import AuthorizationAction, AuthorizationPolicy, WorkloadPolicies
from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.frozenmap import matches_selector
from controlplane.model.peerauth import MtlsMode, PeerAuthentication, age_key
from controlplane.model.refs import ObjectRef
from controlplane.model.service import Service
from controlplane.model.snapshot import Index, MeshSnapshot
from controlplane.model.workload import Workload

ROOT_NAMESPACE: Final = "nodemesh-system"
DEFAULT_MTLS: Final = MtlsMode.PERMISSIVE


def _service_selects(service: Service | None, workload: Workload) -> bool:
    """A Service without a selector (or with an empty one) selects no workloads here."""
    return (
        service is not None
        and bool(service.selector)
        and service.namespace == workload.namespace
        and matches_selector(service.selector or {}, workload.labels)
    )


# -- AuthorizationPolicy ----------------------------------------------------------------------------------


def authorization_applies(
    mesh: MeshSnapshot,
    policy: AuthorizationPolicy,
    workload: Workload,
    *,
    root_namespace: str = ROOT_NAMESPACE,
) -> bool:
    """Whether the policy selects the workload (mesh-wide, namespace-wide, by selector or by target)."""
    if policy.namespace_wide and policy.namespace == root_namespace:
        return True
    if policy.namespace != workload.namespace:
        return False
    if policy.namespace_wide:
        return True
    if policy.selector is not None:
        return matches_selector(policy.selector, workload.labels)
    return any(_service_selects(mesh.services.get(ref), workload) for ref in policy.target_services)


def policies_for(
    mesh: MeshSnapshot, workload: Workload, *, root_namespace: str = ROOT_NAMESPACE
) -> WorkloadPolicies:
    """The AuthorizationPolicies that apply to the workload, split by action, each sorted by reference.

    Rejected policies appear as their fail-closed stand-ins (an ALLOW that allows nothing, or a DENY of
    everything), so callers need no special case for them.
    """
    candidates = mesh.authorization_policies_in(workload.namespace)
    if workload.namespace != root_namespace:
        candidates = (*mesh.authorization_policies_in(root_namespace), *candidates)
    applicable = sorted(
        (p for p in candidates if authorization_applies(mesh, p, workload, root_namespace=root_namespace)),
        key=lambda p: p.ref,
    )
    return WorkloadPolicies(
        deny=tuple(p for p in applicable if p.action is AuthorizationAction.DENY),
        allow=tuple(p for p in applicable if p.action is AuthorizationAction.ALLOW),
        audit=tuple(p for p in applicable if p.action is AuthorizationAction.AUDIT),
    )


def selected_workloads(
    mesh: MeshSnapshot, policy: AuthorizationPolicy, *, root_namespace: str = ROOT_NAMESPACE
) -> tuple[Workload, ...]:
    """The workloads an AuthorizationPolicy applies to, sorted by reference (for describe and analyze)."""
    if policy.namespace_wide and policy.namespace == root_namespace:
        candidates: Iterable[Workload] = sorted(mesh.workloads.values(), key=lambda w: w.ref)
    else:
        candidates = mesh.workloads_in(policy.namespace)
    return tuple(
        w for w in candidates if authorization_applies(mesh, policy, w, root_namespace=root_namespace)
    )


# -- PeerAuthentication ----------------------------------------------------------------------------------


class MtlsLevel(StrEnum):
    """Which level of PeerAuthentication decided a workload port's mode."""

    REJECTED = "Rejected"  # a rejected policy covers the workload: STRICT, failing closed
    PORT = "Port"
    WORKLOAD = "Workload"
    NAMESPACE = "Namespace"
    MESH = "Mesh"
    DEFAULT = "Default"


@dataclass(frozen=True, slots=True, kw_only=True)
class MtlsDecision:
    mode: MtlsMode  # PERMISSIVE or STRICT, never UNSET
    level: MtlsLevel
    # The policy that decided; None for the default.
    policy: ObjectRef | None = None

    def __str__(self) -> str:
        source = f" by {self.policy}" if self.policy is not None else ""
        return f"{self.mode} ({self.level.lower()}{source})"


def _oldest(policies: Iterable[PeerAuthentication]) -> PeerAuthentication | None:
    return min(policies, key=lambda p: age_key(p.created, p.namespace, p.name), default=None)


def _selects(policy: PeerAuthentication, workload: Workload) -> bool:
    return policy.selector is not None and matches_selector(policy.selector, workload.labels)


def effective_mtls(
    mesh: MeshSnapshot, workload: Workload, port: int | None = None, *, root_namespace: str = ROOT_NAMESPACE
) -> MtlsDecision:
    """The mTLS mode for traffic to `port` of the workload (a container port; None: the workload's own).

    Port-level > workload > namespace > mesh > PERMISSIVE; UNSET inherits; the oldest policy wins a level.
    A rejected policy that may cover the workload forces STRICT.
    """
    local = mesh.peer_authentications_in(workload.namespace)
    root = local if workload.namespace == root_namespace else mesh.peer_authentications_in(root_namespace)
    rejected = _oldest(
        p
        for p in (*local, *(root if root is not local else ()))
        if p.rejected and (p.namespace_wide or (p.namespace == workload.namespace and _selects(p, workload)))
    )
    if rejected is not None:
        return MtlsDecision(mode=MtlsMode.STRICT, level=MtlsLevel.REJECTED, policy=rejected.ref)
    selecting = _oldest(p for p in local if not p.rejected and _selects(p, workload))
    if selecting is not None:
        port_mode = selecting.port_modes.get(port, MtlsMode.UNSET) if port is not None else MtlsMode.UNSET
        if port_mode is not MtlsMode.UNSET:
            return MtlsDecision(mode=port_mode, level=MtlsLevel.PORT, policy=selecting.ref)
        if selecting.mode is not MtlsMode.UNSET:
            return MtlsDecision(mode=selecting.mode, level=MtlsLevel.WORKLOAD, policy=selecting.ref)
    if workload.namespace != root_namespace:
        namespace = _oldest(p for p in local if not p.rejected and p.namespace_wide)
        if namespace is not None and namespace.mode is not MtlsMode.UNSET:
            return MtlsDecision(mode=namespace.mode, level=MtlsLevel.NAMESPACE, policy=namespace.ref)
    mesh_wide = _oldest(p for p in root if not p.rejected and p.namespace_wide)
    if mesh_wide is not None and mesh_wide.mode is not MtlsMode.UNSET:
        return MtlsDecision(mode=mesh_wide.mode, level=MtlsLevel.MESH, policy=mesh_wide.ref)
    return MtlsDecision(mode=DEFAULT_MTLS, level=MtlsLevel.DEFAULT)


# -- cross-object diagnostics (for status and `meshctl analyze`) ------------------------------------------


def _conflict(loser: PeerAuthentication, message: str) -> Diagnostic:
    return Diagnostic(
        severity=Severity.WARNING, reason=Reason.CONFLICT, message=message, ref=loser.ref, field="spec"
    )


def _peer_authentication_conflicts(
    mesh: MeshSnapshot, namespace: str, root_namespace: str
) -> Iterable[Diagnostic]:
    policies = [p for p in mesh.peer_authentications_in(namespace) if not p.rejected]
    wide = sorted(
        (p for p in policies if p.namespace_wide), key=lambda p: age_key(p.created, p.namespace, p.name)
    )
    scope = "the mesh" if namespace == root_namespace else f"namespace {namespace}"
    for loser in wide[1:]:
        yield _conflict(loser, f"ignored: {wide[0].ref} is older and already sets the mode of {scope}")
    selecting = [p for p in policies if p.selector is not None]
    if len(selecting) < 2:
        return
    # (loser, winner) -> workloads where the winner took precedence.
    shadowed: dict[tuple[ObjectRef, ObjectRef], list[ObjectRef]] = {}
    for workload in mesh.workloads_in(namespace):
        matching = sorted(
            (p for p in selecting if _selects(p, workload)),
            key=lambda p: age_key(p.created, p.namespace, p.name),
        )
        for loser in matching[1:]:
            shadowed.setdefault((loser.ref, matching[0].ref), []).append(workload.ref)
    for (loser_ref, winner_ref), workloads in sorted(shadowed.items()):
        loser = mesh.peer_authentications[loser_ref]
        count = len(workloads)
        which = f"{workloads[0]}" if count == 1 else f"{count} workloads ({workloads[0]}, ...)"
        yield _conflict(loser, f"ignored for {which}: {winner_ref} is older and selects them too")


def _authorization_target_problems(mesh: MeshSnapshot, policy: AuthorizationPolicy) -> Iterable[Diagnostic]:
    for i, target in enumerate(policy.target_refs):
        service = mesh.service(policy.namespace, target.name)
        field = f"spec.targetRefs[{i}]"
        if service is None:
            message = f"Service {policy.namespace}/{target.name} not found: the policy applies to no workload"
            reason = Reason.TARGET_NOT_FOUND
        elif not service.selector:
            message = f"Service {policy.namespace}/{target.name} has no selector: it selects no workload"
            reason = Reason.NO_BACKENDS
        else:
            continue
        yield Diagnostic(
            severity=Severity.WARNING, reason=reason, message=message, ref=policy.ref, field=field
        )


def security_diagnostics(
    mesh: MeshSnapshot, *, root_namespace: str = ROOT_NAMESPACE
) -> tuple[Diagnostic, ...]:
    """PeerAuthentication conflicts and AuthorizationPolicy targets that select nothing, sorted."""
    found: list[Diagnostic] = []
    for namespace in mesh.index_keys(Index.PEER_AUTH_BY_NAMESPACE):
        assert isinstance(namespace, str)
        found.extend(_peer_authentication_conflicts(mesh, namespace, root_namespace))
    for policy in mesh.authorization_policies.values():
        found.extend(_authorization_target_problems(mesh, policy))
    return tuple(sorted(found, key=Diagnostic.sort_key))
