"""Benchmark: translation time, full and incremental, and config bytes per node (issues 3 and 7).

A synthetic mesh (`MeshShape`): S HTTP Services spread over 10 enrolled namespaces, each with one
EndpointSlice of E endpoints; every 10th Service has a producer HTTPRoute splitting to the next Service, and
every 50th (from the 2nd) a consumer route from namespace ns-0; N nodes with W meshed pods each. Measured:

- full translation: a fresh Translator, `translate_mesh` plus `translate_node` for every node;
- one endpoint change: the snapshot after one EndpointSlice changed (a different Service each time),
  `translate_mesh` plus `translate_node` for every node, then `changed_since` per node (what the xDS layer
  reads). The two sizes are measured interleaved, change by change, so the ratio compares like with like;
- config bytes of one node (every resource serialized) as Services and local workloads grow, each workload
  with its own identity, in the consumer-routed namespace: the listener's matcher is the part that depends
  on local workloads, and the interaction term (bytes(S2,W2) - bytes(S2,W1) - bytes(S1,W2) + bytes(S1,W1))
  shows whether bytes grow with the sum or with the product.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass

from bench.benchmark import Benchmark, RunOptions
from bench.result import BenchResult, Figure, at_most
from controlplane.model.endpoints import Endpoint, EndpointPort, EndpointSlice
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.namespace import Namespace
from controlplane.model.node import Node
from controlplane.model.objects import MeshObject, Upsert
from controlplane.model.routes import BackendRef, HTTPRoute, HTTPRouteRule, ParentRef
from controlplane.model.service import Service, ServicePort
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import PodPhase, Workload
from controlplane.translate.config import NodeConfig, ResourceKind
from controlplane.translate.translator import BuildKind, Translator

NAME = "translate"
TARGET_SOURCE = "issue 7"
# Flat from 1,000 to 10,000 services: the median of paired (10k / 1k) change times.
FLAT_RATIO_TARGET = 1.5
_ENROLLED = FrozenMap({"nodemesh.io/mesh": "enabled"})
_NAMESPACES = 10
_CONSUMER_NS = "ns-0"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshShape:
    services: int
    endpoints_per_service: int = 10
    nodes: int = 100
    workloads_per_node: int = 5


def _ns(i: int) -> str:
    return f"ns-{i % _NAMESPACES}"


def _svc(i: int) -> str:
    return f"svc-{i:05d}"


def _ip(prefix: int, i: int, j: int) -> str:
    return f"10.{prefix + (i >> 8)}.{i & 0xFF}.{j}"


def endpoint_slice(i: int, endpoints: int, moved: int = 0) -> EndpointSlice:
    """Service i's endpoints; `moved` > 0 gives one endpoint another port (an endpoint-only change)."""
    return EndpointSlice(
        namespace=_ns(i),
        name=f"{_svc(i)}-abc",
        service=_svc(i),
        endpoints=tuple(
            Endpoint(addresses=(_ip(128, i, j + 1),), zone=f"z{j % 3}") for j in range(endpoints)
        ),
        ports=(EndpointPort(name="http", port=8080 + moved),),
    )


def _route(i: int, services: int, consumer: bool) -> HTTPRoute:
    target = (i + 1) % services
    return HTTPRoute(
        namespace=_CONSUMER_NS if consumer else _ns(i),
        name=f"{'consumer' if consumer else 'split'}-{_svc(i)}",
        parent_refs=(ParentRef(group="", kind="Service", namespace=_ns(i), name=_svc(i)),),
        rules=(
            HTTPRouteRule(
                backend_refs=(
                    BackendRef(namespace=_ns(i), name=_svc(i), port=80, weight=90),
                    BackendRef(namespace=_ns(target), name=_svc(target), port=80, weight=10),
                )
            ),
        ),
    )


def _pod(node: int, k: int, identities: bool) -> Workload:
    ns = _CONSUMER_NS if identities else _ns(k)
    return Workload(
        uid=f"uid-{node}-{k}",
        namespace=ns,
        name=f"pod-{node}-{k}",
        node=f"node-{node:04d}",
        ips=(_ip(200, node, k + 1),),  # up to 254 pods per node
        service_account=f"sa-{k}" if identities else "default",
        phase=PodPhase.RUNNING,
        ready=True,
    )


def build_mesh(shape: MeshShape, *, identities: bool = False) -> MeshSnapshot:
    """The synthetic mesh; `identities` puts every pod in the consumer namespace with its own identity."""
    objects: list[MeshObject] = [Namespace(name=f"ns-{k}", labels=_ENROLLED) for k in range(_NAMESPACES)]
    for i in range(shape.services):
        objects.append(
            Service(
                namespace=_ns(i),
                name=_svc(i),
                cluster_ips=(_ip(96, i, 1),),
                ports=(ServicePort(name="http", port=80, target_port=8080),),
            )
        )
        objects.append(endpoint_slice(i, shape.endpoints_per_service))
        if i % 10 == 0:
            objects.append(_route(i, shape.services, consumer=False))
        if i % 50 == 1:  # in ns-1, routed for ns-0's clients
            objects.append(_route(i, shape.services, consumer=True))
    for n in range(shape.nodes):
        objects.append(Node(name=f"node-{n:04d}", internal_ip=f"10.250.{n >> 8}.{n & 0xFF}"))
        objects.extend(_pod(n, k, identities) for k in range(shape.workloads_per_node))
    return MeshSnapshot.from_objects(objects)


def _node_names(shape: MeshShape) -> list[str]:
    return [f"node-{n:04d}" for n in range(shape.nodes)]


def _translate_all(translator: Translator, mesh: MeshSnapshot, nodes: list[str]) -> dict[str, NodeConfig]:
    config = translator.translate_mesh(mesh)
    return {n: translator.translate_node(mesh, n, config) for n in nodes}


@dataclass(frozen=True, slots=True, kw_only=True)
class FullMeasurement:
    mesh_s: tuple[float, ...]
    nodes_s: tuple[float, ...]


def measure_full(shape: MeshShape, repeats: int) -> FullMeasurement:
    mesh = build_mesh(shape)
    nodes = _node_names(shape)
    mesh_s: list[float] = []
    nodes_s: list[float] = []
    for _ in range(repeats):
        gc.collect()
        translator = Translator()
        started = time.perf_counter()
        config = translator.translate_mesh(mesh)
        middle = time.perf_counter()
        for n in nodes:
            translator.translate_node(mesh, n, config)
        mesh_s.append(middle - started)
        nodes_s.append(time.perf_counter() - middle)
    return FullMeasurement(mesh_s=tuple(mesh_s), nodes_s=tuple(nodes_s))


@dataclass(slots=True)
class WarmTranslator:
    """One size's translator, kept warm across changes."""

    shape: MeshShape
    mesh: MeshSnapshot
    translator: Translator
    nodes: list[str]
    configs: dict[str, NodeConfig]
    changes: int = 0

    @classmethod
    def start(cls, shape: MeshShape) -> WarmTranslator:
        mesh = build_mesh(shape)
        translator = Translator()
        nodes = _node_names(shape)
        return cls(
            shape=shape,
            mesh=mesh,
            translator=translator,
            nodes=nodes,
            configs=_translate_all(translator, mesh, nodes),
        )

    def change(self) -> tuple[float, float, Counter[BuildKind]]:
        """One endpoint change: (translation s, changed_since over every node s, builds it took)."""
        self.changes += 1
        # A stride coprime with the sizes spreads the changes over the Services.
        i = (self.changes * 7919) % self.shape.services
        self.mesh = self.mesh.apply(
            Upsert(obj=endpoint_slice(i, self.shape.endpoints_per_service, moved=self.changes))
        )
        before = Counter(self.translator.builds)
        started = time.perf_counter()
        configs = _translate_all(self.translator, self.mesh, self.nodes)
        translated = time.perf_counter()
        for n, config in configs.items():
            changes = config.changed_since(self.configs[n])
            if changes.of(ResourceKind.LOAD_ASSIGNMENT).changed != {f"{_ns(i)}/{_svc(i)}:80"}:
                raise AssertionError(f"unexpected changes for an endpoint change: {changes}")
        done = time.perf_counter()
        self.configs = configs
        builds = Counter(self.translator.builds)
        builds.subtract(before)
        return translated - started, done - translated, +builds


def node_bytes(shape: MeshShape) -> int:
    mesh = build_mesh(shape, identities=True)
    config = Translator().translate_node(mesh, "node-0000")
    return sum(m.ByteSize() for kind in ResourceKind for m in config.resources(kind).values())


def _ms(samples: list[float] | tuple[float, ...]) -> tuple[float, ...]:
    return tuple(s * 1000 for s in samples)


def run(options: RunOptions) -> BenchResult:
    sizes = (1000, 10_000)
    repeats = {1000: 2, 10_000: 1} if options.quick else {1000: 5, 10_000: 3}
    changes = 30 if options.quick else 200
    figures: list[Figure] = []
    for services in sizes:
        full = measure_full(MeshShape(services=services), repeats[services])
        total = [a + b for a, b in zip(full.mesh_s, full.nodes_s, strict=True)]
        params = {"services": services}
        figures += [
            Figure(name="full translation (mesh + 100 nodes)", unit="s", samples=tuple(total), params=params),
            Figure(name="of which translate_mesh", unit="s", samples=full.mesh_s, params=params),
        ]
        print(f"{NAME} full S={services}: {statistics.median(total):.2f} s", file=sys.stderr, flush=True)

    warm = {services: WarmTranslator.start(MeshShape(services=services)) for services in sizes}
    translate_s: dict[int, list[float]] = {s: [] for s in sizes}
    changed_s: dict[int, list[float]] = {s: [] for s in sizes}
    builds: dict[int, Counter[BuildKind]] = {s: Counter() for s in sizes}
    for _ in range(changes):
        for services in sizes:  # interleaved: machine noise hits both sizes alike
            t, c, b = warm[services].change()
            translate_s[services].append(t)
            changed_s[services].append(c)
            builds[services].update(b)
    for services in sizes:
        params = {"services": services}
        per_change = ", ".join(f"{k.value} {v / changes:g}" for k, v in sorted(builds[services].items()))
        figures += [
            Figure(
                name="endpoint change: translation (mesh + 100 nodes)",
                unit="ms",
                samples=_ms(translate_s[services]),
                params=params,
                note=f"builds per change: {per_change}",
            ),
            Figure(
                name="endpoint change: changed_since for 100 nodes",
                unit="ms",
                samples=_ms(changed_s[services]),
                params=params,
            ),
        ]
    small, large = sizes
    ratios = tuple(b / a for a, b in zip(translate_s[small], translate_s[large], strict=True))
    figures.append(
        Figure(
            name="endpoint change translation, 10,000 / 1,000 services (paired)",
            unit="x",
            samples=ratios,
            target=at_most(FLAT_RATIO_TARGET, source=TARGET_SOURCE),
            note="flat means about 1",
        )
    )
    print(
        f"{NAME} change: {statistics.median(_ms(translate_s[small])):.2f} ms at {small}, "
        f"{statistics.median(_ms(translate_s[large])):.2f} ms at {large}, "
        f"ratio {statistics.median(ratios):.2f}",
        file=sys.stderr,
        flush=True,
    )
    del warm
    gc.collect()

    grid_services = (250, 1000) if options.quick else (250, 1000, 4000)
    grid_workloads = (2, 50)
    grid: dict[tuple[int, int], int] = {}
    for services in grid_services:
        for workloads in grid_workloads:
            shape = MeshShape(services=services, nodes=1, workloads_per_node=workloads)
            grid[(services, workloads)] = node_bytes(shape)
            figures.append(
                Figure(
                    name="config bytes of one node",
                    unit="KiB",
                    samples=(grid[(services, workloads)] / 1024,),
                    params={"services": services, "local identities": workloads},
                )
            )
    s1, s2 = grid_services[0], grid_services[-1]
    w1, w2 = grid_workloads
    interaction = grid[(s2, w2)] - grid[(s2, w1)] - grid[(s1, w2)] + grid[(s1, w1)]
    figures.append(
        Figure(
            name="services x identities interaction term, share of the largest config",
            unit="%",
            samples=(100 * interaction / grid[(s2, w2)],),
            params={"services": f"{s1}->{s2}", "local identities": f"{w1}->{w2}"},
            note="0 when bytes grow with the sum of services and identities, not their product",
        )
    )
    return BenchResult(
        name=NAME,
        title="Translation: full and incremental, config bytes per node",
        figures=tuple(figures),
        params={
            "endpoints per service": 10,
            "nodes": 100,
            "workloads per node": 5,
            "endpoint changes per size": changes,
        },
        notes=(
            "One process, no xDS: the translator alone (controlplane.translate.Translator). Every 10th "
            "Service has a producer HTTPRoute splitting to the next Service, every 50th a consumer route "
            "from ns-0.",
            "Endpoint change: a snapshot with one EndpointSlice changed (apply() not included), then "
            "translate_mesh and translate_node for all 100 nodes; changed_since per node is what the xDS "
            "layer reads to update its snapshots (it found exactly the one ClusterLoadAssignment each "
            "time).",
            "Config bytes: one node holding every resource it is sent (listener, clusters, assignments, "
            "route configs, plan), its pods all in ns-0 (which has consumer routes), each with its own "
            "identity.",
        ),
    )


BENCHMARK = Benchmark(name=NAME, title="Translation: full vs incremental, bytes per node", run=run)
