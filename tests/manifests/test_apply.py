"""`kubectl apply --dry-run=server` of the whole install and the samples, against the API server double.

The double serves core kinds and CRDs; the workload and RBAC kinds the install also uses (Deployment,
DaemonSet, PodDisruptionBudget, the RBAC kinds) are registered without a schema (standins.py), so for
those the check is that kubectl and the server agree on kinds, scopes, names and namespaces; their content
is checked by test_security and test_rbac. Gateway API's CRDs are a prerequisite of the install, not part
of it: a minimal stand-in is registered too.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from apidouble import ApiServerDouble
from tests.manifests.layout import (
    CRDS,
    MANIFESTS,
    SAMPLES,
    documents,
    install_documents,
    is_raw_envoy,
    yaml_files,
)
from tests.manifests.standins import STAND_IN_KINDS, gateway_route_crd

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

# The samples' Services pin cluster IPs from the demo fabric's service range (DESIGN.md §6).
SERVICE_CIDR = "198.19.128.0/24"
DRY_RUN = "(server dry run)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Kubectl:
    server: str
    cache: Path

    async def run(self, *args: str) -> tuple[int, str, str]:
        assert KUBECTL is not None
        # Asynchronous: the double serves from this same event loop.
        process = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--server",
            self.server,
            "--cache-dir",
            str(self.cache),
            "--kubeconfig",
            "/dev/null",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def ok(self, *args: str) -> list[str]:
        code, out, err = await self.run(*args)
        assert code == 0, f"kubectl {' '.join(args)} failed:\n{err}"
        return [line for line in out.splitlines() if line.strip()]


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(host="127.0.0.1", port=0, service_cidr=SERVICE_CIDR) as server:
        for kind in STAND_IN_KINDS:
            server.registry.register(kind)
        yield server


@pytest.fixture
def kubectl(api: ApiServerDouble, tmp_path: Path) -> Kubectl:
    return Kubectl(server=api.url, cache=tmp_path / "cache")


def _write(path: Path, docs: list[dict[str, Any]]) -> str:
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


async def _install_prerequisites(api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path) -> None:
    """What must exist before a dry run can pass: CRDs (Gateway API's, then ours) and the namespaces."""
    gateway = [gateway_route_crd("httproutes", "HTTPRoute"), gateway_route_crd("grpcroutes", "GRPCRoute")]
    await kubectl.ok("apply", "-f", _write(tmp_path / "gateway-api.yaml", gateway))
    await kubectl.ok("apply", "-k", str(CRDS))
    namespaces = [d for d in install_documents() if d["kind"] == "Namespace"]
    namespaces += [
        d
        for p in yaml_files(SAMPLES)
        if not is_raw_envoy(p)
        for d in documents(p)
        if d["kind"] == "Namespace"
    ]
    await kubectl.ok("apply", "-f", _write(tmp_path / "namespaces.yaml", namespaces))


def _expected_line(doc: dict[str, Any]) -> str:
    """The `<resource>.<group>/<name>` prefix kubectl prints for an applied object."""
    group = str(doc["apiVersion"]).rpartition("/")[0]
    kind = str(doc["kind"]).lower()
    name = doc["metadata"]["name"]
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


async def test_the_whole_install_passes_a_server_dry_run(
    api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_prerequisites(api, kubectl, tmp_path)
    before = api.resource_version
    lines = await kubectl.ok("apply", "--dry-run=server", "-k", str(MANIFESTS))
    assert api.resource_version == before, "a dry run stored something"
    assert all(line.endswith(DRY_RUN) for line in lines), lines
    printed = sorted(line.split()[0] for line in lines)
    assert printed == sorted(_expected_line(d) for d in install_documents())
    # Nothing but the prerequisites was created: the dry run really was one.
    assert api.list_objects("apps/v1", "DaemonSet", "nodemesh-system") == []


async def test_every_sample_passes_a_server_dry_run(
    api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_prerequisites(api, kubectl, tmp_path)
    samples = [p for p in yaml_files(SAMPLES) if not is_raw_envoy(p)]
    assert samples
    for path in samples:
        lines = await kubectl.ok("apply", "--dry-run=server", "-f", str(path))
        assert sorted(line.split()[0] for line in lines) == sorted(_expected_line(d) for d in documents(path))
        assert all(line.endswith(DRY_RUN) for line in lines), lines


async def test_a_sample_the_schema_forbids_is_refused(
    api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path
) -> None:
    await _install_prerequisites(api, kubectl, tmp_path)
    policy = next(
        d
        for p in yaml_files(SAMPLES)
        if not is_raw_envoy(p)
        for d in documents(p)
        if d["kind"] == "TrafficPolicy"
    )
    policy["spec"]["loadBalancer"] = {"algorithm": "FASTEST"}
    code, _, err = await kubectl.run(
        "apply", "--dry-run=server", "-f", _write(tmp_path / "bad.yaml", [policy])
    )
    assert code != 0
    assert "spec.loadBalancer.algorithm: Unsupported value" in err, err
