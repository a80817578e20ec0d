"""Status write-back end to end: KubeSource -> diagnostics -> StatusReporter -> the double's `/status`,
read back through the double; PATCHes counted by the double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from apidouble import ApiServerDouble
from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import Kind, ObjectRef
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.kinds import HTTP_ROUTES, TRAFFIC_POLICIES
from controlplane.sources.kube.source import KubeSource
from controlplane.sources.kube.writeback import KubeStatusPatcher
from controlplane.status.errors import ObjectGoneError, StatusConflictError
from controlplane.status.reporter import StatusReporter, WriteOutcome
from controlplane.status.routes import DEFAULT_CONTROLLER
from tests.sources.cluster import (
    FAST,
    GATEWAY_CRDS,
    TRAFFIC_POLICY_CRD,
    WAIT,
    ModelSink,
    http_route,
    install,
    running,
    until,
)

GATEWAY = "gateway.networking.k8s.io/v1"
GOOD = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="good")
BAD = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="bad")
POLICY = ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="shop", name="reviews")
BAD_RULES = [{"backendRefs": [{"name": "reviews", "port": 9080, "weight": -1}]}]


def _status_path(ref: ObjectRef) -> str:
    resource = HTTP_ROUTES if ref.kind == Kind.HTTP_ROUTE else TRAFFIC_POLICIES
    return resource.item_path(ref.namespace, ref.name, "status")


def _patches(api: ApiServerDouble, ref: ObjectRef) -> int:
    return api.requests[("PATCH", _status_path(ref))]


def _conditions(api: ApiServerDouble, ref: ObjectRef) -> dict[str, dict[str, Any]]:
    """Our conditions on the object, read back from the double ({} when none yet)."""
    if ref.kind == Kind.HTTP_ROUTE:
        obj = api.get(GATEWAY, "HTTPRoute", ref.name, namespace=ref.namespace)
        ours = [
            p for p in obj.get("status", {}).get("parents", []) if p["controllerName"] == DEFAULT_CONTROLLER
        ]
        conditions = ours[0]["conditions"] if ours else []
    else:
        obj = api.get("nodemesh.io/v1alpha1", "TrafficPolicy", ref.name, namespace=ref.namespace)
        conditions = obj.get("status", {}).get("conditions", [])
    return {c["type"]: c for c in conditions}


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(port=0, bookmark_interval=0.1) as server:
        install(server, GATEWAY_CRDS, TRAFFIC_POLICY_CRD)
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        server.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"ports": [{"name": "http", "port": 9080}]},
            }
        )
        server.create(http_route("good"))
        server.create(http_route("bad", rules=BAD_RULES))
        server.create(
            {
                "apiVersion": "nodemesh.io/v1alpha1",
                "kind": "TrafficPolicy",
                "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "reviews"}]},
            }
        )
        yield server


@pytest_asyncio.fixture
async def kube(api: ApiServerDouble, tmp_path: Path) -> AsyncIterator[KubeApi]:
    async with connect(ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))) as kube_api:
        yield kube_api


def _cached_status(source: KubeSource, ref: ObjectRef) -> object:
    resource = HTTP_ROUTES if ref.kind == Kind.HTTP_ROUTE else TRAFFIC_POLICIES
    obj = source.raw_object(resource, ref.namespace, ref.name)
    return obj.get("status") if obj is not None else None


async def test_statuses_are_written_from_diagnostics_and_only_when_they_change(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    reporter = StatusReporter(objects=source, patcher=KubeStatusPatcher(kube))
    # The glue the app provides: every source update feeds the reporter (translation diagnostics would
    # join the conversion ones here).
    sink.listeners.append(lambda s: reporter.update(s.diagnostics, s.known()))
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
        await reporter.reconcile()

        bad = _conditions(api, BAD)
        assert (bad["Accepted"]["status"], bad["Accepted"]["reason"]) == ("False", "UnsupportedValue")
        assert "spec.rules[0].backendRefs[0].weight" in bad["Accepted"]["message"]
        assert bad["Accepted"]["observedGeneration"] == 1
        good = _conditions(api, GOOD)
        assert (good["Accepted"]["status"], good["Accepted"]["reason"]) == ("True", "Accepted")
        assert (good["ResolvedRefs"]["status"], good["ResolvedRefs"]["reason"]) == ("True", "ResolvedRefs")
        policy = _conditions(api, POLICY)
        assert (policy["Accepted"]["status"], policy["Accepted"]["reason"]) == ("True", "Accepted")
        assert [_patches(api, ref) for ref in (GOOD, BAD, POLICY)] == [1, 1, 1]

        # The writes come back through the watch: no model change, and no second write.
        published = len(sink.updates)
        await until(lambda: all(_cached_status(source, r) for r in (GOOD, BAD, POLICY)), "the status events")
        await reporter.reconcile()
        reporter.update(sink.diagnostics, sink.known())
        await reporter.reconcile()
        assert [_patches(api, ref) for ref in (GOOD, BAD, POLICY)] == [1, 1, 1]
        assert len(sink.updates) == published, "status writes must not reach the model"

        # A fix: a new generation, accepted; only that route's status is written again.
        api.patch(
            GATEWAY,
            "HTTPRoute",
            "bad",
            {"spec": {"rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}]}},
            namespace="shop",
        )
        await sink.wait_until(lambda: not sink.diagnostics, "the fix")
        await reporter.reconcile()
        fixed = _conditions(api, BAD)
        assert (fixed["Accepted"]["status"], fixed["Accepted"]["observedGeneration"]) == ("True", 2)
        assert [_patches(api, ref) for ref in (GOOD, BAD, POLICY)] == [1, 2, 1]

        # A translation diagnostic (a backend that does not resolve) fails ResolvedRefs, not Accepted.
        missing = Diagnostic(
            severity=Severity.ERROR,
            reason=Reason.BACKEND_NOT_FOUND,
            message="Service/shop/reviews has no port 9080",
            ref=GOOD,
            field="spec.rules[0].backendRefs[0].port",
        )
        reporter.update([*sink.diagnostics, missing], sink.known())
        await reporter.reconcile()
        good = _conditions(api, GOOD)
        assert (good["Accepted"]["status"], good["ResolvedRefs"]["status"]) == ("True", "False")
        assert good["ResolvedRefs"]["reason"] == "BackendNotFound"
        assert "spec.rules[0].backendRefs[0].port" in good["ResolvedRefs"]["message"]


async def test_other_controllers_entries_survive_and_an_overwritten_status_is_restored(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    theirs = {
        "parentRef": {"name": "public-gw"},
        "controllerName": "example.com/gateway",
        "conditions": [],
    }
    api.patch(GATEWAY, "HTTPRoute", "good", {"status": {"parents": [theirs]}}, namespace="shop", status=True)
    sink = ModelSink()
    reporters: list[StatusReporter] = []

    def refresh() -> None:
        for reporter in reporters:
            reporter.refresh()

    source = KubeSource(FAST, sink, api=kube, on_status_object=refresh)
    reporter = StatusReporter(objects=source, patcher=KubeStatusPatcher(kube))
    reporters.append(reporter)
    sink.listeners.append(lambda s: reporter.update(s.diagnostics, s.known()))
    async with running(source.run(), reporter.run()):
        await until(lambda: bool(_conditions(api, GOOD)), "our status on the route")
        parents = api.get(GATEWAY, "HTTPRoute", "good", namespace="shop")["status"]["parents"]
        assert parents[0] == theirs
        assert [p["controllerName"] for p in parents] == ["example.com/gateway", DEFAULT_CONTROLLER]
        # Someone overwrites the status: the change event makes the reporter put ours back.
        await until(lambda: bool(_cached_status(source, GOOD)), "the status event")
        writes = reporter.stats[WriteOutcome.WRITTEN]
        api.patch(
            GATEWAY, "HTTPRoute", "good", {"status": {"parents": [theirs]}}, namespace="shop", status=True
        )
        await until(lambda: reporter.stats[WriteOutcome.WRITTEN] > writes, "the status to be restored")
        await until(lambda: bool(_conditions(api, GOOD)), "our entry back")
        assert api.get(GATEWAY, "HTTPRoute", "good", namespace="shop")["status"]["parents"][0] == theirs


async def test_patcher_maps_a_stale_version_to_conflict_and_a_missing_object_to_gone(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    patcher = KubeStatusPatcher(kube)
    current = api.get(GATEWAY, "HTTPRoute", "good", namespace="shop")["metadata"]["resourceVersion"]
    api.patch(GATEWAY, "HTTPRoute", "good", {"spec": {"hostnames": ["a.example"]}}, namespace="shop")
    with pytest.raises(StatusConflictError):
        await patcher.patch_status(GOOD, {"parents": []}, resource_version=current)
    gone = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="gone")
    with pytest.raises(ObjectGoneError):
        await patcher.patch_status(gone, {"parents": []}, resource_version="1")
    assert "status" not in api.get(GATEWAY, "HTTPRoute", "good", namespace="shop")
