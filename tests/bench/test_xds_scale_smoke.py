"""The at-scale xDS benchmark runs end to end at a tiny size (no timing assertions: benchmarks are not
tests)."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from bench.adsclients import Variant, sotw_header
from bench.result import BenchResult
from bench.xds_scale import ScaleCase, ScaleMeasurement, figures, measure, measure_in_child, split_nodes


@pytest.mark.parametrize("variant", list(Variant))
async def test_a_tiny_mesh_syncs_every_node_and_every_change_reaches_all(variant: Variant) -> None:
    case = ScaleCase(services=12, nodes=3, variant=variant, changes=2, client_processes=2)
    m = await measure(case)
    assert m.streams_failed == 0, m.client_errors
    assert m.client_processes == 2
    assert len(m.change_s) == len(m.change_push_s) == 2
    assert len(m.cold_bytes_per_node) == 3 and min(m.cold_bytes_per_node) > 0
    # Each change sends every node the changed assignment: some bytes, far fewer than the cold start.
    assert all(0 < b < sum(m.cold_bytes_per_node) / 10 for b in m.change_bytes)
    assert ScaleMeasurement.from_json(m.to_json()) == m
    names = {f.name for f in figures(m, case)}
    assert "cold start: config ready to every node ACKed (CDS, EDS, LDS, RDS)" in names
    BenchResult(name="xds_scale", title="tiny", figures=tuple(figures(m, case)))


def test_a_case_runs_in_a_fresh_interpreter() -> None:
    case = ScaleCase(services=10, nodes=2, variant=Variant.DELTA, changes=1, client_processes=1)
    m = measure_in_child(case, time_limit_s=120)
    assert (m.services, m.nodes, m.variant) == (10, 2, "delta")
    assert m.rss_start_mib <= m.peak_rss_mib


def test_nodes_are_split_into_contiguous_ranges() -> None:
    assert split_nodes(10, 3) == [(0, 3), (3, 3), (6, 4)]
    assert split_nodes(1, 2) == [(0, 1)]


def test_the_lean_sotw_client_reads_a_response_header_without_parsing_its_resources() -> None:
    header = discovery_pb2.DiscoveryResponse(version_info="v1", type_url="t", nonce="n-1", canary=True)
    body = discovery_pb2.DiscoveryResponse(resources=[any_pb2.Any(type_url="x", value=b"\x08" * 300)] * 3)
    data = header.SerializeToString() + body.SerializeToString()
    assert sotw_header(data) == {"version_info": "v1", "type_url": "t", "nonce": "n-1"}
    # Fields in any order still parse (the walk stops once all three are seen).
    assert sotw_header(body.SerializeToString() + header.SerializeToString())["nonce"] == "n-1"
