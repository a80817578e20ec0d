"""The control plane memory benchmark at a tiny size (no memory assertions: benchmarks are not tests)."""

from __future__ import annotations

from dataclasses import replace

from bench.cpmemory import MemoryMeasurement, attempt_largest, measure, measure_in_child
from bench.translate import MeshShape


async def test_one_push_is_measured_and_its_resources_counted() -> None:
    m = await measure(MeshShape(services=30, nodes=3))
    types = {t.type_name: t for t in m.by_type}
    # Mesh-wide resources are shared by every node and counted once; per-node ones once per node.
    assert types["ServiceVip"].resources == 30
    assert types["ClusterLoadAssignment"].resources == 30
    assert types["NodeSettings"].resources == 3
    assert types["Workload"].resources == 3 * 5
    assert all(t.held_by_nodes == 3 for t in m.by_type)
    assert m.resources == sum(t.resources for t in m.by_type)
    assert m.resource_bytes == sum(t.bytes for t in m.by_type)
    assert max(t.bytes for t in m.by_type) >= m.largest_bytes > 0
    assert 0 <= m.largest_differing_share <= 1
    assert 0 < m.baseline_rss_mib <= m.peak_rss_mib
    assert MemoryMeasurement.from_json(m.to_json()) == m


def test_a_case_runs_in_a_fresh_interpreter() -> None:
    m = measure_in_child(MeshShape(services=20, nodes=2), time_limit_s=120)
    assert (m.services, m.nodes) == (20, 2)
    assert {t.type_name for t in m.by_type} >= {"Listener", "Cluster", "ServiceVip"}


async def test_the_largest_case_is_not_attempted_when_the_extrapolation_does_not_fit() -> None:
    base = await measure(MeshShape(services=10, nodes=2))
    # A base whose first push took 60 s would take far longer than the limit at 1,000 nodes.
    slow = replace(base, push_s=60.0)
    figures, note = attempt_largest(slow, MeshShape(services=10, nodes=1000))
    assert figures == []
    assert "not measured" in note and "extrapolated" in note
