"""The Kubernetes source against the API server double: every kind to the model, live, across watch cuts,
410 relists and missing CRDs; `kubectl apply` of the samples."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from apidouble import ApiServerDouble
from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.objects import MeshObject
from controlplane.model.policy import TrafficPolicy
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import GRPCRoute, HTTPRoute
from controlplane.sources.files import load_manifests
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.informer import WatchEnd
from controlplane.sources.kube.kinds import HTTP_ROUTES, PODS
from controlplane.sources.kube.source import KubeSource
from tests.sources.cluster import (
    FAST,
    GATEWAY_CRDS,
    SAMPLES,
    SECURITY_CRDS,
    SECURITY_SAMPLES,
    TRAFFIC_POLICY_CRD,
    WAIT,
    ModelSink,
    expected_snapshot,
    http_route,
    install,
    populate_core,
    running,
    until,
)

ROUTE = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews")
GATE_OPEN = 1.0


class GateSleeper:
    """Backoff sleeps that block while the gate is closed, so a test can act while the source is away."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.slept = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.set()
        await self.gate.wait()
        await asyncio.sleep(0)


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(port=0, bookmark_interval=0.1) as server:
        yield server


@pytest_asyncio.fixture
async def kube(api: ApiServerDouble, tmp_path: Path) -> AsyncIterator[KubeApi]:
    async with connect(ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))) as kube_api:
        yield kube_api


def _populate_mesh(api: ApiServerDouble) -> None:
    install(api, GATEWAY_CRDS, TRAFFIC_POLICY_CRD, *SECURITY_CRDS)
    populate_core(api)
    # The mesh-wide PeerAuthentication sample lives in the root namespace.
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nodemesh-system"}})
    install(api, *sorted(SAMPLES.glob("*.yaml")), *sorted(SECURITY_SAMPLES.glob("*.yaml")))


async def test_initial_list_of_every_kind_is_one_synced_batch_equal_to_a_direct_build(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    _populate_mesh(api)
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
        assert len(sink.updates) == 1, "the initial list is published as one batch"
        assert sink.updates[0].synced
        expected = expected_snapshot(api)
        assert sink.snapshot == expected
        kinds = {obj.ref.kind for obj in sink.snapshot}
        assert kinds == {k.resource.kind for k in FAST.kinds}, (
            "the fixture covers every kind the source reads"
        )
        assert sink.diagnostics == ()
        assert source.missing == set()


async def test_live_updates_reach_the_model_and_status_only_changes_do_not(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    _populate_mesh(api)
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
            await api.wait_for_watches(lambda n: n == len(FAST.kinds))
        api.create(http_route("extra", rules=[{"backendRefs": [{"name": "reviews-v2", "port": 9080}]}]))
        api.patch("v1", "Service", "reviews-v1", {"metadata": {"labels": {"tier": "x"}}}, namespace="shop")
        api.patch(
            "v1",
            "Pod",
            "reviews-v1-7d8f9c6b5-x2k4q",
            {"status": {"phase": "Succeeded"}},
            namespace="shop",
            status=True,
        )
        api.delete("nodemesh.io/v1alpha1", "TrafficPolicy", "ratings-chaos", namespace="shop")
        await sink.wait_until(lambda: sink.snapshot == expected_snapshot(api), "the live changes")
        assert sink.snapshot.get(ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="extra")) is not None
        assert (
            sink.snapshot.get(ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="shop", name="ratings-chaos"))
            is None
        )
        published = len(sink.updates)
        # A status write to a route (what the status reporter does) changes nothing in the model: no update.
        api.patch(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "reviews",
            {"status": {"parents": []}},
            namespace="shop",
            status=True,
        )
        api.patch("v1", "Service", "reviews-v2", {"metadata": {"labels": {"tier": "y"}}}, namespace="shop")
        await sink.wait_until(lambda: len(sink.updates) > published, "the service update")
        assert [str(e.ref) for u in sink.updates[published:] for e in u.events] == ["Service/shop/reviews-v2"]


async def test_watch_cut_and_410_relist_with_deletions_while_disconnected(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    _populate_mesh(api)
    sink = ModelSink()
    sleeper = GateSleeper()
    source = KubeSource(FAST, sink, api=kube, sleeper=sleeper)
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
            await api.wait_for_watches(lambda n: n == len(FAST.kinds))
        # A cut mid-stream: the informers resume from their resourceVersion and replay what they missed.
        sleeper.gate.clear()
        api.cut_watches()
        async with asyncio.timeout(WAIT):
            await sleeper.slept.wait()
        api.delete("gateway.networking.k8s.io/v1", "HTTPRoute", "reviews-from-web", namespace="web")
        api.patch("v1", "Namespace", "web", {"metadata": {"labels": {"nodemesh.io/mesh": "disabled"}}})
        sleeper.gate.set()
        await sink.wait_until(lambda: sink.snapshot == expected_snapshot(api), "the replayed changes")
        assert source.informers[PODS].stats.lists == 1, "a cut watch resumes without relisting"
        assert not sink.snapshot.is_enrolled("web")
        # Again, but history is compacted meanwhile: 410, relist, and deletions found by reconciling.
        async with asyncio.timeout(WAIT):
            await api.wait_for_watches(lambda n: n == len(FAST.kinds))
        sleeper.slept.clear()
        sleeper.gate.clear()
        api.cut_watches()
        async with asyncio.timeout(WAIT):
            await sleeper.slept.wait()
        api.delete("v1", "Pod", "reviews-v1-7d8f9c6b5-x2k4q", namespace="shop")
        api.delete("gateway.networking.k8s.io/v1", "GRPCRoute", "ratings", namespace="shop")
        api.patch(
            "v1",
            "Service",
            "ratings",
            {"spec": {"ports": [{"name": "grpc", "port": 50052}]}},
            namespace="shop",
        )
        api.compact()
        sleeper.gate.set()
        await sink.wait_until(lambda: sink.snapshot == expected_snapshot(api), "the relisted state")
        pods = source.informers[PODS]
        assert pods.stats.lists == 2 and pods.stats.watch_ends[WatchEnd.EXPIRED] >= 1
        assert sink.snapshot.workloads == {}
        assert sink.snapshot.grpc_routes == {}


async def test_a_missing_crd_is_reported_once_and_does_not_block_the_other_kinds(
    api: ApiServerDouble, kube: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    install(api, TRAFFIC_POLICY_CRD)  # no Gateway API CRDs
    populate_core(api)
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    with caplog.at_level(logging.INFO, logger="controlplane.sources.kube.source"):
        async with running(source.run()):
            async with asyncio.timeout(WAIT):
                await source.synced.wait()
            assert sink.snapshot == expected_snapshot(api)
            assert len(sink.snapshot.services) == 1
            assert {str(r) for r in source.missing} == {
                "httproutes.gateway.networking.k8s.io",
                "grpcroutes.gateway.networking.k8s.io",
                "authorizationpolicies.nodemesh.io",
                "peerauthentications.nodemesh.io",
            }
            probes = ("GET", HTTP_ROUTES.collection_path())
            await until(lambda: api.requests[probes] >= 4, "several probes for the missing kind")
            missing_logs = [r for r in caplog.records if "is not served" in r.getMessage()]
            assert len(missing_logs) == 4, "one warning per missing kind, however often it is retried"
            # The CRDs arrive: their objects flow in as live updates.
            install(api, GATEWAY_CRDS, *SECURITY_CRDS)
            api.create(http_route())
            await sink.wait_until(lambda: sink.snapshot.get(ROUTE) is not None, "the route")
            await until(lambda: not source.missing, "the kinds to be served")
        assert any("is served now" in r.getMessage() for r in caplog.records)


async def test_an_invalid_new_version_keeps_the_last_valid_one_with_diagnostics(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    install(api, GATEWAY_CRDS)
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    api.create(http_route())
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
        valid = sink.snapshot.get(ROUTE)
        assert isinstance(valid, HTTPRoute)
        bad_rules = [{"backendRefs": [{"name": "reviews", "port": 9080, "weight": -1}]}]
        api.patch(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "reviews",
            {"spec": {"rules": bad_rules}},
            namespace="shop",
        )
        await sink.wait_until(lambda: bool(sink.diagnostics_of(ROUTE)), "diagnostics")
        assert sink.snapshot.get(ROUTE) == valid
        reasons = {(d.severity, d.reason, d.field) for d in sink.diagnostics_of(ROUTE)}
        assert (Severity.ERROR, Reason.OUT_OF_RANGE, "spec.rules[0].backendRefs[0].weight") in reasons
        assert (Severity.WARNING, Reason.KEPT_LAST_VALID, "") in reasons
        # Fixed: the new version replaces the old one and the diagnostics clear.
        good_rules = [{"backendRefs": [{"name": "reviews", "port": 9080, "weight": 5}]}]
        api.patch(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "reviews",
            {"spec": {"rules": good_rules}},
            namespace="shop",
        )
        await sink.wait_until(lambda: not sink.diagnostics_of(ROUTE), "the diagnostics to clear")
        route = sink.snapshot.get(ROUTE)
        assert isinstance(route, HTTPRoute) and route.rules[0].backend_refs[0].weight == 5
        # Deleted while invalid: gone from the model, and so are its diagnostics.
        api.patch(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            "reviews",
            {"spec": {"rules": bad_rules}},
            namespace="shop",
        )
        await sink.wait_until(lambda: bool(sink.diagnostics_of(ROUTE)), "diagnostics")
        api.delete("gateway.networking.k8s.io/v1", "HTTPRoute", "reviews", namespace="shop")
        await sink.wait_until(
            lambda: sink.snapshot.get(ROUTE) is None and not sink.diagnostics, "the deletion"
        )


KUBECTL = shutil.which("kubectl")


def _unstamped(obj: MeshObject) -> MeshObject:
    """Without what the API server stamps (generation, creation time) and files do not carry."""
    match obj:
        case HTTPRoute() | GRPCRoute():
            return dataclasses.replace(obj, generation=0, creation_timestamp="")
        case TrafficPolicy():
            return dataclasses.replace(obj, generation=0)
    return obj


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_apply_of_the_samples_reaches_the_model(
    api: ApiServerDouble, kube: KubeApi, tmp_path: Path
) -> None:
    sink = ModelSink()
    source = KubeSource(FAST, sink, api=kube)
    async with running(source.run()):
        async with asyncio.timeout(WAIT):
            await source.synced.wait()
        assert KUBECTL is not None
        for target in (GATEWAY_CRDS, TRAFFIC_POLICY_CRD, SAMPLES):
            process = await asyncio.create_subprocess_exec(
                KUBECTL,
                "--server",
                api.url,
                "--kubeconfig",
                "/dev/null",
                "--cache-dir",
                str(tmp_path / "cache"),
                "apply",
                "--validate=false",
                "-f",
                str(target),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
        objects, diagnostics = load_manifests(SAMPLES)
        assert diagnostics == ()

        wanted = {_unstamped(o) for o in objects}
        samples = {o.ref for o in objects}
        await sink.wait_until(
            lambda: {_unstamped(o) for o in sink.snapshot if o.ref in samples} == wanted, "the samples"
        )
        assert sink.diagnostics == ()
