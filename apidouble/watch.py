"""Watch streams: replay from a resourceVersion, then live changes, filtered, with bookmarks and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from apidouble.errors import ApiError
from apidouble.jsonvalue import JsonObject, deep_copy
from apidouble.kinds import ResourceKind
from apidouble.operations import Operations
from apidouble.selectors import FieldSelector, LabelSelector
from apidouble.store import Change, EventType, object_key

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchQuery:
    namespace: str | None = None
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    resource_version: str = ""
    allow_bookmarks: bool = False
    send_initial_events: bool = False
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    bookmark_interval: float = 60.0


class WatchStream:
    """One watch: an async iterator of watch events (`{"type": ..., "object": ...}` dicts)."""

    def __init__(
        self,
        operations: Operations,
        kind: ResourceKind,
        version: str,
        query: WatchQuery,
        settings: WatchSettings,
    ) -> None:
        self._ops = operations
        self._kind = kind
        self._version = version
        self._query = query
        self._settings = settings

    def _matches(self, obj: JsonObject | None) -> bool:
        if obj is None:
            return False
        namespace = self._query.namespace
        if namespace is not None and self._kind.namespaced and object_key(obj)[0] != namespace:
            return False
        return self._query.labels.matches(obj) and self._query.fields.matches(obj)

    def _event(self, event_type: str, obj: JsonObject) -> JsonObject:
        return {"type": event_type, "object": self._ops.present(self._kind, deep_copy(obj), self._version)}

    def _translate(self, change: Change) -> JsonObject | None:
        """A change as this watcher sees it: label edits across its selector become ADDED/DELETED."""
        now = self._matches(change.obj)
        before = self._matches(change.previous)
        if change.type is EventType.DELETED:
            return self._event("DELETED", change.obj) if before else None
        if now and before:
            return self._event("MODIFIED", change.obj)
        if now:
            return self._event("ADDED", change.obj)
        if before:
            return self._event("DELETED", change.obj)
        return None

    def _bookmark(self, rv: int, *, initial_end: bool = False) -> JsonObject:
        meta: JsonObject = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": self._kind.kind,
                "apiVersion": self._kind.api_version(self._version),
                "metadata": meta,
            },
        }

    async def events(self) -> AsyncIterator[JsonObject]:
        store = self._ops.store
        query = self._query
        initial: list[JsonObject] = []
        try:
            if query.resource_version in ("", "0") or query.send_initial_events:
                # Without a resourceVersion a watch starts with the current state as synthetic ADDED events.
                since = store.current_rv
                if query.resource_version not in ("", "0"):
                    since = int(query.resource_version)
                    store.snapshot(self._kind.key, None, since)  # raises 410 when that state is gone
                initial = [
                    self._event("ADDED", o)
                    for o in store.snapshot(self._kind.key, query.namespace, since)
                    if self._matches(o)
                ]
                replay, watcher = store.watch(self._kind.key, query.namespace, since)
            else:
                replay, watcher = store.watch(self._kind.key, query.namespace, int(query.resource_version))
        except ValueError:
            yield {
                "type": "ERROR",
                "object": ApiError(
                    code=400, reason="BadRequest", message="invalid resource version"
                ).status(),
            }
            return
        except ApiError as exc:
            yield {"type": "ERROR", "object": exc.status()}
            return
        try:
            for event in initial:
                yield event
            if query.send_initial_events and query.allow_bookmarks:
                yield self._bookmark(store.current_rv, initial_end=True)
            for change in replay:
                if (replayed := self._translate(change)) is not None:
                    yield replayed
            loop = asyncio.get_running_loop()
            deadline = loop.time() + query.timeout_seconds if query.timeout_seconds else None
            next_bookmark = loop.time() + self._settings.bookmark_interval
            while True:
                while watcher.pending:
                    if (live := self._translate(watcher.pending.popleft())) is not None:
                        yield live
                if watcher.closed:
                    return
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return
                if query.allow_bookmarks and now >= next_bookmark:
                    # Every pending change has been sent, so the store's RV is a safe place to resume from.
                    yield self._bookmark(store.current_rv)
                    next_bookmark = loop.time() + self._settings.bookmark_interval
                    continue
                wait_until = next_bookmark if query.allow_bookmarks else None
                if deadline is not None:
                    wait_until = deadline if wait_until is None else min(wait_until, deadline)
                watcher.wake.clear()
                if watcher.pending or watcher.closed:
                    continue
                if wait_until is None:
                    await watcher.wake.wait()
                else:
                    try:
                        async with asyncio.timeout(max(0.0, wait_until - loop.time())):
                            await watcher.wake.wait()
                    except TimeoutError:
                        pass
        finally:
            store.unwatch(watcher)
