"""Writing an object's `.status` through the `/status` subresource, as a merge patch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from controlplane.sources.kube.client import KubeApi, RawObject
from controlplane.sources.kube.resources import ResourceType


class StatusPatcher(Protocol):
    async def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> RawObject: ...


class StatusWriter:
    """PATCHes `{"status": ...}` to `<object>/status` with `application/merge-patch+json`.

    A merge patch replaces lists wholesale, so `conditions` must be passed complete; keys of `status` left
    out are kept, keys set to None are removed.
    """

    def __init__(self, api: KubeApi, resource: ResourceType) -> None:
        self._api = api
        self._resource = resource

    async def write(self, namespace: str, name: str, status: Mapping[str, Any]) -> RawObject:
        return await self._api.patch_merge(
            self._resource, namespace, name, {"status": dict(status)}, subresource="status"
        )


_: type[StatusPatcher] = StatusWriter
