"""The kernel's own run statistics of BPF programs (run count and run time), for the data-path benchmark.

`kernel.bpf_stats_enabled` makes the kernel time every program run (two clock reads per run, a few tens of
ns); it is on only inside `bpf_stats()`, which puts back the value it found. `bpftool prog show` reports
each program's cumulative `run_cnt` and `run_time_ns`; the difference of two snapshots over N connections
gives each program's runs and nanoseconds per connection.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.clientproc import BenchError

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
PROGRAM_PREFIX = "nodemesh"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramRuns:
    runs: int
    run_time_ns: int


# Keyed by pin path: each node's agent loads and pins its own copy of every program.
Snapshot = Mapping[str, ProgramRuns]


def bpf_stats_unavailable_reason() -> str | None:
    if shutil.which("bpftool") is None:
        return "bpftool not installed"
    if not STATS_SYSCTL.exists():
        return f"no {STATS_SYSCTL}"
    return None


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """Kernel BPF run statistics on for the block; the sysctl's previous value restored after."""
    before = STATS_SYSCTL.read_text().strip()
    STATS_SYSCTL.write_text("1")
    try:
        yield
    finally:
        STATS_SYSCTL.write_text(before)


def snapshot(pin_dirs: Sequence[Path]) -> dict[str, ProgramRuns]:
    """Cumulative runs of the nodemesh programs pinned under `pin_dirs`, keyed by pin path (other runs'
    programs, e.g. of a test running beside the benchmark, are left out)."""
    argv = ["bpftool", "-j", "-f", "prog", "show"]
    shown = subprocess.run(argv, capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        raise BenchError(f"bpftool prog show: {shown.stderr.strip()}")
    out: dict[str, ProgramRuns] = {}
    for program in json.loads(shown.stdout):
        if not str(program.get("name", "")).startswith(PROGRAM_PREFIX):
            continue
        ours = [
            pin
            for pin in (Path(p) for p in program.get("pinned", []))
            if any(pin.is_relative_to(directory) for directory in pin_dirs)
        ]
        if ours:
            out[str(min(ours))] = ProgramRuns(
                runs=int(program.get("run_cnt", 0)), run_time_ns=int(program.get("run_time_ns", 0))
            )
    return out


def difference(before: Snapshot, after: Snapshot) -> dict[str, ProgramRuns]:
    """Per program, what ran between the snapshots (programs that did not run are left out)."""
    out: dict[str, ProgramRuns] = {}
    for key, now in after.items():
        then = before.get(key, ProgramRuns(runs=0, run_time_ns=0))
        if now.runs > then.runs:
            out[key] = ProgramRuns(runs=now.runs - then.runs, run_time_ns=now.run_time_ns - then.run_time_ns)
    return out
