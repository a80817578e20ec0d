"""nodemesh.io/v1alpha1 PeerAuthentication: whether a workload accepts plaintext, as values.

Scope (Istio's): in the root namespace without a selector, the whole mesh; elsewhere without a selector,
its namespace; with `selector`, the matching workloads of its namespace, optionally per port (workload, i.e.
container, port numbers). The most specific level that sets a mode wins: port > workload > namespace >
mesh > the default, PERMISSIVE; UNSET at one level inherits from the next. Among several policies at one
level for a workload, the oldest (creationTimestamp, then name) wins and the others are reported.
`controlplane.model.security.effective_mtls` resolves it.

A PeerAuthentication that fails conversion is kept as a fail-closed stand-in (`rejected=True`, STRICT) for
the scope it names, or its whole namespace when the selector cannot be read; a rejected policy forces
STRICT on every workload it may cover, whatever the other policies say. STRICT only refuses plaintext, and
meshed callers always use mTLS, so failing closed costs plaintext callers, never the mesh's own traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from controlplane.model.frozenmap import FrozenMap, Labels
from controlplane.model.refs import Kind, ObjectRef


class MtlsMode(StrEnum):
    UNSET = "UNSET"  # inherit from the enclosing scope
    PERMISSIVE = "PERMISSIVE"  # mTLS and plaintext both accepted
    STRICT = "STRICT"  # plaintext refused


NO_PORT_MODES: FrozenMap[int, MtlsMode] = FrozenMap()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAuthentication:
    namespace: str
    name: str
    generation: int = 0
    # metadata.creationTimestamp, when known (files have none): the oldest policy wins a conflict.
    created: datetime | None = None
    # None: no selector (namespace-wide, or mesh-wide in the root namespace); never an empty map.
    selector: Labels | None = None
    mode: MtlsMode = MtlsMode.UNSET
    # Workload port -> mode; only with a selector.
    port_modes: FrozenMap[int, MtlsMode] = NO_PORT_MODES
    # A fail-closed stand-in for a policy that failed conversion: STRICT for its scope.
    rejected: bool = False

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.PEER_AUTHENTICATION, namespace=self.namespace, name=self.name)

    @property
    def namespace_wide(self) -> bool:
        return self.selector is None


_NEVER = datetime.min.replace(tzinfo=UTC)


def age_key(created: datetime | None, namespace: str, name: str) -> tuple[bool, datetime, str, str]:
    """Oldest first; objects without a creation time (from files) after those with one, then by name.

    `created` is timezone-aware (the converter makes it so)."""
    return (created is None, created or _NEVER, namespace, name)
