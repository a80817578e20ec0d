"""Namespaces and mesh enrollment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from controlplane.model.frozenmap import EMPTY_LABELS, Labels
from controlplane.model.refs import Kind, ObjectRef

MESH_LABEL: Final = "nodemesh.io/mesh"
MESH_ENABLED: Final = "enabled"
MESH_DISABLED: Final = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Labels = EMPTY_LABELS

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.NAMESPACE, name=self.name)

    @property
    def mesh_enabled(self) -> bool:
        """Enrolled: `nodemesh.io/mesh=enabled`; every pod in it is meshed unless it opts out."""
        return self.labels.get(MESH_LABEL) == MESH_ENABLED
