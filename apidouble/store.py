"""In-memory object storage: one resourceVersion counter, an event history for watches, watcher fan-out.

Every method is synchronous, so each runs atomically on the event loop: a watch registered from a given
resourceVersion sees exactly the events after it, with no gap between replay and live delivery.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from apidouble.errors import expired
from apidouble.jsonvalue import JsonObject, deep_copy, metadata_of

ResourceKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One committed write. `obj` is the state after (for DELETED: the last state, at the deletion RV)."""

    rv: int
    resource: ResourceKey
    type: EventType
    obj: JsonObject
    previous: JsonObject | None


@dataclass(slots=True, kw_only=True, eq=False)  # identity-hashed: watchers live in a set
class Watcher:
    """A live subscription; the watch handler drains `pending` whenever `wake` is set."""

    resource: ResourceKey
    namespace: str | None
    max_pending: int
    pending: deque[Change] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def push(self, change: Change) -> None:
        if self.closed:
            return
        if len(self.pending) >= self.max_pending:
            # A watcher that cannot keep up is dropped, as the real server does; the client re-watches.
            self.close()
            return
        self.pending.append(change)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


def object_key(obj: JsonObject) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Store:
    def __init__(self, *, history_limit: int = 10_000, watcher_backlog: int = 10_000) -> None:
        self._objects: dict[ResourceKey, dict[ObjectKey, JsonObject]] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        # A watch or list may start from any RV >= this one; older ones are answered with 410.
        self._compacted_rv = 0
        self._watchers: set[Watcher] = set()
        self._watcher_backlog = watcher_backlog
        self._listeners: list[Callable[[Change], None]] = []
        # Set whenever a watch opens or closes, for tests that wait on a client's watch.
        self.watches_changed = asyncio.Event()

    @property
    def current_rv(self) -> int:
        return self._rv

    @property
    def compacted_rv(self) -> int:
        return self._compacted_rv

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    # Reads

    def get(self, resource: ResourceKey, key: ObjectKey) -> JsonObject | None:
        obj = self._objects.get(resource, {}).get(key)
        return deep_copy(obj) if obj is not None else None

    def snapshot(
        self, resource: ResourceKey, namespace: str | None, at_rv: int | None = None
    ) -> list[JsonObject]:
        """Objects sorted by (namespace, name), as of `at_rv` (rewound through history) or now."""
        objects = dict(self._objects.get(resource, {}))
        if at_rv is not None and at_rv < self._rv:
            self._check_not_compacted(at_rv, "list")
            for change in reversed(self._history):
                if change.rv <= at_rv:
                    break
                if change.resource != resource:
                    continue
                key = object_key(change.obj)
                if change.previous is None:
                    objects.pop(key, None)
                else:
                    objects[key] = change.previous
        return [
            deep_copy(obj) for key, obj in sorted(objects.items()) if namespace is None or key[0] == namespace
        ]

    def namespaces_in_use(self, namespace: str) -> list[tuple[ResourceKey, ObjectKey]]:
        return [
            (resource, key)
            for resource, objects in self._objects.items()
            for key in objects
            if key[0] == namespace
        ]

    def keys(self, resource: ResourceKey) -> list[ObjectKey]:
        return sorted(self._objects.get(resource, {}))

    # Writes: the caller has stamped metadata.resourceVersion with next_rv().

    def put(self, resource: ResourceKey, obj: JsonObject) -> Change:
        key = object_key(obj)
        bucket = self._objects.setdefault(resource, {})
        previous = bucket.get(key)
        stored = deep_copy(obj)
        bucket[key] = stored
        event = EventType.ADDED if previous is None else EventType.MODIFIED
        return self._record(resource, event, stored, previous)

    def remove(self, resource: ResourceKey, key: ObjectKey, rv: int) -> Change | None:
        previous = self._objects.get(resource, {}).pop(key, None)
        if previous is None:
            return None
        last = deep_copy(previous)
        metadata_of(last)["resourceVersion"] = str(rv)
        return self._record(resource, EventType.DELETED, last, previous)

    def drop_resource(self, resource: ResourceKey) -> None:
        self._objects.pop(resource, None)

    def _record(
        self, resource: ResourceKey, event: EventType, obj: JsonObject, previous: JsonObject | None
    ) -> Change:
        rv = int(metadata_of(obj)["resourceVersion"])
        change = Change(rv=rv, resource=resource, type=event, obj=obj, previous=previous)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            dropped = self._history.popleft()
            self._compacted_rv = max(self._compacted_rv, dropped.rv)
        for watcher in list(self._watchers):
            if watcher.resource == resource:
                watcher.push(change)
        for listener in self._listeners:
            listener(change)
        return change

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)

    # Watches

    def watch(
        self, resource: ResourceKey, namespace: str | None, since_rv: int
    ) -> tuple[list[Change], Watcher]:
        """Register a watcher and return the history after `since_rv` to replay first."""
        self._check_not_compacted(since_rv, "watch")
        replay = [
            c
            for c in self._history
            if c.rv > since_rv and c.resource == resource and _in_namespace(c.obj, namespace)
        ]
        watcher = Watcher(resource=resource, namespace=namespace, max_pending=self._watcher_backlog)
        self._watchers.add(watcher)
        self.watches_changed.set()
        return replay, watcher

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        if watcher in self._watchers:
            self._watchers.discard(watcher)
            self.watches_changed.set()

    def cut_watches(self, resource: ResourceKey | None = None) -> int:
        """End open watches (of one resource, or all): clients see the stream close. Returns how many."""
        watchers = [w for w in self._watchers if resource is None or w.resource == resource]
        for watcher in watchers:
            self.unwatch(watcher)
        return len(watchers)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def compact(self, up_to_rv: int | None = None) -> None:
        """Forget history up to `up_to_rv` (default: all of it): older resourceVersions get 410 Gone."""
        target = self._rv if up_to_rv is None else min(up_to_rv, self._rv)
        self._compacted_rv = max(self._compacted_rv, target)
        while self._history and self._history[0].rv <= self._compacted_rv:
            self._history.popleft()

    def _check_not_compacted(self, rv: int, what: str) -> None:
        if rv < self._compacted_rv:
            if what == "list":
                raise expired(
                    f"The resourceVersion for the provided list is too old: {rv} "
                    f"(compacted at {self._compacted_rv})"
                )
            raise expired(f"too old resource version: {rv} ({self._compacted_rv})")


def _in_namespace(obj: JsonObject, namespace: str | None) -> bool:
    return namespace is None or object_key(obj)[0] == namespace
