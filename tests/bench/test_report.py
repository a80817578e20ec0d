"""The benchmark report: JSON round trip, merging a partial run, and the markdown table."""

from __future__ import annotations

import json
from pathlib import Path

from bench.machine import Machine
from bench.report import load_results, render_markdown, write_report
from bench.result import BenchResult, Figure, Statistic, at_most, skipped

MACHINE = Machine(
    nproc=2,
    cpu_model="test cpu",
    kernel="6.0",
    python="3.11",
    grpc="1",
    protobuf="7",
    envoy="1.40.0",
    date="today",
    command="python -m bench",
)


def _result(name: str, samples: tuple[float, ...], limit: float) -> BenchResult:
    figure = Figure(
        name="latency",
        unit="ms",
        samples=samples,
        params={"clients": 10},
        target=at_most(limit, Statistic.P99),
    )
    return BenchResult(name=name, title=f"{name} title", figures=(figure,), notes=("a note",))


def test_json_round_trip_and_merge_keeps_benchmarks_not_rerun(tmp_path: Path) -> None:
    first = [_result("alpha", (1.0, 2.0, 3.0), 10.0), _result("beta", (5.0,), 1.0)]
    write_report(tmp_path, MACHINE, first, quick=False, merge=False)
    assert load_results(tmp_path / "benchmarks.json") == first

    rerun = _result("beta", (0.5, 0.7), 1.0)
    gamma = _result("gamma", (9.0,), 1.0)
    md, js = write_report(tmp_path, MACHINE, [rerun, gamma], quick=False, merge=True)
    assert [r.name for r in load_results(js)] == ["alpha", "beta", "gamma"]
    assert load_results(js)[1] == rerun
    document = json.loads(js.read_text())
    assert document["benchmarks"][0]["figures"][0]["summary"]["p50"] == 2.0
    assert "## gamma title (`gamma`)" in md.read_text()


def test_quick_runs_write_their_own_files(tmp_path: Path) -> None:
    md, js = write_report(tmp_path, MACHINE, [_result("alpha", (1.0,), 2.0)], quick=True, merge=False)
    assert (md.name, js.name) == ("benchmarks-quick.md", "benchmarks-quick.json")
    assert not (tmp_path / "benchmarks.json").exists()


def test_markdown_marks_missed_targets() -> None:
    text = render_markdown(
        MACHINE, [_result("alpha", (1.0, 2.0, 30.0), 10.0), _result("beta", (1.0, 2.0), 10.0)], quick=False
    )
    rows = [line for line in text.splitlines() if line.startswith("| latency")]
    assert len(rows) == 2
    assert rows[0].endswith("| p99 <= 10 ms | **NO** |  |")
    assert rows[1].endswith("| p99 <= 10 ms | yes |  |")
    assert "command: `python -m bench`" in text


def test_a_skipped_benchmark_shows_its_reason_and_no_table() -> None:
    result = skipped(name="datapath", title="Data path", reason="needs root")
    text = render_markdown(MACHINE, [result], quick=False)
    section = text.split("## Data path (`datapath`)", 1)[1]
    assert "Skipped: needs root." in section
    assert "| figure |" not in section
