"""Watch restarts and relists exported from the informers' stats: from fakes, then from a real informer whose
watch the API server double cuts and whose resourceVersion it expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from prometheus_client import CollectorRegistry

from apidouble import ApiServerDouble
from controlplane.sources.kube import kinds
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.informer import Informer, InformerStats, WatchEnd
from controlplane.sources.kube.metrics import WatchMetrics
from controlplane.sources.kube.resources import ResourceType
from tests.running import running
from tests.sources.test_kube_informer import FAST, WAIT, GateSleeper, Recorder


@dataclass
class FakeInformer:
    resource: ResourceType
    stats: InformerStats = field(default_factory=InformerStats)


def test_restarts_by_kind_and_reason_and_relists_after_the_first_list() -> None:
    pods, services = FakeInformer(kinds.PODS), FakeInformer(kinds.SERVICES)
    foreign = FakeInformer(ResourceType(group="", version="v1", plural="configmaps", kind="ConfigMap"))
    pods.stats.lists = 3
    pods.stats.watch_ends[WatchEnd.EXPIRED] = 2
    pods.stats.watch_ends[WatchEnd.TIMEOUT] = 7
    services.stats.lists = 1
    registry = CollectorRegistry()
    registry.register(WatchMetrics(lambda: [pods, services, foreign]))

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("nodemesh_kube_watch_restarts_total", kind="Pod", reason="expired") == 2
    assert sample("nodemesh_kube_watch_restarts_total", kind="Pod", reason="timeout") == 7
    assert sample("nodemesh_kube_watch_restarts_total", kind="Service", reason="closed") == 0
    assert sample("nodemesh_kube_relists_total", kind="Pod") == 2
    assert sample("nodemesh_kube_relists_total", kind="Service") == 0
    # A kind outside the model has no bounded label: left out.
    assert sample("nodemesh_kube_relists_total", kind="ConfigMap") is None


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }


@pytest_asyncio.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[ApiServerDouble, KubeApi]]:
    async with ApiServerDouble(port=0, bookmark_interval=0.1) as api:
        settings = ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
        async with connect(settings) as kube_api:
            yield api, kube_api


async def test_a_cut_watch_and_a_410_show_up_as_restarts_and_a_relist(
    kube: tuple[ApiServerDouble, KubeApi],
) -> None:
    api, kube_api = kube
    api.create(_pod("a"))
    recorder, sleeper = Recorder(), GateSleeper()
    informer = Informer(api=kube_api, resource=kinds.PODS, sink=recorder, settings=FAST, sleeper=sleeper)
    registry = CollectorRegistry()
    registry.register(WatchMetrics(lambda: [informer]))

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"kind": "Pod", **labels})

    async with running(informer):
        await recorder.wait_for(1)
        async with asyncio.timeout(WAIT):
            await api.wait_for_watches(lambda n: n == 1)
        assert sample("nodemesh_kube_relists_total") == 0
        sleeper.gate.clear()
        api.cut_watches()
        async with asyncio.timeout(WAIT):
            await sleeper.slept.wait()
        api.create(_pod("b"))
        api.compact()  # the next watch gets 410: relist
        sleeper.gate.set()
        await recorder.wait_for(2)
        assert sample("nodemesh_kube_watch_restarts_total", reason="closed") == 1
        assert sample("nodemesh_kube_watch_restarts_total", reason="expired") == 1
        assert sample("nodemesh_kube_relists_total") == 1
