"""The translation benchmark's pieces run at a tiny size (no timing assertions: benchmarks are not tests)."""

from __future__ import annotations

from bench.translate import MeshShape, WarmTranslator, build_mesh, measure_full, node_bytes
from controlplane.translate.translator import BuildKind


def test_synthetic_mesh_has_the_stated_shape() -> None:
    shape = MeshShape(services=60, endpoints_per_service=4, nodes=3, workloads_per_node=2)
    mesh = build_mesh(shape)
    assert (len(mesh.services), len(mesh.endpoint_slices), len(mesh.nodes), len(mesh.workloads)) == (
        60,
        60,
        3,
        6,
    )
    assert all(len(s.endpoints) == 4 for s in mesh.endpoint_slices.values())
    # Every 10th Service has a producer route; every 50th (from the 2nd) a consumer route from ns-0.
    assert len(mesh.http_routes) == 6 + 2
    assert sum(r.namespace == "ns-0" and r.name.startswith("consumer") for r in mesh.http_routes) == 2


def test_full_translation_and_endpoint_changes_run() -> None:
    shape = MeshShape(services=40, nodes=3)
    full = measure_full(shape, repeats=2)
    assert len(full.mesh_s) == len(full.nodes_s) == 2
    warm = WarmTranslator.start(shape)
    for _ in range(3):
        _, _, builds = warm.change()  # also checks changed_since names exactly the changed assignment
        assert builds == {BuildKind.LOAD_ASSIGNMENT: 1}


def test_node_bytes_grow_with_services_and_identities() -> None:
    small = node_bytes(MeshShape(services=20, nodes=1, workloads_per_node=2))
    assert node_bytes(MeshShape(services=40, nodes=1, workloads_per_node=2)) > small
    assert node_bytes(MeshShape(services=20, nodes=1, workloads_per_node=8)) > small
