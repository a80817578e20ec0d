"""The Kubernetes side of status write-back: `controlplane.status`'s `StatusPatcher` over `StatusWriter`s,
with the API's errors mapped to the status package's (404 gone, 409 conflict, anything else retryable)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controlplane.model.refs import ObjectRef
from controlplane.sources.kube.client import KubeApi
from controlplane.sources.kube.errors import KubeApiError
from controlplane.sources.kube.kinds import MESH_KINDS, MeshKind
from controlplane.sources.kube.status import StatusWriter
from controlplane.status.errors import ObjectGoneError, StatusConflictError, StatusWriteError
from controlplane.status.reporter import StatusPatcher


class KubeStatusPatcher:
    """PATCHes `/status` of the mesh kinds whose status it owns, with a resourceVersion precondition."""

    def __init__(self, api: KubeApi, kinds: Iterable[MeshKind] = MESH_KINDS) -> None:
        self._writers = {k.resource.kind: StatusWriter(api, k.resource) for k in kinds if k.status_owned}

    async def patch_status(
        self, ref: ObjectRef, status: Mapping[str, object], *, resource_version: str
    ) -> None:
        writer = self._writers.get(ref.kind)
        if writer is None:
            raise StatusWriteError(f"{ref}: the mesh does not write the status of {ref.kind} objects")
        try:
            await writer.write(ref.namespace, ref.name, status, resource_version=resource_version)
        except KubeApiError as exc:
            if exc.status == 404:
                raise ObjectGoneError(f"{ref}: {exc}") from exc
            if exc.status == 409:
                raise StatusConflictError(f"{ref}: {exc}") from exc
            raise StatusWriteError(f"{ref}: {exc} (status {exc.status})") from exc


_: type[StatusPatcher] = KubeStatusPatcher
