"""The generic informer against the API server double: list, watch, cuts, 410 relists, backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from apidouble import ApiServerDouble
from controlplane.sources.kube.backoff import Backoff
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.errors import KubeApiError
from controlplane.sources.kube.informer import Informer, InformerEvent, InformerSettings, WatchEnd
from controlplane.sources.kube.resources import ObjectRef, ResourceType
from controlplane.sources.kube.status import StatusWriter
from tests.running import running

CONFIGMAPS = ResourceType(group="", version="v1", plural="configmaps", kind="ConfigMap")
WIDGETS = ResourceType(group="example.nodemesh.io", version="v1alpha1", plural="widgets", kind="Widget")
FAST = InformerSettings(page_size=2, backoff=Backoff(initial=0.01, maximum=0.05))
WAIT = 5.0


class Recorder:
    """The informer's sink: records events, lets a test wait for a count."""

    def __init__(self) -> None:
        self.events: list[InformerEvent] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: InformerEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int) -> list[InformerEvent]:
        async with asyncio.timeout(WAIT):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    def summary(self, start: int = 0) -> list[tuple[str, str]]:
        return [(e.type.value, str(e.ref)) for e in self.events[start:]]


class GateSleeper:
    """Records backoff delays; blocks while the gate is closed, so a test can act during a disconnect."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.slept = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.slept.set()
        await self.gate.wait()
        await asyncio.sleep(0)


def _cm(name: str, value: str = "1", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": {"v": value},
    }


@pytest_asyncio.fixture
async def api() -> AsyncIterator[ApiServerDouble]:
    async with ApiServerDouble(port=0, bookmark_interval=0.1) as server:
        yield server


@pytest_asyncio.fixture
async def kube(api: ApiServerDouble, tmp_path: Path) -> AsyncIterator[KubeApi]:
    settings = ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
    async with connect(settings) as kube_api:
        yield kube_api


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - polling state the informer owns
            await asyncio.sleep(0.01)


async def test_initial_list_pages_and_syncs(api: ApiServerDouble, kube: KubeApi) -> None:
    for name in ("c", "a", "b"):
        api.create(_cm(name))
    api.create({**_cm("other"), "metadata": {"name": "other", "namespace": "kube-system"}})
    recorder = Recorder()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, namespace="default", settings=FAST)
    async with running(informer):
        async with asyncio.timeout(WAIT):
            await informer.synced.wait()
        assert recorder.summary() == [("added", "default/a"), ("added", "default/b"), ("added", "default/c")]
        assert informer.resource_version == str(api.resource_version)
        assert set(informer.objects) == {ObjectRef(namespace="default", name=n) for n in "abc"}
        first = recorder.events[0].obj
        assert (first["apiVersion"], first["kind"]) == ("v1", "ConfigMap")
        assert informer.stats.lists == 1


async def test_live_updates_arrive_in_order(api: ApiServerDouble, kube: KubeApi) -> None:
    recorder = Recorder()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, settings=FAST)
    async with running(informer):
        async with asyncio.timeout(WAIT):
            await informer.synced.wait()
            await api.wait_for_watches(lambda n: n == 1)
        api.create(_cm("a"))
        api.patch("v1", "ConfigMap", "a", {"data": {"v": "2"}}, namespace="default")
        api.delete("v1", "ConfigMap", "a", namespace="default")
        await recorder.wait_for(3)
        assert recorder.summary() == [
            ("added", "default/a"),
            ("modified", "default/a"),
            ("deleted", "default/a"),
        ]
        assert recorder.events[1].obj["data"] == {"v": "2"}
        assert informer.objects == {}


async def test_watch_cut_mid_stream_resumes_from_last_resource_version(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    api.create(_cm("a"))
    recorder = Recorder()
    sleeper = GateSleeper()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, settings=FAST, sleeper=sleeper)
    async with running(informer):
        await recorder.wait_for(1)
        async with asyncio.timeout(WAIT):
            await api.wait_for_watches(lambda n: n == 1)
        sleeper.gate.clear()
        assert api.cut_watches() == 1
        async with asyncio.timeout(WAIT):
            await sleeper.slept.wait()
        # Changes while the informer is disconnected are replayed when it re-watches.
        api.create(_cm("b"))
        api.patch("v1", "ConfigMap", "a", {"data": {"v": "2"}}, namespace="default")
        sleeper.gate.set()
        await recorder.wait_for(3)
        assert recorder.summary(1) == [("added", "default/b"), ("modified", "default/a")]
        assert informer.stats.lists == 1, "a cut watch resumes without relisting"
        assert informer.stats.watch_ends[WatchEnd.CLOSED] == 1
        assert len(sleeper.delays) == 1


async def test_410_relists_and_reconciles_deletions_while_disconnected(
    api: ApiServerDouble, kube: KubeApi
) -> None:
    for name in ("gone", "changed", "same"):
        api.create(_cm(name))
    recorder = Recorder()
    sleeper = GateSleeper()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, settings=FAST, sleeper=sleeper)
    async with running(informer):
        await recorder.wait_for(3)
        async with asyncio.timeout(WAIT):
            await api.wait_for_watches(lambda n: n == 1)
        sleeper.gate.clear()
        api.cut_watches()
        async with asyncio.timeout(WAIT):
            await sleeper.slept.wait()
        api.delete("v1", "ConfigMap", "gone", namespace="default")
        api.patch("v1", "ConfigMap", "changed", {"data": {"v": "2"}}, namespace="default")
        api.create(_cm("new"))
        api.compact()  # the informer's resourceVersion is now too old: its next watch gets 410
        sleeper.gate.set()
        await recorder.wait_for(6)
        # Deletions first, then the rest in (namespace, name) order.
        assert recorder.summary(3) == [
            ("deleted", "default/gone"),
            ("modified", "default/changed"),
            ("added", "default/new"),
        ]
        assert informer.stats.watch_ends[WatchEnd.EXPIRED] == 1
        assert informer.stats.lists == 2
        assert sorted(r.name for r in informer.objects) == ["changed", "new", "same"]
        assert informer.objects[ObjectRef(namespace="default", name="changed")]["data"] == {"v": "2"}
        # After relisting it watches again, from the new list's resourceVersion.
        api.create(_cm("after"))
        await recorder.wait_for(7)
        assert recorder.summary(6) == [("added", "default/after")]


async def test_label_selector_informer_sees_relabel_as_delete(api: ApiServerDouble, kube: KubeApi) -> None:
    api.create(_cm("a", app="web"))
    api.create(_cm("b", app="db"))
    recorder = Recorder()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, label_selector="app=web", settings=FAST)
    async with running(informer):
        await recorder.wait_for(1)
        async with asyncio.timeout(WAIT):
            await api.wait_for_watches(lambda n: n == 1)
        api.patch("v1", "ConfigMap", "a", {"metadata": {"labels": {"app": "db"}}}, namespace="default")
        await recorder.wait_for(2)
        assert recorder.summary() == [("added", "default/a"), ("deleted", "default/a")]


async def test_bookmarks_advance_the_resource_version(api: ApiServerDouble, kube: KubeApi) -> None:
    recorder = Recorder()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, settings=FAST)
    async with running(informer):
        async with asyncio.timeout(WAIT):
            await informer.synced.wait()
        # Writes to another kind move the store's resourceVersion; only bookmarks tell the informer.
        api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}})
        target = str(api.resource_version)
        await _until(lambda: informer.resource_version == target)
        assert recorder.events == []


async def test_backoff_grows_exponentially_with_jitter_while_the_server_is_down(tmp_path: Path) -> None:
    async with ApiServerDouble(port=0) as down:
        config = down.kubeconfig(tmp_path / "kubeconfig")
    # The server is gone now: every attempt fails to connect.
    sleeper = GateSleeper()
    backoff = Backoff(initial=0.1, maximum=0.8, jitter=0.2)
    async with connect(ClientSettings(kubeconfig=config, request_timeout=2.0)) as kube:
        informer = Informer(
            api=kube,
            resource=CONFIGMAPS,
            sink=Recorder(),
            settings=InformerSettings(backoff=backoff),
            sleeper=sleeper,
            rng=random.Random(7),
        )
        async with running(informer):
            await _until(lambda: len(sleeper.delays) >= 6)
        assert not informer.synced.is_set()
        for attempt, delay in enumerate(sleeper.delays[:6], start=1):
            base = min(0.8, 0.1 * 2 ** (attempt - 1))
            assert base * 0.8 <= delay <= base * 1.2, (attempt, delay)
        assert len(set(sleeper.delays[:6])) == 6, "jitter makes every delay different"
        assert informer.stats.watch_ends[WatchEnd.ERROR] >= 6


async def test_watch_timeout_reconnects_without_backoff(api: ApiServerDouble, kube: KubeApi) -> None:
    sleeper = GateSleeper()
    settings = InformerSettings(watch_timeout_seconds=1, watch_timeout_jitter=0.0)
    recorder = Recorder()
    informer = Informer(api=kube, resource=CONFIGMAPS, sink=recorder, settings=settings, sleeper=sleeper)
    async with running(informer):
        await _until(lambda: informer.stats.watch_ends[WatchEnd.TIMEOUT] >= 1)
        api.create(_cm("late"))
        await recorder.wait_for(1)
    assert sleeper.delays == []


async def test_status_writer_patches_only_status(api: ApiServerDouble, kube: KubeApi) -> None:
    api.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.nodemesh.io"},
            "spec": {
                "group": "example.nodemesh.io",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1alpha1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    api.create(
        {
            "apiVersion": "example.nodemesh.io/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"size": 1},
        }
    )
    writer = StatusWriter(kube, WIDGETS)
    conditions = [{"type": "Accepted", "status": "True", "reason": "Accepted"}]
    written = await writer.write("default", "w", {"conditions": conditions, "spec": "ignored"})
    assert written["status"]["conditions"] == conditions
    stored = api.get("example.nodemesh.io/v1alpha1", "Widget", "w", namespace="default")
    assert stored["status"]["conditions"] == conditions
    assert stored["spec"] == {"size": 1}
    with pytest.raises(KubeApiError) as info:
        await writer.write("default", "missing", {"conditions": []})
    assert info.value.status == 404
