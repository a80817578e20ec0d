"""A generic informer: list, then watch from the list's resourceVersion, keeping a local copy of one kind.

It knows nothing about the mesh model: it hands `InformerEvent`s with the raw object dicts to a sink. On a
410 (the resourceVersion expired while it was away) it relists and reconciles its copy against the fresh
list, emitting deletions for objects that vanished and modifications for ones that changed meanwhile. Errors
and cut watches are retried with jittered exponential backoff; `run()` only ends when cancelled (or when
the sink raises).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from controlplane.sources.kube.backoff import AsyncioSleeper, Backoff, Sleeper
from controlplane.sources.kube.client import KubeApi, RawObject
from controlplane.sources.kube.errors import KubeApiError, ResourceExpiredError
from controlplane.sources.kube.resources import ObjectRef, ResourceType

log = logging.getLogger(__name__)


class EventType(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True, kw_only=True)
class InformerEvent:
    type: EventType
    resource: ResourceType
    ref: ObjectRef
    obj: RawObject  # for DELETED: the last state known


InformerSink = Callable[[InformerEvent], Awaitable[None]]


class WatchEnd(StrEnum):
    """Why a watch stopped: also the label of the restart counter."""

    TIMEOUT = "timeout"  # the server ended it after the timeoutSeconds we asked for: routine
    CLOSED = "closed"  # the server (or something in between) cut it early
    EXPIRED = "expired"  # 410: relist
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class InformerSettings:
    page_size: int = 500
    watch_timeout_seconds: int = 300
    # Watches last timeout * (1 + U(0, jitter)), so many informers do not reconnect in lockstep.
    watch_timeout_jitter: float = 0.1
    # How long a silent watch connection may stay open past its timeout before the client gives up on it.
    read_timeout_margin: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(slots=True)
class InformerStats:
    lists: int = 0
    watch_ends: dict[WatchEnd, int] = field(default_factory=lambda: dict.fromkeys(WatchEnd, 0))


def _resource_version(obj: RawObject) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


class Informer:
    def __init__(
        self,
        *,
        api: KubeApi,
        resource: ResourceType,
        sink: InformerSink,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        settings: InformerSettings = InformerSettings(),
        sleeper: Sleeper | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self.resource = resource
        self._sink = sink
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._settings = settings
        self._sleeper: Sleeper = sleeper or AsyncioSleeper()
        self._rng = rng or random.Random()
        self._objects: dict[ObjectRef, RawObject] = {}
        self._rv = ""
        # Consecutive failed attempts; reset whenever a watch delivers anything.
        self._attempt = 0
        self.synced = asyncio.Event()
        self.stats = InformerStats()

    @property
    def objects(self) -> Mapping[ObjectRef, RawObject]:
        """The current local copy (read-only view)."""
        return MappingProxyType(self._objects)

    @property
    def resource_version(self) -> str:
        return self._rv

    async def run(self) -> None:
        must_list = True
        while True:
            try:
                if must_list:
                    await self._relist()
                    must_list = False
                    self.synced.set()
                end = await self._watch()
            except ResourceExpiredError as exc:
                log.info("%s: resourceVersion %s expired (%s); relisting", self.resource, self._rv, exc)
                must_list = True
                end = WatchEnd.EXPIRED
            except KubeApiError as exc:
                log.warning("%s: %s (status %s)", self.resource, exc, exc.status)
                end = WatchEnd.ERROR
            self.stats.watch_ends[end] += 1
            if end is WatchEnd.TIMEOUT:
                self._attempt = 0
                continue
            if end is WatchEnd.EXPIRED and self._attempt == 0:
                # The first 410 relists at once, as client-go does; repeated ones back off like errors.
                self._attempt = 1
                continue
            self._attempt += 1
            delay = self._settings.backoff.delay(self._attempt, self._rng)
            log.debug(
                "%s: watch %s; retrying in %.2fs (attempt %d)", self.resource, end, delay, self._attempt
            )
            await self._sleeper.sleep(delay)

    async def _emit(self, event_type: EventType, ref: ObjectRef, obj: RawObject) -> None:
        await self._sink(InformerEvent(type=event_type, resource=self.resource, ref=ref, obj=obj))

    def _complete(self, obj: RawObject) -> RawObject:
        # Items of built-in lists come without apiVersion/kind; consumers should not have to care.
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        return obj

    async def _relist(self) -> None:
        fresh: dict[ObjectRef, RawObject] = {}
        token = ""
        while True:
            page = await self._api.list_page(
                self.resource,
                namespace=self._namespace,
                label_selector=self._label_selector,
                field_selector=self._field_selector,
                limit=self._settings.page_size,
                continue_token=token,
            )
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    fresh[ObjectRef.of(item)] = self._complete(item)
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                rv = str(meta.get("resourceVersion") or "")
                break
        self.stats.lists += 1
        previous, self._objects, self._rv = self._objects, fresh, rv
        log.debug("%s: listed %d objects at resourceVersion %s", self.resource, len(fresh), rv)
        # Reconcile: what vanished while we were away is deleted, what changed is modified.
        for ref in sorted(previous.keys() - fresh.keys()):
            await self._emit(EventType.DELETED, ref, previous[ref])
        for ref in sorted(fresh):
            before = previous.get(ref)
            if before is None:
                await self._emit(EventType.ADDED, ref, fresh[ref])
            elif _resource_version(before) != _resource_version(fresh[ref]):
                await self._emit(EventType.MODIFIED, ref, fresh[ref])

    async def _watch(self) -> WatchEnd:
        settings = self._settings
        timeout = int(
            settings.watch_timeout_seconds * (1 + self._rng.uniform(0, settings.watch_timeout_jitter))
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = self._api.watch(
            self.resource,
            resource_version=self._rv,
            namespace=self._namespace,
            label_selector=self._label_selector,
            field_selector=self._field_selector,
            timeout_seconds=max(1, timeout),
            read_timeout=timeout + settings.read_timeout_margin,
        )
        async with aclosing(events) as stream:
            async for event in stream:
                self._attempt = 0
                await self._apply(event)
        return WatchEnd.TIMEOUT if loop.time() - started >= timeout else WatchEnd.CLOSED

    async def _apply(self, event: RawObject) -> None:
        kind = event.get("type")
        obj = self._complete(event["object"])
        rv = _resource_version(obj)
        if kind == "BOOKMARK":
            self._rv = rv or self._rv
            return
        ref = ObjectRef.of(obj)
        if kind in ("ADDED", "MODIFIED"):
            before = self._objects.get(ref)
            self._objects[ref] = obj
            self._rv = rv or self._rv
            await self._emit(EventType.ADDED if before is None else EventType.MODIFIED, ref, obj)
        elif kind == "DELETED":
            before = self._objects.pop(ref, None)
            self._rv = rv or self._rv
            if before is not None:
                await self._emit(EventType.DELETED, ref, obj)
        else:
            raise KubeApiError(f"{self.resource}: unknown watch event type {kind!r}")
