"""The JSON shapes the double passes around: Kubernetes objects are plain dicts here, by design."""

from __future__ import annotations

import copy
from typing import Any

JsonObject = dict[str, Any]
JsonValue = Any


def deep_copy(obj: JsonObject) -> JsonObject:
    # Objects handed out must never alias the store's copies: callers mutate what they get.
    return copy.deepcopy(obj)


def metadata_of(obj: JsonObject) -> JsonObject:
    """The object's metadata dict, created if absent (so writers can stamp it)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta
