"""The machine and software a benchmark run happened on, for the report header."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from google import protobuf


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    nproc: int
    cpu_model: str
    kernel: str
    python: str
    grpc: str
    protobuf: str
    envoy: str
    date: str
    command: str
    # 1, 5 and 15 minute load averages when the run started: other work on a shared machine skews timings.
    load: str = ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def envoy_version() -> str:
    """`envoy --version` of the venv's Envoy (or the one on PATH), as "1.40.0 (build sha)"."""
    beside = Path(sys.executable).parent / "envoy"
    binary = str(beside) if beside.exists() else shutil.which("envoy")
    if binary is None:
        return "not installed"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    for line in out.stdout.splitlines():
        if "version:" in line:
            parts = line.split("version:", 1)[1].strip().split("/")
            if len(parts) >= 2:
                return f"{parts[1]} ({parts[0][:12]})"
            return line.strip()
    return "unknown"


def describe_machine(command: str) -> Machine:
    return Machine(
        nproc=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        kernel=platform.release(),
        python=platform.python_version(),
        grpc=grpc.__version__,
        protobuf=protobuf.__version__,
        envoy=envoy_version(),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        command=command,
        load=" ".join(f"{v:.2f}" for v in os.getloadavg()),
    )
