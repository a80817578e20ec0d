"""Shared pieces for tests of the Kubernetes source against the API server double: CRDs, recorded objects,
a sink that folds updates into a snapshot, and the snapshot the double's current objects should give."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import yaml

from apidouble import ApiError, ApiServerDouble
from controlplane.model.diagnostics import Diagnostic
from controlplane.model.kube import convert
from controlplane.model.refs import ObjectRef
from controlplane.model.snapshot import MeshSnapshot
from controlplane.sources.events import SourceUpdate
from controlplane.sources.kube.backoff import Backoff
from controlplane.sources.kube.informer import InformerSettings
from controlplane.sources.kube.kinds import MESH_KINDS
from controlplane.sources.kube.source import KubeSourceSettings
from tests.model.builders import fixture

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GATEWAY_CRDS = HERE / "gateway-api-crds.yaml"
TRAFFIC_POLICY_CRD = ROOT / "manifests" / "crds" / "nodemesh.io_trafficpolicies.yaml"
SECURITY_CRDS = (
    ROOT / "manifests" / "crds" / "nodemesh.io_authorizationpolicies.yaml",
    ROOT / "manifests" / "crds" / "nodemesh.io_peerauthentications.yaml",
)
SAMPLES = ROOT / "manifests" / "samples" / "mesh"
SECURITY_SAMPLES = ROOT / "manifests" / "samples" / "security"
WAIT = 10.0

FAST = KubeSourceSettings(
    informer=InformerSettings(page_size=3, backoff=Backoff(initial=0.01, maximum=0.05)),
    missing_kind_backoff=Backoff(initial=0.01, maximum=0.05),
)


def install(api: ApiServerDouble, *paths: Path) -> None:
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                api.apply(doc)


def recorded(name: str) -> dict[str, Any]:
    """A recorded object (tests/model/fixtures) without what the server assigns on create."""
    obj = fixture(name)
    for key in ("resourceVersion", "uid", "creationTimestamp"):
        obj["metadata"].pop(key, None)
    return obj


def populate_core(api: ApiServerDouble) -> None:
    """A namespace, a node, a pod, a service and its endpoint slice (recorded from a real cluster)."""
    for name in ("namespace.json", "node.json", "pod.json", "service.json", "endpointslice.json"):
        api.apply(recorded(name))


def http_route(name: str = "reviews", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
        "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}],
    }
    body.update(spec)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def expected_snapshot(api: ApiServerDouble) -> MeshSnapshot:
    """What the double holds now, converted directly (every valid object of every mesh kind served)."""
    objects = []
    for kind in MESH_KINDS:
        resource = kind.resource
        try:
            items = api.list_objects(resource.api_version, resource.kind)
        except ApiError:  # a kind whose CRD is not installed has no objects
            continue
        for item in items:
            result = convert({"apiVersion": resource.api_version, "kind": resource.kind, **item})
            if result.obj is not None:
                objects.append(result.obj)
    return MeshSnapshot.from_objects(objects)


class ModelSink:
    """A SourceSink that folds every update into a snapshot and the current diagnostics."""

    def __init__(self) -> None:
        self.updates: list[SourceUpdate] = []
        self.snapshot = MeshSnapshot.empty()
        self.diagnostics: tuple[Diagnostic, ...] = ()
        self.listeners: list[Callable[[ModelSink], None]] = []
        self._changed = asyncio.Event()

    async def publish(self, update: SourceUpdate) -> None:
        self.updates.append(update)
        self.snapshot = self.snapshot.apply_all(update.events)
        if update.diagnostics is not None:
            self.diagnostics = update.diagnostics
        for listener in self.listeners:
            listener(self)
        self._changed.set()

    def known(self) -> frozenset[ObjectRef]:
        return frozenset(obj.ref for obj in self.snapshot)

    def diagnostics_of(self, ref: ObjectRef) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.ref == ref]

    async def wait_until(self, predicate: Callable[[], bool], what: str = "condition") -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def running(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run components (their `run()`) for the block; cancel and await them after it."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Poll state owned by a component under test."""
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():  # noqa: ASYNC110 - polling state the component owns
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
