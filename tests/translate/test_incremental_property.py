"""Incremental translation after any sequence of events equals translation from scratch, and
`changed_since` names exactly the resources that differ."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.policy import ConsistentHash, LoadBalancer, LoadBalancerAlgorithm
from controlplane.model.service import Service
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import PodPhase
from controlplane.translate.config import ConfigChanges, MeshConfig, NodeConfig, ResourceKind
from controlplane.translate.translator import Translator
from tests.translate.builders import (
    backend,
    endpoint,
    endpoint_slice,
    grpc_backend,
    grpc_route,
    grpc_rule,
    http_port,
    http_route,
    namespace,
    node,
    parent,
    pod,
    policy,
    rule,
    seconds,
    service,
    tcp_port,
)
from tests.translate.sample import sample_mesh

NODES = ("node-a", "node-b", "node-c")
_RING = LoadBalancer(algorithm=LoadBalancerAlgorithm.MAGLEV, consistent_hash=ConsistentHash(header="x-other"))


def _variants() -> list[MeshObject]:
    """Other versions of the sample's objects, and new ones, chosen to cross every dependency the
    translator tracks: slices, ports, shared ClusterIPs, route parents and backends, consumer routes,
    backend policies, pods moving and namespaces enrolling."""
    return [
        endpoint_slice("shop", "reviews-v1", endpoint("10.1.0.20", zone="z1"), endpoint("10.1.0.98")),
        endpoint_slice("shop", "reviews-v1", endpoint("10.1.0.20", ready=False, serving=True)),
        endpoint_slice("shop", "reviews-v2", endpoint("10.1.0.22"), name="reviews-v2-second"),
        endpoint_slice("shop", "missing", endpoint("10.1.0.60"), ports=(("http", 80),)),
        service(
            "shop", "reviews-v1", "10.96.0.11", http_port(80, target=8080), http_port(81, name="http-alt")
        ),
        service("shop", "reviews-v2", "10.96.0.12", tcp_port(80)),
        # Two ClusterIPs: losing one to a clash keeps the chain but changes what selects it.
        Service(
            namespace="shop",
            name="reviews-v2",
            cluster_ips=("10.96.0.12", "10.96.0.13"),
            ports=(http_port(80),),
        ),
        service("shop", "clash", "10.96.0.12", tcp_port(80)),
        service("shop", "aaa-clash", "10.96.0.12", http_port(80)),
        service("shop", "aaa-clash", "10.96.0.12"),
        service("shop", "missing", "10.96.0.60", http_port(80)),
        service("web", "frontend", "10.96.0.50", http_port(80)),
        http_route(
            "shop", "reviews-split", parent("shop", "reviews-v2"), rule(backend("shop", "reviews-v1"))
        ),
        http_route("web", "v2-for-web", parent("shop", "reviews-v2"), rule(backend("shop", "reviews-v1"))),
        http_route("db", "reviews-for-db", parent("shop", "reviews"), rule(backend("shop", "missing"))),
        http_route("web", "reviews-for-web", parent("shop", "reviews", 80), rule(backend("shop", "missing"))),
        grpc_route(
            "shop",
            "ratings-on-reviews",
            parent("shop", "reviews"),
            grpc_rule(grpc_backend("shop", "ratings")),
        ),
        policy("shop", "reviews-v1", "reviews-v1", load_balancer=_RING),
        policy("shop", "missing-lb", "missing", load_balancer=_RING),
        policy("shop", "extra", "reviews", "missing", timeout=seconds(3)),
        pod("web", "frontend-1", "node-b", "10.1.0.10", sa="frontend"),
        pod("web", "frontend-9", "node-c", "10.1.0.19", sa="frontend"),
        pod("db", "postgres-0", "node-a", "10.1.0.40", sa="postgres", phase=PodPhase.SUCCEEDED),
        namespace("legacy"),
        namespace("web", enrolled=False),
        node("node-a", "10.0.0.9"),
        node("node-c", "10.0.0.3"),
    ]


POOL: tuple[MeshObject, ...] = (*sample_mesh(), *_variants())

events = st.tuples(st.booleans(), st.integers(min_value=0, max_value=len(POOL) - 1)).map(
    lambda e: Upsert(obj=POOL[e[1]]) if e[0] else Delete(ref=POOL[e[1]].ref)
)
# Several events per translation: the translator must cope with snapshots it never saw.
batches = st.lists(st.lists(events, min_size=1, max_size=3), min_size=1, max_size=6)


def _serialized(resources: Mapping[str, Message]) -> dict[str, bytes]:
    return {name: m.SerializeToString(deterministic=True) for name, m in resources.items()}


def _node_bytes(config: NodeConfig) -> dict[ResourceKind, dict[str, bytes]]:
    return {kind: _serialized(config.resources(kind)) for kind in ResourceKind}


def _check_changes(
    changes: ConfigChanges, kinds: Mapping[ResourceKind, tuple[Mapping[str, Message], Mapping[str, Message]]]
) -> None:
    """Applying `changes` to the old resources gives the new ones; what it leaves out is the same object."""
    for kind, (old, new) in kinds.items():
        change = changes.of(kind)
        assert not change.changed & change.removed
        assert change.removed == old.keys() - new.keys()
        assert change.changed >= new.keys() - old.keys()
        for name in new.keys() - change.changed:
            assert new[name] is old[name], (kind, name)


def _mesh_maps(config: MeshConfig) -> dict[ResourceKind, Mapping[str, Message]]:
    return {
        ResourceKind.CLUSTER: config.clusters,
        ResourceKind.LOAD_ASSIGNMENT: config.load_assignments,
        ResourceKind.ROUTE_CONFIG: config.route_configs,
        ResourceKind.SERVICE_VIP: config.service_vips,
    }


@settings(max_examples=60, deadline=None)
@given(batches)
def test_incremental_translation_equals_translation_from_scratch(steps: list[list[ModelEvent]]) -> None:
    translator = Translator()
    m = sample_mesh()
    mesh_config = translator.translate_mesh(m)
    configs = {n: translator.translate_node(m, n, mesh_config) for n in NODES}
    for batch in steps:
        m = m.apply_all(batch)
        new_mesh_config = translator.translate_mesh(m)
        scratch = Translator()
        scratch_mesh = scratch.translate_mesh(MeshSnapshot.from_objects(m))
        assert new_mesh_config.diagnostics == scratch_mesh.diagnostics
        _check_changes(
            new_mesh_config.changed_since(mesh_config),
            {k: (old, _mesh_maps(new_mesh_config)[k]) for k, old in _mesh_maps(mesh_config).items()},
        )
        for n in NODES:
            new = translator.translate_node(m, n, new_mesh_config)
            expected = scratch.translate_node(m, n, scratch_mesh)
            assert _node_bytes(new) == _node_bytes(expected)
            assert new.diagnostics == expected.diagnostics
            _check_changes(
                new.changed_since(configs[n]),
                {k: (configs[n].resources(k), new.resources(k)) for k in ResourceKind},
            )
            configs[n] = new
        mesh_config = new_mesh_config
