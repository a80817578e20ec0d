"""The control plane with a Kubernetes source writes route status from its diagnostics (the composition of
KubeSource, the publisher's translation diagnostics and the StatusReporter), against the API server double."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from apidouble import ApiServerDouble
from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from tests.sources.cluster import GATEWAY_CRDS, install, until

GATEWAY = "gateway.networking.k8s.io/v1"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble() as server:
        install(server, GATEWAY_CRDS)
        server.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 80}]},
            }
        )
        yield server


def route(name: str, backend: str) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 80}],
            "rules": [{"backendRefs": [{"name": backend, "port": 80}]}],
        },
    }


def conditions(api: ApiServerDouble, name: str) -> dict[str, dict[str, Any]]:
    obj = api.get(GATEWAY, "HTTPRoute", name, "default")
    return {c["type"]: c for p in obj.get("status", {}).get("parents", []) for c in p.get("conditions", [])}


async def test_routes_get_accepted_and_resolved_refs_conditions(api: ApiServerDouble, tmp_path: Path) -> None:
    api.apply(route("good", "reviews"))
    api.apply(route("broken", "missing"))
    socket_dir = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))
    settings = Settings(
        source=SourceSpec(kind=SourceKind.KUBE, path=api.kubeconfig(tmp_path / "kubeconfig")),
        xds_listen=(f"unix:{socket_dir / 'xds.sock'}",),
        admin_listen="127.0.0.1:0",
        debounce_quiet=0.01,
        debounce_max=0.05,
        shutdown_grace=0.1,
    )
    try:
        await _check_statuses(api, settings)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


async def _check_statuses(api: ApiServerDouble, settings: Settings) -> None:
    async with ControlPlane(settings).running() as controlplane:
        assert controlplane.status_reporter is not None
        await until(lambda: "ResolvedRefs" in conditions(api, "broken"), "the broken route's status")
        await until(lambda: "ResolvedRefs" in conditions(api, "good"), "the good route's status")
        broken, good = conditions(api, "broken"), conditions(api, "good")
        assert (broken["ResolvedRefs"]["status"], broken["ResolvedRefs"]["reason"]) == (
            "False",
            "BackendNotFound",
        )
        assert (good["Accepted"]["status"], good["ResolvedRefs"]["status"]) == ("True", "True")

        # A route that joins later, valid (no diagnostic changes), is accepted too.
        api.apply(route("later", "reviews"))
        await until(lambda: "Accepted" in conditions(api, "later"), "the new route's status")
        assert conditions(api, "later")["Accepted"]["status"] == "True"

        # A Kubernetes source exports its informers' watch restarts and relists.
        metrics = controlplane.metrics_registry
        assert metrics.get_sample_value("nodemesh_kube_relists_total", {"kind": "HTTPRoute"}) == 0
        labels = {"kind": "Service", "reason": "expired"}
        assert metrics.get_sample_value("nodemesh_kube_watch_restarts_total", labels) == 0
