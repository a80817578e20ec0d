"""Which Kubernetes resource an informer or writer addresses, and the REST paths for it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def item_path(self, namespace: str, name: str, subresource: str = "") -> str:
        path = f"{self.collection_path(namespace if self.namespaced else None)}/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class ObjectRef:
    """namespace/name of one object ("" namespace for cluster-scoped kinds)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def of(cls, obj: dict[str, object]) -> ObjectRef:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return cls(namespace="", name="")
        return cls(namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""))
