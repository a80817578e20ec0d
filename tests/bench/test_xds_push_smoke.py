"""The xDS push benchmark runs end to end at a tiny size (no timing assertions: benchmarks are not tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.adsclients import Variant
from bench.machine import describe_machine
from bench.report import load_results, write_report
from bench.result import BenchResult
from bench.xds_push import PushCase, figures, measure


@pytest.mark.parametrize("variant", list(Variant))
async def test_benchmark_runs_at_a_tiny_size(variant: Variant, tmp_path: Path) -> None:
    case = PushCase(variant=variant, clients=2, clusters=20, endpoints_per_cluster=3, changes=2)
    measured = await measure(case)

    assert len(measured.change_s) == len(measured.set_snapshot_s) == 2
    assert measured.cold_start_s > 0
    assert measured.clients.streams_failed == 0, measured.clients.errors
    # Cold start, then one EDS response per change, each ACKed, on both streams.
    assert measured.clients.responses["eds"] == 2 * 3
    assert measured.clients.responses["cds"] == measured.clients.responses["rds"] == 2
    # The naive rebuild serializes exactly the volume the server sent for that change.
    assert measured.naive_bytes == measured.sent_bytes[-len(measured.naive_bytes) :]
    # The cold start's naive rebuild covers every response it sent (4 types per stream at least).
    assert measured.cold_responses >= 2 * 4
    assert measured.cold_naive_bytes == measured.cold_sent_bytes
    # Both variants send each client only the changed assignment (SotW EDS responses may be partial).
    assert measured.sent_resources == (2, 2)
    names = [f.name for f in figures(measured)]
    assert "endpoint change to all ACKed (no debounce)" in names

    result = BenchResult(name="xds_push", title="tiny", figures=tuple(figures(measured)))
    md, js = write_report(tmp_path, describe_machine("pytest"), [result], quick=True, merge=False)
    assert "| endpoint change to all ACKed (no debounce) |" in md.read_text()
    assert json.loads(js.read_text())["benchmarks"][0]["name"] == "xds_push"
    assert load_results(js)[0].figures == result.figures
