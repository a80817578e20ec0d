"""The real `kubectl` binary against the double: what users and the demo do with it."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from apidouble import ApiServerDouble
from tests.apidouble.conftest import HERE

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Kubectl:
    server: str
    cache: Path

    async def __call__(self, *args: str) -> Result:
        assert KUBECTL is not None
        # Asynchronous, because the double serves from this same event loop.
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
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return Result(code=process.returncode, out=out.decode(), err=err.decode())

    async def ok(self, *args: str) -> str:
        result = await self(*args)
        assert result.code == 0, f"kubectl {' '.join(args)} failed: {result.err}"
        return result.out

    async def get_json(self, *args: str) -> dict[str, Any]:
        loaded = json.loads(await self.ok("get", *args, "-o", "json"))
        assert isinstance(loaded, dict)
        return loaded


@pytest.fixture
def kubectl(api: ApiServerDouble, tmp_path: Path) -> Kubectl:
    return Kubectl(server=api.url, cache=tmp_path / "cache")


def _write(path: Path, *docs: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


async def test_apply_crd_then_custom_object_then_reapply_with_a_change(
    api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path
) -> None:
    out = await kubectl.ok("apply", "--validate=false", "-f", str(HERE / "widget-crd.yaml"))
    assert out.strip() == "customresourcedefinition.apiextensions.k8s.io/widgets.example.nodemesh.io created"
    out = await kubectl.ok("apply", "--validate=false", "-f", str(HERE / "widget.yaml"))
    assert out.strip() == "widget.example.nodemesh.io/w1 created"
    widget = await kubectl.get_json("widgets", "w1", "-n", "default")
    assert widget["spec"] == {"size": 3, "color": "red", "parts": [{"id": "a", "weight": 1}]}
    assert "kubectl.kubernetes.io/last-applied-configuration" in widget["metadata"]["annotations"]

    # Re-applying the same file: kubectl still patches `parts` (the server defaulted `weight` inside that
    # list, as a real server would), but the patched object equals the stored one, so nothing is written.
    rv = api.resource_version
    await kubectl.ok("apply", "--validate=false", "-f", str(HERE / "widget.yaml"))
    assert api.resource_version == rv
    changed = yaml.safe_load((HERE / "widget.yaml").read_text())
    changed["spec"] = {"size": 5, "color": "blue"}
    out = await kubectl.ok("apply", "--validate=false", "-f", _write(tmp_path / "w.yaml", changed))
    assert out.strip() == "widget.example.nodemesh.io/w1 configured"
    widget = await kubectl.get_json("wd", "w1")
    # Client-side apply removed `parts` (it was in the last-applied configuration, not in the new one).
    assert widget["spec"] == {"size": 5, "color": "blue"}
    assert widget["metadata"]["generation"] == 2

    table = await kubectl.ok("get", "widgets")
    assert table.split("\n")[0].split() == ["NAME", "SIZE", "AGE"]
    assert table.split("\n")[1].split()[:2] == ["w1", "5"]


async def test_reapply_service_with_changed_port_uses_strategic_merge(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9000}],
        },
    }
    path = tmp_path / "svc.yaml"
    await kubectl.ok("apply", "--validate=false", "-f", _write(path, service))
    created = await kubectl.get_json("service", "web")
    service["spec"]["ports"] = [{"name": "http", "port": 81, "targetPort": 8080}]
    out = await kubectl.ok("apply", "--validate=false", "-f", _write(path, service))
    assert out.strip() == "service/web configured"
    updated = await kubectl.get_json("svc", "web")
    assert updated["spec"]["ports"] == [{"name": "http", "port": 81, "protocol": "TCP", "targetPort": 8080}]
    assert updated["spec"]["clusterIP"] == created["spec"]["clusterIP"]


async def test_server_dry_run_stores_nothing(api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "1"}}
    rv = api.resource_version
    out = await kubectl.ok("apply", "--dry-run=server", "-f", _write(tmp_path / "cm.yaml", cm))
    assert out.strip() == "configmap/dry created (server dry run)"
    assert api.resource_version == rv
    result = await kubectl("get", "configmap", "dry")
    assert result.code != 0
    assert 'configmaps "dry" not found' in result.err


async def test_invalid_custom_object_is_reported_like_a_real_server(
    api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path, widget_crd: dict[str, Any], widget: dict[str, Any]
) -> None:
    api.create(widget_crd)
    widget["spec"] = {"size": 30}
    result = await kubectl("apply", "--validate=false", "-f", _write(tmp_path / "bad.yaml", widget))
    assert result.code != 0
    assert (
        'The Widget "w1" is invalid: spec.size: Invalid value: 30: spec.size in body should be less than or '
        "equal to 10" in result.err
    )
    # With kubectl's default validation the server checks fields strictly: unknown ones are refused.
    widget["spec"] = {"size": 3, "bogus": True}
    result = await kubectl("apply", "-f", _write(tmp_path / "unknown.yaml", widget))
    assert result.code != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in result.err


async def test_label_get_and_delete(api: ApiServerDouble, kubectl: Kubectl, tmp_path: Path) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {}})
    assert (await kubectl.ok("label", "configmap", "a", "team=x")).strip() == "configmap/a labeled"
    listed = await kubectl.get_json("configmaps", "-l", "team=x")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    yaml_out = yaml.safe_load(await kubectl.ok("get", "configmap", "a", "-o", "yaml"))
    assert yaml_out["metadata"]["labels"] == {"team": "x"}
    assert (await kubectl.ok("delete", "configmap", "a")).strip() == 'configmap "a" deleted'
    assert api.list_objects("v1", "ConfigMap", "default")[0]["metadata"]["name"] == "b"


async def test_kubeconfig_written_by_the_double_works(api: ApiServerDouble, tmp_path: Path) -> None:
    assert KUBECTL is not None
    config = api.kubeconfig(tmp_path / "kubeconfig", namespace="kube-system")
    process = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(config),
        "--cache-dir",
        str(tmp_path / "c"),
        "get",
        "configmaps",
        "-o",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["items"] == []


async def test_typed_generators_sending_protobuf_work(api: ApiServerDouble, kubectl: Kubectl) -> None:
    assert (await kubectl.ok("create", "namespace", "team")).strip() == "namespace/team created"
    await kubectl.ok("create", "configmap", "c1", "-n", "team", "--from-literal=a=b")
    await kubectl.ok("create", "secret", "generic", "s1", "-n", "team", "--from-literal=p=q")
    await kubectl.ok("create", "serviceaccount", "robot", "-n", "team")
    namespace = api.get("v1", "Namespace", "team")
    assert namespace["status"] == {"phase": "Active"}
    assert "generateName" not in namespace["metadata"]
    assert api.get("v1", "ConfigMap", "c1", namespace="team")["data"] == {"a": "b"}
    assert api.get("v1", "Secret", "s1", namespace="team")["data"] == {"p": "cQ=="}
    assert api.get("v1", "ServiceAccount", "robot", namespace="team")["metadata"]["namespace"] == "team"
