"""`python -m bench [--quick] [--only NAME] [--out DIR]`: run the benchmarks and write the report."""

from __future__ import annotations

import argparse
import cProfile
import datetime
import logging
import os
import pstats
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.benchmark import Benchmark, RunOptions
from bench.machine import describe_machine
from bench.registry import BENCHMARKS, find
from bench.report import write_report
from bench.result import BenchResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run nodemesh's benchmarks (control plane, data path) and write docs/benchmarks.md and "
        "docs/benchmarks.json with every figure, its spread and its target. Not a test: nothing fails on a "
        "missed target; the report says so.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the reduced set (under 2 minutes); writes benchmarks-quick.{md,json} instead",
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        choices=[b.name for b in BENCHMARKS],
        help="run one benchmark and update its entry in the report, keeping the others "
        f"(one of: {', '.join(b.name for b in BENCHMARKS)})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run under cProfile (this process: the xDS server side) and write profile-NAME.txt into the "
        "report directory instead of the report, since profiling inflates every timing",
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="report directory (default: docs/)")
    return parser


def _interpreter() -> str:
    """This interpreter as typed from the working directory (`.venv/bin/python` in the project)."""
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def _profiled(benchmark: Benchmark, options: RunOptions, out_dir: Path) -> BenchResult:
    profiler = cProfile.Profile()
    result = profiler.runcall(benchmark.run, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"profile-{benchmark.name}.txt"
    with path.open("w") as stream:
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(40)
        stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(40)
    print(f"wrote {path}", file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    command = shlex.join([_interpreter(), "-m", "bench", *args_list])
    machine = describe_machine(command)
    selected = [find(args.only)] if args.only else list(BENCHMARKS)
    options = RunOptions(quick=args.quick)
    results: list[BenchResult] = []
    for benchmark in selected:
        print(f"running {benchmark.name}: {benchmark.title}", file=sys.stderr, flush=True)
        ran_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        started = time.monotonic()
        result = _profiled(benchmark, options, args.out) if args.profile else benchmark.run(options)
        results.append(replace(result, ran_at=ran_at, duration_s=time.monotonic() - started, command=command))
    if args.profile:
        return 0
    md_path, json_path = write_report(
        args.out, machine, results, quick=args.quick, merge=args.only is not None
    )
    missed = [
        f"{r.name}: {f.name} [{', '.join(map(str, f.params.values()))}]"
        for r in results
        for f in r.figures
        if f.met is False
    ]
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
