"""The control plane's RBAC grants exactly what its code uses.

Two readings of the code: its tables (the kinds the Kubernetes source watches, the kinds whose status it
writes), compared with the ClusterRole both ways; and its behaviour (the real source and status writer
run against the API server double, every request they make must be allowed by the rules).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest_asyncio

from apidouble import ApiServerDouble
from apidouble.paths import parse_resource_path
from controlplane.sources.events import SourceUpdate
from controlplane.sources.kube.client import ClientSettings, KubeApi, connect
from controlplane.sources.kube.kinds import MESH_KINDS
from controlplane.sources.kube.source import KubeSource, KubeSourceSettings
from controlplane.sources.kube.writeback import KubeStatusPatcher
from tests.manifests.layout import (
    CRDS,
    SAMPLES,
    Doc,
    documents,
    find,
    install_documents,
    is_raw_envoy,
    yaml_files,
)
from tests.manifests.standins import STAND_IN_KINDS, gateway_route_crd

DOCS = install_documents()
CLUSTER_ROLE = find(DOCS, "ClusterRole", "nodemesh-controlplane")
ROLE = find(DOCS, "Role", "nodemesh-controlplane")
ACCOUNT = ("nodemesh-system", "nodemesh-controlplane")
CA_SECRET: Final = "nodemesh-ca"

# (API group, resource or resource/subresource, verb)
Grant = tuple[str, str, str]

# Node authorization in the CA (DESIGN.md §4): a node agent's token is checked with a TokenReview.
TOKEN_REVIEW: Final[Grant] = ("authentication.k8s.io", "tokenreviews", "create")


def _grants(rules: list[Doc]) -> set[Grant]:
    out: set[Grant] = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def _code_grants() -> set[Grant]:
    """What the code's tables say it needs: informers list and watch, status writers patch `/status`."""
    needed = {TOKEN_REVIEW}
    for kind in MESH_KINDS:
        resource = kind.resource
        needed |= {(resource.group, resource.plural, "list"), (resource.group, resource.plural, "watch")}
        if kind.status_owned:
            needed.add((resource.group, f"{resource.plural}/status", "patch"))
    return needed


def test_the_cluster_role_grants_exactly_what_the_code_tables_need() -> None:
    granted = _grants(CLUSTER_ROLE["rules"])
    needed = _code_grants()
    assert not needed - granted, f"missing from the ClusterRole: {sorted(needed - granted)}"
    assert not granted - needed, f"granted but unused by the code: {sorted(granted - needed)}"


def test_the_cluster_role_has_no_wildcards_names_or_urls() -> None:
    for rule in CLUSTER_ROLE["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule


def test_the_cluster_role_never_writes_a_spec_or_reads_secrets() -> None:
    for group, resource, verb in _grants(CLUSTER_ROLE["rules"]):
        if verb in ("patch", "update"):
            assert resource.endswith("/status"), (group, resource, verb)
        assert verb not in ("delete", "deletecollection", "escalate", "bind", "impersonate")
        assert resource != "secrets"


def test_the_namespaced_role_only_touches_the_ca_secret() -> None:
    assert ROLE["metadata"]["namespace"] == ACCOUNT[0]
    named = [r for r in ROLE["rules"] if r.get("resourceNames")]
    unnamed = [r for r in ROLE["rules"] if not r.get("resourceNames")]
    assert _grants(named) == {("", "secrets", "get"), ("", "secrets", "update")}
    assert all(r["resourceNames"] == [CA_SECRET] for r in named)
    # `create` cannot be restricted by name; nothing that could read other Secrets (list, watch) is granted.
    assert _grants(unnamed) == {("", "secrets", "create")}


def test_both_roles_are_bound_to_the_control_planes_account_only() -> None:
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = find(DOCS, kind, "nodemesh-controlplane")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": "nodemesh-controlplane",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": ACCOUNT[1], "namespace": ACCOUNT[0]}
        ]
    deployment = find(DOCS, "Deployment", "nodemesh-controlplane")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == ACCOUNT[1]


def test_nothing_grants_the_node_agent_any_api_access() -> None:
    subjects = [s for d in DOCS if d["kind"] in ("ClusterRoleBinding", "RoleBinding") for s in d["subjects"]]
    assert all(s["name"] != "nodemesh-node" for s in subjects)


# -- behaviour: the real source and status writer against the double ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    method: str
    group: str
    resource: str  # plural, or plural/subresource
    collection: bool


def _verbs(request: Request) -> set[str]:
    """The RBAC verbs a request needs (a GET of a collection is a list or, with ?watch, a watch)."""
    if request.method == "GET":
        return {"list", "watch"} if request.collection else {"get"}
    return {"POST": {"create"}, "PATCH": {"patch"}, "PUT": {"update"}, "DELETE": {"delete"}}[request.method]


class _Sink:
    async def publish(self, update: SourceUpdate) -> None:
        pass


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[ApiServerDouble, KubeApi]]:
    async with ApiServerDouble(host="127.0.0.1", port=0, service_cidr="198.19.128.0/24") as api:
        for kind in STAND_IN_KINDS:
            api.registry.register(kind)
        api.create(gateway_route_crd("httproutes", "HTTPRoute"))
        api.create(gateway_route_crd("grpcroutes", "GRPCRoute"))
        # The samples use the install's namespace as the mesh's root namespace.
        for doc in DOCS:
            if doc["kind"] == "Namespace":
                api.create(doc)
        for path in yaml_files(CRDS):
            for doc in documents(path):
                if doc["kind"] == "CustomResourceDefinition":
                    api.create(doc)
        for path in yaml_files(SAMPLES):
            if not is_raw_envoy(path):
                for doc in documents(path):
                    api.apply(doc)
        async with connect(ClientSettings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))) as kube:
            yield api, kube


async def test_every_request_the_source_and_status_writer_make_is_allowed(
    cluster: tuple[ApiServerDouble, KubeApi],
) -> None:
    api, kube = cluster
    source = KubeSource(KubeSourceSettings(), _Sink(), api=kube)
    task = asyncio.create_task(source.run())
    try:
        async with asyncio.timeout(30):
            await source.synced.wait()
            await api.wait_for_watches(lambda n: n >= len(MESH_KINDS))
        patcher = KubeStatusPatcher(kube)
        written = 0
        for ref, obj in list(source.status_objects()):
            meta = obj.get("metadata")
            assert isinstance(meta, dict)
            await patcher.patch_status(ref, {}, resource_version=str(meta["resourceVersion"]))
            written += 1
        assert written > 0, "the samples hold no object whose status the mesh writes"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    requests: set[Request] = set()
    for method, path in api.requests:
        parsed = parse_resource_path(path)
        assert parsed is not None, f"a request outside the resource API: {method} {path}"
        resource = f"{parsed.plural}/{parsed.subresource}" if parsed.subresource else parsed.plural
        requests.add(
            Request(method=method, group=parsed.group, resource=resource, collection=not parsed.name)
        )
    granted = _grants(CLUSTER_ROLE["rules"])
    denied = sorted(
        (r.method, r.group, r.resource, verb)
        for r in requests
        for verb in _verbs(r)
        if (r.group, r.resource, verb) not in granted
    )
    assert not denied, f"the ClusterRole does not allow: {denied}"
    patched = {r.resource for r in requests if r.method == "PATCH"}
    assert patched == {f"{k.resource.plural}/status" for k in MESH_KINDS if k.status_owned} & {
        f"{plural}/status" for plural in _plurals_with_samples()
    }


def _plurals_with_samples() -> set[str]:
    kinds = {d["kind"] for p in yaml_files(SAMPLES) if not is_raw_envoy(p) for d in documents(p)}
    return {k.resource.plural for k in MESH_KINDS if k.resource.kind in kinds}
