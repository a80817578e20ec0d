"""Writing an object's `.status` through the `/status` subresource, as a merge patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controlplane.sources.kube.client import KubeApi, RawObject
from controlplane.sources.kube.resources import ResourceType


class StatusPatcher(Protocol):
    async def write(
        self, namespace: str, name: str, status: Mapping[str, Any], *, resource_version: str = ""
    ) -> RawObject: ...


class StatusWriter:
    """PATCHes `{"status": ...}` to `<object>/status` with `application/merge-patch+json`.

    A merge patch replaces lists wholesale, so `conditions` must be passed complete; keys of `status` left
    out are kept, keys set to None are removed. With `resource_version`, the write only succeeds on that
    version of the object (409 otherwise): needed when the status holds entries of other writers too.
    """

    def __init__(self, api: KubeApi, resource: ResourceType) -> None:
        self._api = api
        self._resource = resource

    async def write(
        self, namespace: str, name: str, status: Mapping[str, Any], *, resource_version: str = ""
    ) -> RawObject:
        patch: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self._api.patch_merge(self._resource, namespace, name, patch, subresource="status")


_: type[StatusPatcher] = StatusWriter
