"""Writes a run's results: `benchmarks.json` (every sample of every figure) and `benchmarks.md` (tables).

With `merge`, benchmarks already in the JSON file that this run did not measure are kept, so
`python -m bench --only NAME` refreshes one benchmark without dropping the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.machine import Machine
from bench.result import BenchResult, Comparison, Figure, ParamValue, Statistic, Target

SCHEMA = 1


def output_names(quick: bool) -> tuple[str, str]:
    """The markdown and JSON file names; quick runs get their own, so they never replace a full run's."""
    stem = "benchmarks-quick" if quick else "benchmarks"
    return f"{stem}.md", f"{stem}.json"


def _params_json(params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
    return dict(params)


def figure_to_json(figure: Figure) -> dict[str, Any]:
    summary = figure.summary
    return {
        "name": figure.name,
        "unit": figure.unit,
        "params": _params_json(figure.params),
        "samples": list(figure.samples),
        "summary": {**asdict(summary), "spread": summary.spread if math.isfinite(summary.spread) else None},
        "target": None
        if figure.target is None
        else {
            "statistic": figure.target.statistic.value,
            "comparison": figure.target.comparison.value,
            "value": figure.target.value,
            "source": figure.target.source,
        },
        "met": figure.met,
        "note": figure.note,
    }


def figure_from_json(data: Mapping[str, Any]) -> Figure:
    target_data = data.get("target")
    target = (
        None
        if target_data is None
        else Target(
            statistic=Statistic(target_data["statistic"]),
            comparison=Comparison(target_data["comparison"]),
            value=float(target_data["value"]),
            source=str(target_data.get("source", "")),
        )
    )
    return Figure(
        name=str(data["name"]),
        unit=str(data["unit"]),
        samples=tuple(float(s) for s in data["samples"]),
        params=dict(data.get("params", {})),
        target=target,
        note=str(data.get("note", "")),
    )


def result_to_json(result: BenchResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "title": result.title,
        "params": _params_json(result.params),
        "notes": list(result.notes),
        "ran_at": result.ran_at,
        "duration_s": result.duration_s,
        "command": result.command,
        "figures": [figure_to_json(f) for f in result.figures],
    }


def result_from_json(data: Mapping[str, Any]) -> BenchResult:
    return BenchResult(
        name=str(data["name"]),
        title=str(data["title"]),
        figures=tuple(figure_from_json(f) for f in data["figures"]),
        params=dict(data.get("params", {})),
        notes=tuple(str(n) for n in data.get("notes", ())),
        ran_at=str(data.get("ran_at", "")),
        duration_s=float(data.get("duration_s", 0.0)),
        command=str(data.get("command", "")),
    )


def load_results(path: Path) -> list[BenchResult]:
    """The benchmarks recorded in a JSON report; none if it does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [result_from_json(entry) for entry in data.get("benchmarks", [])]


def merged(previous: Iterable[BenchResult], latest: Sequence[BenchResult]) -> list[BenchResult]:
    """The latest results, and the previous ones for benchmarks not re-run, in their previous order."""
    fresh = {r.name: r for r in latest}
    out = [fresh.pop(r.name, r) for r in previous]
    out.extend(r for r in latest if r.name in fresh)
    return out


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _case(params: Mapping[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _met(figure: Figure) -> str:
    met = figure.met
    return "" if met is None else ("yes" if met else "**NO**")


def figure_row(figure: Figure) -> str:
    s = figure.summary
    spread = f"{s.spread:.2f}" if s.count > 1 and math.isfinite(s.spread) else ""
    target = "" if figure.target is None else f"{figure.target} {figure.unit}"
    cells = [
        figure.name,
        _case(figure.params),
        figure.unit,
        format_value(s.median),
        format_value(s.p99) if s.count > 1 else "",
        format_value(s.max) if s.count > 1 else "",
        spread,
        str(s.count),
        target,
        _met(figure),
        figure.note,
    ]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


_HEADER = (
    "| figure | case | unit | median | p99 | max | spread (p99/p50) | samples | target | met? | note |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---|---|---|"
)


def render_markdown(machine: Machine, results: Sequence[BenchResult], *, quick: bool) -> str:
    lines = [
        "# Benchmarks" + (" (quick run)" if quick else ""),
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand. Every sample is in the JSON file "
        "beside this one. Benchmarks, not tests: the machines are shared and noisy, so compare medians and "
        "ratios taken in one run.",
        "",
        "## Machine",
        "",
        f"- nproc: {machine.nproc}; CPU: {machine.cpu_model}; kernel {machine.kernel}",
        f"- Python {machine.python}, grpcio {machine.grpc}, protobuf {machine.protobuf}, "
        f"Envoy {machine.envoy}",
        f"- date: {machine.date}; load average at start (1/5/15 min): {machine.load or 'unknown'}",
        f"- command: `{machine.command}`",
    ]
    for result in results:
        lines += ["", f"## {result.title} (`{result.name}`)", ""]
        if result.params:
            lines.append("Parameters: " + _case(result.params) + ".")
        if result.ran_at:
            lines.append(f"Ran {result.ran_at} in {result.duration_s:.0f} s: `{result.command}`.")
        if result.figures:
            lines += ["", _HEADER]
            lines += [figure_row(f) for f in result.figures]
        if result.notes:
            lines.append("")
            lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: Path, machine: Machine, results: Sequence[BenchResult], *, quick: bool, merge: bool
) -> tuple[Path, Path]:
    """Write the markdown and JSON reports into `out_dir`; their paths."""
    md_name, json_name = output_names(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / json_name, out_dir / md_name
    everything = merged(load_results(json_path), results) if merge else list(results)
    document = {
        "schema": SCHEMA,
        "quick": quick,
        "machine": asdict(machine),
        "benchmarks": [result_to_json(r) for r in everything],
    }
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path.write_text(render_markdown(machine, everything, quick=quick))
    return md_path, json_path
