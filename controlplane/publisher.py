"""Turns the latest model into per-node xDS snapshots: translate, serialize once, share, install.

Per push: the translator computes the mesh-wide config once and each node's listener and plan; every
resource message is serialized once (an identity memo skips messages the translator reused from the previous
push, and the pool shares equal bytes across nodes); resources that are the same for every node go into one
`ResourceSet` that all node snapshots share, so a mesh-wide change costs one set, not one per node; a node
whose sets are all unchanged keeps its snapshot and its streams are not woken.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.convergence import PushListener
from controlplane.meshstate import MeshState, PushReason
from controlplane.metrics import ControlPlaneMetrics
from controlplane.model.diagnostics import Diagnostic, Severity
from controlplane.model.pmap import PMap
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate.config import MeshConfig, NodeConfig, ResourceKind
from controlplane.translate.translator import Translator
from controlplane.xds import typeurls
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.errors import InconsistentSnapshotError
from controlplane.xds.resource import Resource, ResourcePool
from controlplane.xds.snapshot import ResourceSet, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushResult:
    """What one push did, for logs, metrics and tests."""

    reasons: frozenset[PushReason]
    nodes: int
    changed_nodes: tuple[str, ...]
    removed_nodes: tuple[str, ...]
    translate_seconds: float
    total_seconds: float
    diagnostics: tuple[Diagnostic, ...]


class _Interner:
    """Message -> Resource, remembering the previous push's messages by identity.

    The translator hands back the very same message object for anything unchanged, so identity is a free
    test for "already serialized"; equal but distinct messages still share bytes through the pool.
    """

    def __init__(self, pool: ResourcePool) -> None:
        self._pool = pool
        self._previous: dict[int, tuple[Message, Resource]] = {}
        self._current: dict[int, tuple[Message, Resource]] = {}

    def intern(self, message: Message) -> Resource:
        key = id(message)
        hit = self._current.get(key) or self._previous.get(key)
        if hit is not None and hit[0] is message:
            self._current[key] = hit
            return hit[1]
        resource = self._pool.intern(message)
        self._current[key] = (message, resource)
        return resource

    def finish_round(self) -> None:
        """Forget messages the last round did not use (their objects may be freed and their ids reused)."""
        self._previous, self._current = self._current, {}


class _SetMemo:
    """Reuses a slot's previous ResourceSet while its messages are the same: the very same tuple (the
    translator's memo keeps it) or, failing that, the same resources one by one."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[Mapping[str, Message], ResourceSet]] = {}
        self._current: dict[str, tuple[Mapping[str, Message], ResourceSet]] = {}

    def get(self, slot: str, messages: Mapping[str, Message], interner: _Interner) -> ResourceSet:
        hit = self._current.get(slot) or self._previous.get(slot)
        if hit is not None and hit[0] is messages:
            self._current[slot] = hit
            return hit[1]
        resources = [interner.intern(m) for m in messages.values()]
        if (
            hit is not None
            and len(hit[1]) == len(resources)
            and all(hit[1].get(r.name) is r for r in resources)
        ):
            made = hit[1]
        else:
            made = ResourceSet(resources)
        self._current[slot] = (messages, made)
        return made

    def finish_round(self) -> None:
        """Drop the slots the last round did not use (removed nodes)."""
        self._previous, self._current = self._current, {}


class SnapshotPublisher:
    """`push(reasons)` installs the latest model's config into the cache. One push at a time (the debouncer
    serializes them), so the translator's memo and the interner are never used concurrently."""

    def __init__(
        self,
        *,
        state: MeshState,
        translator: Translator,
        cache: SnapshotCache,
        metrics: ControlPlaneMetrics,
        on_diagnostics: Callable[[tuple[Diagnostic, ...]], None] | None = None,
        convergence: PushListener | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._state = state
        self._translator = translator
        self._cache = cache
        self._metrics = metrics
        self._on_diagnostics = on_diagnostics
        self._convergence = convergence
        self._clock = clock
        self._interner = _Interner(cache.pool)
        self._sets = _SetMemo()
        # Per-node sets derived from a shared one: slot -> (node map, shared set, derived set).
        self._overlays: dict[str, tuple[PMap[str, Message], ResourceSet, ResourceSet]] = {}
        self._overlays_used: dict[str, tuple[PMap[str, Message], ResourceSet, ResourceSet]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._pushes = 0
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.published = asyncio.Event()

    async def push(self, reasons: frozenset[PushReason]) -> PushResult:
        started = self._clock()
        mesh = self._state.snapshot
        seen = self._state.take_change_seen()  # with the snapshot: later changes are the next push's
        # Translation and serialization are CPU work over immutable inputs: a thread keeps streams served.
        built, translate_seconds, diagnostics = await asyncio.to_thread(self._build, mesh)
        changed: list[str] = []
        for node, snapshot in built.items():
            if self._snapshots.get(node) is snapshot:
                continue
            try:
                self._cache.set_snapshot(node, snapshot)
            except InconsistentSnapshotError as exc:
                # A translator bug, not user input: keep the node's last good config and say so loudly.
                log.error("inconsistent snapshot not installed", extra={"node": node, "error": str(exc)})
                continue
            self._snapshots[node] = snapshot
            changed.append(node)
        removed = sorted(set(self._snapshots) - set(built))
        for node in removed:
            self._cache.clear(node)
            del self._snapshots[node]
        self._pushes += 1
        if self._convergence is not None:
            self._convergence.on_push(
                self._pushes,
                seen=seen,
                snapshots={node: self._snapshots[node] for node in changed},
                removed=removed,
            )
        result = PushResult(
            reasons=reasons,
            nodes=len(built),
            changed_nodes=tuple(sorted(changed)),
            removed_nodes=tuple(removed),
            translate_seconds=translate_seconds,
            total_seconds=self._clock() - started,
            diagnostics=diagnostics,
        )
        self._report(result)
        self.published.set()
        return result

    def _build(self, mesh: MeshSnapshot) -> tuple[dict[str, Snapshot], float, tuple[Diagnostic, ...]]:
        started = self._clock()
        mesh_config = self._translator.translate_mesh(mesh)
        node_configs = [
            self._translator.translate_node(mesh, node.name, mesh_config) for node in mesh.nodes.values()
        ]
        translate_seconds = self._clock() - started
        shared = self._shared_sets(mesh_config)
        snapshots = {c.node: self._node_snapshot(mesh_config, c, shared) for c in node_configs}
        for snapshot in snapshots.values():
            _ = snapshot.size  # computed here, off the event loop, and cached (new sets only)
        self._interner.finish_round()
        self._sets.finish_round()
        self._overlays, self._overlays_used = self._overlays_used, {}
        diagnostics = _merge_diagnostics(self._state.diagnostics(), mesh_config, node_configs)
        return snapshots, translate_seconds, diagnostics

    def _shared_sets(self, config: MeshConfig) -> dict[str, ResourceSet]:
        return {
            typeurls.CLUSTER: self._set(typeurls.CLUSTER, config.clusters),
            typeurls.ENDPOINT: self._set(typeurls.ENDPOINT, config.load_assignments),
            typeurls.ROUTE: self._set(typeurls.ROUTE, config.route_configs),
            typeurls.SERVICE_VIP: self._set(typeurls.SERVICE_VIP, config.service_vips),
        }

    def _set(self, slot: str, messages: Mapping[str, Message]) -> ResourceSet:
        return self._sets.get(slot, messages, self._interner)

    def _overlay(
        self, slot: str, mine: PMap[str, Message], common: PMap[str, Message], base: ResourceSet
    ) -> ResourceSet:
        """A node's set that is the mesh-wide one plus its own few resources (its HBONE clusters): derived
        from the shared set through the maps' structural diff, never a pass over every resource per node."""
        hit = self._overlays.get(slot)
        if hit is not None and hit[0] is mine and hit[1] is base:
            self._overlays_used[slot] = hit
            return hit[2]
        diff = common.diff(mine)
        changed = [self._interner.intern(m) for m in diff.added.values()]
        changed += [self._interner.intern(new) for _, new in diff.changed.values()]
        made = ResourceSet.derive(base, changed, diff.removed.keys())
        self._overlays_used[slot] = (mine, base, made)
        return made

    def _node_snapshot(
        self, mesh: MeshConfig, config: NodeConfig, shared: Mapping[str, ResourceSet]
    ) -> Snapshot:
        node = config.node
        sets = dict(shared)
        # The translator hands every node the mesh-wide tuples themselves; only a node with consumer routes
        # gets its own list of route configs.
        for type_url, mine, common in (
            (typeurls.CLUSTER, config.clusters, mesh.clusters),
            (typeurls.ENDPOINT, config.load_assignments, mesh.load_assignments),
            (typeurls.ROUTE, config.route_configs, mesh.route_configs),
        ):
            if mine is not common:
                sets[type_url] = self._overlay(f"{node}/{type_url}", mine, common, shared[type_url])
        sets[typeurls.LISTENER] = self._set(f"{node}/{typeurls.LISTENER}", config.listeners)
        sets[typeurls.WORKLOAD] = self._set(f"{node}/{typeurls.WORKLOAD}", config.workloads)
        sets[typeurls.NODE_SETTINGS] = self._set(
            f"{node}/{typeurls.NODE_SETTINGS}", config.resources(ResourceKind.NODE_SETTINGS)
        )
        previous = self._snapshots.get(node)
        if (
            previous is not None
            and len(previous.resources) == len(sets)
            and all(previous.of_type(t) is s for t, s in sets.items())
        ):
            return previous
        return Snapshot.from_sets(sets)

    def _version(self) -> str:
        """One version for the whole push: a digest of every node's snapshot version (the per-node versions
        are what proxies ACK; this one names the push in logs)."""
        return _combined_version(sorted((n, s.version) for n, s in self._snapshots.items()))

    def _report(self, result: PushResult) -> None:
        labels = ",".join(sorted(r.value for r in result.reasons)) or "none"
        for reason in result.reasons or {PushReason.CONFIG}:
            self._metrics.pushes.labels(reason.value).inc()
        self._metrics.translate_seconds.observe(result.translate_seconds)
        self._metrics.push_seconds.observe(result.total_seconds)
        self._metrics.nodes.set(result.nodes)
        for node in result.changed_nodes:
            self._metrics.node_config_bytes.observe(self._snapshots[node].size)
        # Cached per snapshot: O(nodes) additions.
        self._metrics.node_config_max_bytes.set(max((s.size for s in self._snapshots.values()), default=0))
        by_severity = {s: 0 for s in Severity}
        for diagnostic in result.diagnostics:
            by_severity[diagnostic.severity] += 1
        for severity, count in by_severity.items():
            self._metrics.diagnostics.labels(severity.value).set(count)
        if result.diagnostics != self.diagnostics:
            _log_diagnostic_changes(self.diagnostics, result.diagnostics)
            self.diagnostics = result.diagnostics
            if self._on_diagnostics is not None:
                self._on_diagnostics(result.diagnostics)
        log.info(
            "push %d version=%s reasons=%s nodes=%d changed=%d removed=%d translate_ms=%.1f total_ms=%.1f",
            self._pushes,
            self._version(),
            labels,
            result.nodes,
            len(result.changed_nodes),
            len(result.removed_nodes),
            result.translate_seconds * 1000,
            result.total_seconds * 1000,
        )


def _combined_version(versions: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for node, version in versions:
        digest.update(f"{node}\0{version}\n".encode())
    return digest.hexdigest()[:12]


def _merge_diagnostics(
    source: Iterable[Diagnostic], mesh_config: MeshConfig, nodes: Iterable[NodeConfig]
) -> tuple[Diagnostic, ...]:
    merged = set(source) | set(mesh_config.diagnostics)
    for config in nodes:
        merged.update(config.diagnostics)
    return tuple(sorted(merged, key=Diagnostic.sort_key))


def _log_diagnostic_changes(old: Iterable[Diagnostic], new: Iterable[Diagnostic]) -> None:
    before, after = set(old), set(new)
    for diagnostic in sorted(after - before, key=Diagnostic.sort_key):
        level = logging.ERROR if diagnostic.severity is Severity.ERROR else logging.WARNING
        log.log(level, "config problem: %s", diagnostic)
    for diagnostic in sorted(before - after, key=Diagnostic.sort_key):
        log.info("config problem resolved: %s", diagnostic)
