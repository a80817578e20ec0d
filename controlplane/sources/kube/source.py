"""`KubeSource`: the mesh's kinds from a Kubernetes API server, as model events.

One `Informer` per kind (`kinds.MESH_KINDS`), all in one TaskGroup; every informer event goes through the
`ModelProjection` (conversion, keep-last-valid) and what changed is published as a `SourceUpdate`.

- Initial sync: until every kind has listed, events are held back and then published as one batch with
  `synced=True` (so the consumer never translates a half-listed cluster); afterwards each informer event
  that changes the model or the diagnostics is published on its own.
- A custom kind whose CRD is not installed (404 on list) is logged once, counts as listed (there is nothing
  of it), and is looked for again with backoff; once the CRD appears its objects arrive as live updates.
- Publishing is serialised, so updates reach the sink in the order the projection saw them.
- `status_objects()` serves the raw objects of the kinds whose status the mesh writes (for the
  StatusReporter); `on_status_object` (optional) is called when one of them changes in any way, status
  included, so a status someone else overwrote is put right.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from controlplane.model.objects import ModelEvent
from controlplane.model.refs import ObjectRef
from controlplane.sources.events import SourceSink, SourceUpdate
from controlplane.sources.kube.backoff import AsyncioSleeper, Backoff, Sleeper
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.errors import KubeApiError
from controlplane.sources.kube.informer import Informer, InformerEvent, InformerSettings
from controlplane.sources.kube.kinds import MESH_KINDS, MeshKind
from controlplane.sources.kube.projection import ModelProjection
from controlplane.sources.kube.resources import ObjectRef as KubeRef
from controlplane.sources.kube.resources import ResourceType
from controlplane.status.reporter import StatusObjects

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeSourceSettings:
    name: str = "kubernetes"
    client: ClientSettings = field(default_factory=ClientSettings)
    kinds: tuple[MeshKind, ...] = MESH_KINDS
    informer: InformerSettings = field(default_factory=InformerSettings)
    # How often to look again for a kind whose CRD is not installed.
    missing_kind_backoff: Backoff = field(default_factory=lambda: Backoff(initial=5.0, maximum=60.0))


class KubeSource:
    """`run()` until cancelled. `synced` is set once the first complete batch has been published.

    Pass `api` to share one connection with the status writer; without it `run()` connects with
    `settings.client`.
    """

    def __init__(
        self,
        settings: KubeSourceSettings,
        sink: SourceSink,
        *,
        api: KubeApi | None = None,
        on_status_object: Callable[[], None] | None = None,
        sleeper: Sleeper | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = settings.name
        self.synced = asyncio.Event()
        self._settings = settings
        self._sink = sink
        self._api = api
        self._on_status_object = on_status_object
        self._sleeper: Sleeper = sleeper or AsyncioSleeper()
        self._rng = rng or random.Random()
        self._projection = ModelProjection(
            status_owned=(k.resource for k in settings.kinds if k.status_owned)
        )
        self._informers: dict[ResourceType, Informer] = {}
        self._status_kinds = {k.resource.kind: k.resource for k in settings.kinds if k.status_owned}
        self._held: list[ModelEvent] | None = []  # None once synced
        self._publishing = asyncio.Lock()
        self.missing: set[ResourceType] = set()  # kinds not served (CRD not installed) right now

    @property
    def informers(self) -> Mapping[ResourceType, Informer]:
        """The running informers by resource (their `stats` and `resource_version` are worth exporting)."""
        return MappingProxyType(self._informers)

    # -- the status reporter's view -------------------------------------------------------------------

    def status_objects(self) -> Iterator[tuple[ObjectRef, Mapping[str, object]]]:
        """(model reference, raw object) of every object whose status the mesh writes."""
        for kind, resource in self._status_kinds.items():
            informer = self._informers.get(resource)
            if informer is None:
                continue
            for ref, obj in list(informer.objects.items()):
                yield ObjectRef(kind=kind, namespace=ref.namespace, name=ref.name), obj

    # -- running --------------------------------------------------------------------------------------

    async def run(self) -> None:
        if self._api is not None:
            await self._run(self._api)
            return
        async with connect(self._settings.client) as api:
            await self._run(api)

    async def _run(self, api: KubeApi) -> None:
        listed = {kind.resource: asyncio.Event() for kind in self._settings.kinds}
        async with asyncio.TaskGroup() as tasks:
            for kind in self._settings.kinds:
                tasks.create_task(
                    self._run_kind(api, kind, listed[kind.resource]), name=f"informer {kind.resource}"
                )
            tasks.create_task(self._sync_when_listed(listed), name=f"{self.name} initial sync")

    async def _run_kind(self, api: KubeApi, kind: MeshKind, listed: asyncio.Event) -> None:
        informer = Informer(
            api=api,
            resource=kind.resource,
            sink=self._on_event,
            settings=self._settings.informer,
            sleeper=self._sleeper,
            rng=self._rng,
        )
        self._informers[kind.resource] = informer
        if kind.custom:
            await self._wait_until_served(api, kind.resource, listed)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(informer.run(), name=f"informer {kind.resource} run")
            await informer.synced.wait()
            listed.set()

    async def _wait_until_served(self, api: KubeApi, resource: ResourceType, listed: asyncio.Event) -> None:
        attempt = 0
        while True:
            try:
                await api.list_page(resource, limit=1)
            except KubeApiError as exc:
                backoff = self._settings.informer.backoff
                if exc.status == 404:
                    backoff = self._settings.missing_kind_backoff
                    if resource not in self.missing:
                        log.warning(
                            "%s is not served by the API server (is its CRD installed?): running without "
                            "%s objects and checking again",
                            resource,
                            resource.kind,
                            extra={"source": self.name, "resource": str(resource)},
                        )
                        self.missing.add(resource)
                    # Nothing of this kind exists: it must not hold the initial sync up.
                    listed.set()
                else:
                    # The server is unreachable or failing: the other kinds' informers report that.
                    log.debug("%s: probing failed: %s", resource, exc)
                attempt += 1
                await self._sleeper.sleep(backoff.delay(attempt, self._rng))
                continue
            if resource in self.missing:
                log.info("%s is served now: watching it", resource, extra={"source": self.name})
                self.missing.discard(resource)
            return

    async def _sync_when_listed(self, listed: Mapping[ResourceType, asyncio.Event]) -> None:
        for event in listed.values():
            await event.wait()
        async with self._publishing:
            held, self._held = self._held or [], None
            update = SourceUpdate(
                source=self.name,
                events=tuple(held),
                diagnostics=self._projection.diagnostics(),
                synced=True,
            )
            log.info(
                "synced: %d objects, %d diagnostics%s",
                len(self._projection.objects),
                len(update.diagnostics or ()),
                f"; not served: {', '.join(sorted(map(str, self.missing)))}" if self.missing else "",
                extra={"source": self.name},
            )
            await self._sink.publish(update)
        self.synced.set()

    async def _on_event(self, event: InformerEvent) -> None:
        if self._on_status_object is not None and event.resource.kind in self._status_kinds:
            self._on_status_object()
        change = self._projection.apply(event)
        if self._held is not None:
            self._held.extend(change.events)
            return
        if change.empty:
            return
        async with self._publishing:
            diagnostics = self._projection.diagnostics() if change.diagnostics_changed else None
            await self._sink.publish(
                SourceUpdate(source=self.name, events=change.events, diagnostics=diagnostics, synced=True)
            )

    def raw_object(self, resource: ResourceType, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The informer's copy of one object (for diagnostics tooling and tests)."""
        informer = self._informers.get(resource)
        if informer is None:
            return None
        return informer.objects.get(KubeRef(namespace=namespace, name=name))


_: type[StatusObjects] = KubeSource
