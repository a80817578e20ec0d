"""A source of raw Envoy resources: a watched directory of YAML feeding the xDS cache directly.

It stands in for the translator until that exists (`--source dir:PATH`). The directory is polled by stat
signatures; changes go through the debouncer, then into the cache as the default snapshot (`DIR/*.yaml`) and
per-node snapshots (`DIR/nodes/<node-id>/*.yaml`). See `rawdir` for the layout and how bad input is handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from google.protobuf.message import Message

from controlplane.sources.rawdir import Diagnostic, RawResource, RawSourceError, RawXdsDirectory, ScanResult
from controlplane.xds.debounce import Debouncer
from controlplane.xds.errors import InconsistentSnapshotError
from controlplane.xds.resource import Resource
from controlplane.xds.snapshot import Snapshot

log = logging.getLogger(__name__)


class ChangeReason(StrEnum):
    """Why the source asks for a push (a closed set: usable as a metric label)."""

    FILES_CHANGED = "raw_files_changed"


class ResourceInterner(Protocol):
    def intern(
        self, message: Message, type_url: str | None = None, *, name: str | None = None
    ) -> Resource: ...


class SnapshotSink(Protocol):
    """The part of the xDS cache a source writes to (`controlplane.xds.cache.SnapshotCache`)."""

    @property
    def pool(self) -> ResourceInterner: ...

    def get(self, node_id: str) -> Snapshot | None: ...

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> None: ...

    def set_default(self, snapshot: Snapshot | None) -> None: ...

    def clear(self, node_id: str) -> None: ...


class Readiness(Protocol):
    """Set once the first snapshot is in the cache; `asyncio.Event` satisfies it."""

    def set(self) -> None: ...


class RawXdsSource:
    """`await source.run()` loads the directory, publishes, then watches it until cancelled."""

    def __init__(
        self,
        *,
        directory: Path,
        cache: SnapshotSink,
        debouncer: Debouncer[ChangeReason],
        poll_interval: float = 0.3,
        ready: Readiness | None = None,
    ) -> None:
        self._dir = RawXdsDirectory(directory)
        self._cache = cache
        self._debouncer = debouncer
        self._poll_interval = poll_interval
        self._ready = ready
        self._dirty_default = False
        self._dirty_nodes: set[str] = set()
        self._published_nodes: set[str] = set()
        self._merge_problems: tuple[Diagnostic, ...] = ()
        self._default_version: str | None = None
        self.publishes = 0

    @property
    def directory(self) -> Path:
        return self._dir.root

    def diagnostics(self) -> list[str]:
        """Every current problem with the directory's content, one line each (for /debug/source)."""
        return [str(d) for d in (*self._dir.diagnostics, *self._merge_problems)]

    async def run(self) -> None:
        self._absorb(self._dir.scan())
        self._dirty_default = True
        await self.publish(frozenset({ChangeReason.FILES_CHANGED}))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._debouncer.run(self.publish))
            tasks.create_task(self._watch())

    async def _watch(self) -> None:
        unreadable = False
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                change = self._dir.scan()
            except (RawSourceError, OSError) as exc:
                # The directory vanished or became unreadable (a config rollout in progress?): keep serving
                # the last snapshots and keep looking; log the transition, not every poll.
                if not unreadable:
                    log.error("cannot read the raw xDS directory, keeping the last config: %s", exc)
                unreadable = True
                continue
            if unreadable:
                log.info("raw xDS directory readable again", extra={"source": str(self._dir.root)})
                unreadable = False
            if change:
                self._absorb(change)
                self._debouncer.notify(ChangeReason.FILES_CHANGED)

    def _absorb(self, change: ScanResult) -> None:
        self._dirty_default |= change.default_changed
        self._dirty_nodes |= change.nodes_changed

    async def publish(self, reasons: frozenset[ChangeReason]) -> None:
        """Rebuild the snapshots whose files changed and put them in the cache."""
        default_dirty, self._dirty_default = self._dirty_default, False
        dirty_nodes, self._dirty_nodes = self._dirty_nodes, set()
        problems: list[Diagnostic] = []
        if default_dirty:
            self._install(None, self._build(None, problems))
            # Every per-node snapshot embeds the defaults.
            dirty_nodes |= self._published_nodes | self._dir.nodes
        current_nodes = self._dir.nodes
        for node in sorted(dirty_nodes):
            if node in current_nodes:
                self._install(node, self._build(node, problems))
                self._published_nodes.add(node)
            elif node in self._published_nodes:
                self._published_nodes.discard(node)
                self._cache.clear(node)
                log.info("node has no raw files any more; it gets the default snapshot", extra={"node": node})
        if default_dirty or dirty_nodes:
            self._merge_problems = tuple(dict.fromkeys(problems))
            for problem in self._merge_problems:
                log.error("raw xDS resource left out: %s", problem, extra={"file": problem.file})
        self.publishes += 1

    def _build(self, node: str | None, problems: list[Diagnostic]) -> Snapshot:
        resources, merge_problems = self._dir.resources(node)
        problems.extend(merge_problems)
        return Snapshot.build(self._intern(resources))

    def _intern(self, resources: Iterable[RawResource]) -> list[Resource]:
        pool = self._cache.pool
        return [pool.intern(r.message, r.type_url, name=r.name) for r in resources]

    def _install(self, node: str | None, snapshot: Snapshot) -> None:
        scope = node if node is not None else "(default)"
        previous = self._cache.get(node) if node is not None else None
        previous_version = self._default_version if node is None else previous and previous.version
        if previous_version == snapshot.version:
            return  # e.g. a file saved without a change: streams need not even look
        try:
            if node is None:
                self._cache.set_default(snapshot)
            else:
                self._cache.set_snapshot(node, snapshot)
        except InconsistentSnapshotError as exc:
            log.error(
                "snapshot not set, the previous one stays: %s",
                exc,
                extra={"node": scope, "source": str(self._dir.root)},
            )
            return
        if node is None:
            self._default_version = snapshot.version
        log.info(
            "snapshot set",
            extra={"node": scope, "version": snapshot.version, "resources": len(snapshot)},
        )
        if self._ready is not None:
            self._ready.set()
