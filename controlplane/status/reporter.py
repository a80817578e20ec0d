"""`StatusReporter`: keeps the status of the mesh's routes and policies in line with their diagnostics.

It is told the latest complete set of diagnostics and which objects are in the model (`update()`), reads the
objects as the API server last showed them (`StatusObjects`, an informer's cache), computes each desired
status purely (`routes`, `policies`) and PATCHes only those that differ from what the object says:
- no write storms: an unchanged outcome produces byte-identical JSON (transition times are kept), passes
  are coalesced (`pass_interval`) and writes paced (`write_interval`);
- a write it just made is remembered until the cache shows a newer version, so a pass that runs before the
  watch delivers the write does not write it again;
- objects that vanished are skipped (404 included); a 409 (the object moved on) or a failed write is retried
  after `retry_delay`, once the cache has caught up.
Status writes change neither spec nor generation, so the source ignores them: no translation loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from controlplane.model.diagnostics import Diagnostic
from controlplane.model.refs import Kind, ObjectRef
from controlplane.status.conditions import JsonObject
from controlplane.status.errors import ObjectGoneError, StatusConflictError, StatusWriteError
from controlplane.status.policies import policy_status
from controlplane.status.routes import DEFAULT_CONTROLLER, route_status

log = logging.getLogger(__name__)

ROUTE_KINDS = frozenset({Kind.HTTP_ROUTE, Kind.GRPC_ROUTE})


class StatusObjects(Protocol):
    """The objects whose status the mesh writes, as last seen from the API server (JSON, with status)."""

    def status_objects(self) -> Iterable[tuple[ObjectRef, Mapping[str, object]]]: ...


class StatusPatcher(Protocol):
    async def patch_status(
        self, ref: ObjectRef, status: Mapping[str, object], *, resource_version: str
    ) -> None:
        """Replace the keys of `status` on the object, only if it is still at `resource_version`.

        Raises ObjectGoneError (404), StatusConflictError (409) or StatusWriteError.
        """
        ...


class WriteOutcome(StrEnum):
    WRITTEN = "written"
    CONFLICT = "conflict"
    GONE = "gone"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReporterSettings:
    controller_name: str = DEFAULT_CONTROLLER
    # Pause between two writes: at most 1/write_interval PATCHes a second.
    write_interval: float = 0.02
    # Pause after a pass: updates arriving meanwhile are handled together in the next one.
    pass_interval: float = 0.5
    # A pass with a failed or conflicting write runs again after this long.
    retry_delay: float = 5.0


@dataclass(frozen=True, slots=True)
class _Written:
    based_on: str  # the resourceVersion the write was made against
    status: JsonObject


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _resource_version(obj: Mapping[str, object]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""


def _generation(obj: Mapping[str, object]) -> int:
    meta = obj.get("metadata")
    value = meta.get("generation") if isinstance(meta, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _status(obj: Mapping[str, object]) -> Mapping[str, object]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _unchanged(desired: Mapping[str, object], current: Mapping[str, object]) -> bool:
    """A merge patch of `desired` would leave `current` as it is (an empty list and none are alike, so a
    route that is not the mesh's, with no status, is left alone)."""
    return all(current.get(key) == value or not (value or current.get(key)) for key, value in desired.items())


class StatusReporter:
    def __init__(
        self,
        *,
        objects: StatusObjects,
        patcher: StatusPatcher,
        settings: ReporterSettings = ReporterSettings(),
        now: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._objects = objects
        self._patcher = patcher
        self._settings = settings
        self._now = now
        self._sleep = sleep
        self._diagnostics: dict[ObjectRef, tuple[Diagnostic, ...]] = {}
        self._known: Container[ObjectRef] = frozenset()
        self._written: dict[ObjectRef, _Written] = {}
        self._dirty = asyncio.Event()
        self._ready = False
        self.stats: dict[WriteOutcome, int] = dict.fromkeys(WriteOutcome, 0)

    def update(self, diagnostics: Iterable[Diagnostic], known: Container[ObjectRef]) -> None:
        """The complete current diagnostics (all sources and translation) and the objects in the model.

        Nothing is written before the first call: without it every object would look valid.
        """
        by_ref: defaultdict[ObjectRef, list[Diagnostic]] = defaultdict(list)
        for diagnostic in diagnostics:
            if diagnostic.ref is not None:
                by_ref[diagnostic.ref].append(diagnostic)
        self._diagnostics = {ref: tuple(found) for ref, found in by_ref.items()}
        self._known = known
        self._ready = True
        self._dirty.set()

    def refresh(self) -> None:
        """The objects changed (a new generation arrived): compare again, with the same diagnostics."""
        if self._ready:
            self._dirty.set()

    def desired(self, ref: ObjectRef, obj: Mapping[str, object]) -> JsonObject:
        """The status `obj` should have now."""
        previous = _status(obj)
        generation = _generation(obj)
        diagnostics = self._diagnostics.get(ref, ())
        in_model = ref in self._known
        if ref.kind in ROUTE_KINDS:
            spec = obj.get("spec")
            return route_status(
                ref,
                spec.get("parentRefs") if isinstance(spec, Mapping) else None,
                diagnostics,
                generation,
                self._settings.controller_name,
                previous=previous,
                in_model=in_model,
                now=self._now(),
            )
        return policy_status(
            ref, diagnostics, generation, previous=previous, in_model=in_model, now=self._now()
        )

    async def reconcile(self) -> bool:
        """One pass over every object; True when some write must be retried later."""
        retry = False
        writes = 0
        current_refs: set[ObjectRef] = set()
        for ref, obj in sorted(self._objects.status_objects(), key=lambda item: item[0]):
            current_refs.add(ref)
            rv = _resource_version(obj)
            written = self._written.get(ref)
            if written is not None and written.based_on != rv:
                # The cache moved past the version we wrote against: trust what it shows now.
                del self._written[ref]
                written = None
            desired = self.desired(ref, obj)
            current = written.status if written is not None else _status(obj)
            if _unchanged(desired, current):
                continue
            if writes:
                await self._sleep(self._settings.write_interval)
            outcome = await self._write(ref, desired, rv)
            self.stats[outcome] += 1
            if outcome is WriteOutcome.WRITTEN:
                writes += 1
                self._written[ref] = _Written(based_on=rv, status=desired)
            elif outcome in (WriteOutcome.CONFLICT, WriteOutcome.FAILED):
                retry = True
        for gone in self._written.keys() - current_refs:
            del self._written[gone]
        if writes:
            log.info("wrote the status of %d objects", writes)
        return retry

    async def _write(self, ref: ObjectRef, status: JsonObject, rv: str) -> WriteOutcome:
        try:
            await self._patcher.patch_status(ref, status, resource_version=rv)
        except ObjectGoneError:
            log.debug("%s: gone before its status was written", ref)
            return WriteOutcome.GONE
        except StatusConflictError:
            log.debug("%s: changed since resourceVersion %s; writing its status later", ref, rv)
            return WriteOutcome.CONFLICT
        except StatusWriteError as exc:
            log.warning("%s: status write failed: %s", ref, exc, extra={"object": str(ref)})
            return WriteOutcome.FAILED
        return WriteOutcome.WRITTEN

    async def run(self) -> None:
        """Until cancelled: a pass whenever `update()`/`refresh()` says something changed."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if await self.reconcile():
                await self._sleep(self._settings.retry_delay)
                self._dirty.set()
            else:
                await self._sleep(self._settings.pass_interval)
