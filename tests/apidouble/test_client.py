"""The double through kubernetes-asyncio (the kube source's client) and raw HTTP where the wire matters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from apidouble import ApiServerDouble, TokenUser

MERGE = "application/merge-patch+json"
GROUP, VERSION, PLURAL = "example.nodemesh.io", "v1alpha1", "widgets"


def _cm(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"k": name},
    }


def _status(exc: ApiException) -> dict[str, Any]:
    loaded = json.loads(exc.body or b"{}")
    assert isinstance(loaded, dict)
    return loaded


async def _events(url: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Read a raw watch stream until the server ends it (or `limit` events arrive)."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        async for line in response.content:
            events.append(json.loads(line))
            if limit is not None and len(events) >= limit:
                break
    return events


async def _wait_for_watchers(api: ApiServerDouble, count: int) -> None:
    async with asyncio.timeout(5):
        await api.wait_for_watches(lambda n: n >= count)


async def test_list_resource_version_is_the_store_rv(api: ApiServerDouble, k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    namespaces = await core.list_namespace()
    assert sorted(n.metadata.name for n in namespaces.items) == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
    ]
    assert namespaces.metadata.resource_version == str(api.resource_version)
    await core.create_namespaced_config_map("default", _cm("a"))
    listed = await core.list_namespaced_config_map("default")
    assert listed.metadata.resource_version == str(api.resource_version)
    assert listed.items[0].metadata.resource_version == str(api.resource_version)


async def test_create_get_conflict_and_generate_name(k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    created = await core.create_namespaced_config_map("default", _cm("a"))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    fetched = await core.read_namespaced_config_map("a", "default")
    assert fetched.metadata.resource_version == created.metadata.resource_version
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map("default", _cm("a"))
    assert info.value.status == 409
    assert _status(info.value)["reason"] == "AlreadyExists"
    generated = await core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "gen-"}, "data": {}}
    )
    assert generated.metadata.name.startswith("gen-") and len(generated.metadata.name) == 9
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("nope", "default")
    assert missing.value.status == 404
    assert _status(missing.value)["message"] == 'configmaps "nope" not found'
    with pytest.raises(ApiException) as no_namespace:
        await core.create_namespaced_config_map("ghost", _cm("x", "ghost"))
    assert no_namespace.value.status == 404


async def test_update_with_stale_resource_version_conflicts(k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    created = await core.create_namespaced_config_map("default", _cm("a"))
    body = created.to_dict()
    body["data"] = {"k": "v2"}
    updated = await core.replace_namespaced_config_map(
        "a", "default", k8s.sanitize_for_serialization(created) | {"data": {"k": "v2"}}
    )
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    stale = k8s.sanitize_for_serialization(created) | {"data": {"k": "v3"}}
    with pytest.raises(ApiException) as info:
        await core.replace_namespaced_config_map("a", "default", stale)
    assert info.value.status == 409
    assert _status(info.value)["reason"] == "Conflict"
    # An update that changes nothing writes nothing.
    same = await core.replace_namespaced_config_map("a", "default", k8s.sanitize_for_serialization(updated))
    assert same.metadata.resource_version == updated.metadata.resource_version


async def test_continue_tokens_page_a_consistent_snapshot(
    api: ApiServerDouble, k8s: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(k8s)
    for i in range(5):
        await core.create_namespaced_config_map("default", _cm(f"cm{i}"))
    first = await core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["cm0", "cm1"]
    assert first.metadata.remaining_item_count == 3
    # Changes after the first page do not show in later pages: they see the first page's snapshot.
    await core.create_namespaced_config_map("default", _cm("cm2a"))
    await core.delete_namespaced_config_map("cm4", "default")
    second = await core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    third = await core.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in second.items + third.items] == ["cm2", "cm3", "cm4"]
    assert third.metadata._continue is None
    assert second.metadata.resource_version == first.metadata.resource_version
    # Once history is compacted past the snapshot, the token is expired.
    api.compact()
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert info.value.status == 410
    assert _status(info.value)["reason"] == "Expired"


async def test_list_at_exact_old_resource_version_and_410_once_compacted(
    api: ApiServerDouble, k8s: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(k8s)
    await core.create_namespaced_config_map("default", _cm("old"))
    rv = str(api.resource_version)
    await core.create_namespaced_config_map("default", _cm("new"))
    at_rv = await core.list_namespaced_config_map(
        "default", resource_version=rv, resource_version_match="Exact"
    )
    assert [c.metadata.name for c in at_rv.items] == ["old"]
    api.compact()
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_config_map("default", resource_version=rv, resource_version_match="Exact")
    assert info.value.status == 410


async def test_label_and_field_selectors_on_list(k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    await core.create_namespaced_config_map("default", _cm("a", app="web", tier="front"))
    await core.create_namespaced_config_map("default", _cm("b", app="web", tier="back"))
    await core.create_namespaced_config_map("default", _cm("c", app="db"))

    async def names(**kwargs: Any) -> list[str]:
        listed = await core.list_config_map_for_all_namespaces(**kwargs)
        return [c.metadata.name for c in listed.items]

    assert await names(label_selector="app=web") == ["a", "b"]
    assert await names(label_selector="app!=web") == ["c"]
    assert await names(label_selector="tier in (front,mid)") == ["a"]
    assert await names(label_selector="tier notin (front)") == ["b", "c"]
    assert await names(label_selector="tier") == ["a", "b"]
    assert await names(label_selector="!tier") == ["c"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="metadata.namespace=kube-system") == []


async def test_watch_replays_from_resource_version_then_streams(
    api: ApiServerDouble, k8s: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(k8s)
    await core.create_namespaced_config_map("default", _cm("before"))
    start = (await core.list_namespaced_config_map("default")).metadata.resource_version
    await core.create_namespaced_config_map("default", _cm("a"))
    await core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=5
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 2:
                await core.delete_namespaced_config_map("a", "default")
            if len(seen) == 3:
                break
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


async def test_watch_without_resource_version_starts_with_current_state(api: ApiServerDouble) -> None:
    api.create(_cm("x"))
    events = await _events(f"{api.url}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=0.3")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "x")]


async def test_watch_sends_bookmarks_with_the_current_resource_version(api: ApiServerDouble) -> None:
    api.create(_cm("x"))
    rv = api.resource_version
    query = f"watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
    events = await _events(f"{api.url}/api/v1/namespaces/default/configmaps?{query}", limit=1)
    assert events == [
        {
            "type": "BOOKMARK",
            "object": {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}},
        }
    ]


async def test_watch_timeout_seconds_ends_the_stream(api: ApiServerDouble) -> None:
    rv = api.resource_version
    events = await _events(f"{api.url}/api/v1/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=0.2")
    assert events == []


async def test_watch_from_compacted_rv_gets_410_inside_the_stream(
    api: ApiServerDouble, k8s: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(k8s)
    old = api.resource_version
    api.create(_cm("x"))
    api.compact()
    events = await _events(f"{api.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old}")
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["kind"] == "Status"
    assert events[0]["object"]["code"] == 410
    # kubernetes-asyncio turns it into an ApiException(410) when it may not silently retry.
    with pytest.raises(ApiException) as info:
        async with watch.Watch() as w:
            async for _ in w.stream(
                core.list_namespaced_config_map, "default", resource_version=str(old), timeout_seconds=5
            ):
                pass
    assert info.value.status == 410


async def test_cut_watches_ends_open_streams(api: ApiServerDouble) -> None:
    rv = api.resource_version
    reader = asyncio.create_task(_events(f"{api.url}/api/v1/configmaps?watch=1&resourceVersion={rv}"))
    await _wait_for_watchers(api, 1)
    api.create(_cm("x"))
    await asyncio.sleep(0.05)
    assert api.cut_watches() == 1
    events = await asyncio.wait_for(reader, 5)
    assert [e["type"] for e in events] == ["ADDED"]
    assert api.open_watches == 0


async def test_watch_with_label_selector_sees_relabel_as_delete(api: ApiServerDouble) -> None:
    api.create(_cm("x", app="web"))
    rv = api.resource_version
    reader = asyncio.create_task(
        _events(
            f"{api.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb",
            limit=2,
        )
    )
    await _wait_for_watchers(api, 1)
    api.patch("v1", "ConfigMap", "x", {"metadata": {"labels": {"app": "db"}}}, namespace="default")
    api.patch("v1", "ConfigMap", "x", {"metadata": {"labels": {"app": "web"}}}, namespace="default")
    events = await asyncio.wait_for(reader, 5)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


async def test_disconnected_watch_client_is_unregistered(api: ApiServerDouble) -> None:
    rv = api.resource_version
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{api.url}/api/v1/configmaps?watch=1&resourceVersion={rv}")
        await _wait_for_watchers(api, 1)
        response.close()
    async with asyncio.timeout(5):
        await api.wait_for_watches(lambda n: n == 0)


@pytest.fixture
async def widgets(api: ApiServerDouble, widget_crd: dict[str, Any]) -> AsyncIterator[None]:
    api.create(widget_crd)
    yield


@pytest.mark.usefixtures("widgets")
async def test_custom_resource_status_subresource(k8s: client.ApiClient, widget: dict[str, Any]) -> None:
    custom: Any = client.CustomObjectsApi(k8s)
    body = widget | {"status": {"conditions": [{"type": "Ready"}]}}
    created = await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert "status" not in created, "a create does not set status on a kind with the status subresource"
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["color"] == "red", "schema defaults are applied"
    status = {"status": {"conditions": [{"type": "Accepted", "status": "True"}]}, "spec": {"size": 9}}
    patched = await custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w1", status, _content_type=MERGE
    )
    assert patched["status"] == status["status"]
    assert patched["spec"]["size"] == 3, "a status write leaves spec alone"
    assert patched["metadata"]["generation"] == 1
    main = await custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w1",
        {"spec": {"size": 4}, "status": {"conditions": []}},
        _content_type=MERGE,
    )
    assert main["spec"]["size"] == 4
    assert main["status"] == status["status"], "a main-resource write leaves status alone"
    assert main["metadata"]["generation"] == 2
    fetched = await custom.get_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "w1")
    assert fetched["status"] == status["status"]


@pytest.mark.usefixtures("widgets")
async def test_custom_resource_schema_violation_is_422_with_field_paths(
    k8s: client.ApiClient, widget: dict[str, Any]
) -> None:
    custom: Any = client.CustomObjectsApi(k8s)
    bad = widget | {"spec": {"size": 50, "color": "pink"}}
    with pytest.raises(ApiException) as info:
        await custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, bad)
    assert info.value.status == 422
    status = _status(info.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Widget.example.nodemesh.io "w1" is invalid: [spec.size: Invalid value: 50: spec.size in body should '
        'be less than or equal to 10, spec.color: Unsupported value: "pink": supported values: "red", '
        '"green", "blue"]'
    )
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.size", "spec.color"]


@pytest.mark.usefixtures("widgets")
async def test_dry_run_validates_without_storing(
    api: ApiServerDouble, k8s: client.ApiClient, widget: dict[str, Any]
) -> None:
    custom: Any = client.CustomObjectsApi(k8s)
    rv = api.resource_version
    result = await custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget, dry_run="All"
    )
    assert result["metadata"]["name"] == "w1"
    assert api.resource_version == rv
    assert api.list_objects(f"{GROUP}/{VERSION}", "Widget", "default") == []
    with pytest.raises(ApiException) as info:
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, widget | {"spec": {"size": 0}}, dry_run="All"
        )
    assert info.value.status == 422
    core: Any = client.CoreV1Api(k8s)
    await core.create_namespaced_config_map("default", _cm("a"))
    await core.delete_namespaced_config_map("a", "default", dry_run="All")
    assert (await core.read_namespaced_config_map("a", "default")).metadata.name == "a"


async def test_deleting_a_crd_removes_its_objects_and_kind(
    api: ApiServerDouble, k8s: client.ApiClient, widget_crd: dict[str, Any], widget: dict[str, Any]
) -> None:
    api.create(widget_crd)
    api.create(widget)
    ext: Any = client.ApiextensionsV1Api(k8s)
    crd = await ext.read_custom_resource_definition("widgets.example.nodemesh.io")
    assert {c.type: c.status for c in crd.status.conditions} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    await ext.delete_custom_resource_definition("widgets.example.nodemesh.io")
    custom: Any = client.CustomObjectsApi(k8s)
    with pytest.raises(ApiException) as info:
        await custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert info.value.status == 404


async def test_finalizers_hold_deletion_until_removed(api: ApiServerDouble, k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    cm = _cm("f")
    cm["metadata"]["finalizers"] = ["example.io/hold"]
    await core.create_namespaced_config_map("default", cm)
    await core.delete_namespaced_config_map("f", "default")
    held = await core.read_namespaced_config_map("f", "default")
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_config_map("f", "default")
    assert info.value.status == 404


async def test_deleting_a_namespace_deletes_its_objects(api: ApiServerDouble, k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    await core.create_namespace({"metadata": {"name": "team"}})
    await core.create_namespaced_config_map("team", _cm("a", "team"))
    await core.delete_namespace("team")
    assert "team" not in [n.metadata.name for n in (await core.list_namespace()).items]
    assert (
        await core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=team")
    ).items == []


async def test_service_gets_a_cluster_ip_and_defaults(k8s: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(k8s)
    svc = await core.create_namespaced_service(
        "default",
        {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    )
    assert svc.spec.cluster_ip.startswith("10.96.")
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port == 80
    other = await core.create_namespaced_service(
        "default", {"metadata": {"name": "db"}, "spec": {"ports": []}}
    )
    assert other.spec.cluster_ip != svc.spec.cluster_ip


async def test_token_review(api: ApiServerDouble, k8s: client.ApiClient) -> None:
    api.add_token("node-a-token", TokenUser(username="system:node:a", groups=("system:nodes",)))
    auth: Any = client.AuthenticationV1Api(k8s)
    good = await auth.create_token_review({"spec": {"token": "node-a-token"}})
    assert good.status.authenticated is True
    assert good.status.user.username == "system:node:a"
    assert good.status.user.groups == ["system:nodes"]
    bad = await auth.create_token_review({"spec": {"token": "nope"}})
    assert not bad.status.authenticated


async def test_json_patch_and_strategic_patch_over_http(api: ApiServerDouble) -> None:
    api.create(_cm("p"))
    url = f"{api.url}/api/v1/namespaces/default/configmaps/p"
    async with aiohttp.ClientSession() as session:
        ops = [{"op": "add", "path": "/data/x", "value": "1"}]
        async with session.patch(url, json=ops, headers={"Content-Type": "application/json-patch+json"}) as r:
            assert r.status == 200
            assert (await r.json())["data"] == {"k": "p", "x": "1"}
        async with session.patch(
            url, data=b"{}", headers={"Content-Type": "application/apply-patch+yaml"}
        ) as r:
            assert r.status == 415
            assert (await r.json())["kind"] == "Status"


async def test_fixture_helpers_apply_and_keep_status(api: ApiServerDouble) -> None:
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": "198.18.1.2"},
    }
    created = api.apply(pod)
    assert created["status"]["podIP"] == "198.18.1.2", "fixtures may describe running objects"
    assert created["spec"]["serviceAccountName"] == "default"
    pod["status"] = {"phase": "Running", "podIP": "198.18.1.3"}
    pod["metadata"]["labels"] = {"app": "x"}
    updated = api.apply(pod)
    assert updated["status"]["podIP"] == "198.18.1.3"
    assert updated["metadata"]["labels"] == {"app": "x"}
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
