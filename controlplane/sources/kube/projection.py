"""Informer events (raw Kubernetes objects) to model events and diagnostics. Pure: no I/O.

An object whose new version fails conversion keeps its last valid version in the model, with a
KEPT_LAST_VALID warning next to the errors, as `sources/files.py` does and as an API server keeps the last
accepted object when it rejects a write: one bad edit of a route does not take the traffic it carries down.
The errors still reach the object's status (Accepted=False) and `meshctl analyze`. The last valid version
lives in memory only: after a control-plane restart an object that is invalid is left out.

Status-only changes of kinds whose status the mesh writes are recognised without converting: same
generation, labels and annotations means the same spec, so the mesh's own status writes cause no work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.kube import convert
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.refs import ObjectRef
from controlplane.sources.kube.informer import EventType, InformerEvent
from controlplane.sources.kube.resources import ObjectRef as KubeRef
from controlplane.sources.kube.resources import ResourceType

_Key = tuple[ResourceType, KubeRef]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectionChange:
    events: tuple[ModelEvent, ...] = ()
    diagnostics_changed: bool = False

    @property
    def empty(self) -> bool:
        return not self.events and not self.diagnostics_changed


def _spec_signature(obj: Mapping[str, Any]) -> tuple[object, object, object]:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return (None, None, None)
    return (meta.get("generation"), meta.get("labels"), meta.get("annotations"))


class ModelProjection:
    def __init__(
        self, *, status_owned: Iterable[ResourceType] = (), default_namespace: str = "default"
    ) -> None:
        self._status_owned = frozenset(status_owned)
        self._default_namespace = default_namespace
        self._refs: dict[_Key, ObjectRef] = {}
        self._objects: dict[ObjectRef, MeshObject] = {}
        self._diagnostics: dict[ObjectRef, tuple[Diagnostic, ...]] = {}
        self._signatures: dict[_Key, tuple[object, object, object]] = {}
        self._sorted: tuple[Diagnostic, ...] | None = ()

    @property
    def objects(self) -> Mapping[ObjectRef, MeshObject]:
        return MappingProxyType(self._objects)

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Every current diagnostic, in `Diagnostic.sort_key` order."""
        if self._sorted is None:
            found = (d for ds in self._diagnostics.values() for d in ds)
            self._sorted = tuple(sorted(found, key=Diagnostic.sort_key))
        return self._sorted

    def apply(self, event: InformerEvent) -> ProjectionChange:
        key: _Key = (event.resource, event.ref)
        if event.type is EventType.DELETED:
            return self._delete(key)
        if event.resource in self._status_owned:
            signature = _spec_signature(event.obj)
            if signature[0] is not None and self._signatures.get(key) == signature:
                return ProjectionChange()
            self._signatures[key] = signature
        return self._upsert(key, event.obj)

    def _delete(self, key: _Key) -> ProjectionChange:
        self._signatures.pop(key, None)
        ref = self._refs.pop(key, None)
        if ref is None:
            return ProjectionChange()
        events: tuple[ModelEvent, ...] = (Delete(ref=ref),) if self._objects.pop(ref, None) else ()
        return ProjectionChange(events=events, diagnostics_changed=self._set_diagnostics(ref, ()))

    def _upsert(self, key: _Key, obj: Mapping[str, Any]) -> ProjectionChange:
        result = convert(obj, default_namespace=self._default_namespace)
        ref = result.obj.ref if result.obj is not None else result.ref
        if ref is None:
            # Not a mesh kind, or nameless: nothing to key it by (an API server never sends either).
            return ProjectionChange()
        self._refs[key] = ref
        diagnostics = result.diagnostics
        events: tuple[ModelEvent, ...] = ()
        if result.obj is not None:
            if self._objects.get(ref) != result.obj:
                self._objects[ref] = result.obj
                events = (Upsert(obj=result.obj),)
        elif ref in self._objects:
            kept = Diagnostic(
                severity=Severity.WARNING,
                reason=Reason.KEPT_LAST_VALID,
                message="the new version is invalid; keeping the last valid one",
                ref=ref,
            )
            diagnostics = (*diagnostics, kept)
        return ProjectionChange(events=events, diagnostics_changed=self._set_diagnostics(ref, diagnostics))

    def _set_diagnostics(self, ref: ObjectRef, diagnostics: tuple[Diagnostic, ...]) -> bool:
        if self._diagnostics.get(ref, ()) == diagnostics:
            return False
        if diagnostics:
            self._diagnostics[ref] = diagnostics
        else:
            self._diagnostics.pop(ref, None)
        self._sorted = None
        return True
