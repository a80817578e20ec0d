"""The demo's application: who runs where, and deploying it into a running mesh.

shop (enrolled)   reviews-v1 (node1) and reviews-v2 (node2) behind Service `reviews`, plus `reviews-v1` /
                  `reviews-v2` for routing; ratings-db (node1), a raw TCP service
web (enrolled)    frontend (node1) and batch (node2), each with its own service account
outside (never)   legacy-client (node2): a pod outside the mesh, for the STRICT mTLS step
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from demo.kubectl import KubectlRunner
from integration.mesh import MeshHarness, MeshPod, MeshService, Port
from integration.meshobjects import MESH_LABEL

TRUST_DOMAIN: Final = "cluster.local"
ENROLLED: Final = ("shop", "web")
OUTSIDE: Final = "outside"
REVIEWS_PORT: Final = 9080
DB_PORT: Final = 5432
POD_HTTP_PORT: Final = 8080


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSpec:
    """One pod of the application: `key` is its short name (`python -m demo exec frontend -- ...`)."""

    key: str
    namespace: str
    name: str
    node: int  # index into the mesh's nodes
    service_account: str
    labels: Mapping[str, str]
    kind: str = "http"
    port: int = POD_HTTP_PORT

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    namespace: str
    name: str
    selector: Mapping[str, str]
    port: Port


PODS: Final[tuple[PodSpec, ...]] = (
    PodSpec(
        key="reviews-v1",
        namespace="shop",
        name="reviews-v1-6c8b9",
        node=0,
        service_account="reviews",
        labels={"app": "reviews", "version": "v1"},
    ),
    PodSpec(
        key="reviews-v2",
        namespace="shop",
        name="reviews-v2-7f4d2",
        node=1,
        service_account="reviews",
        labels={"app": "reviews", "version": "v2"},
    ),
    PodSpec(
        key="ratings-db",
        namespace="shop",
        name="ratings-db-0",
        node=0,
        service_account="ratings-db",
        labels={"app": "ratings-db"},
        kind="tcp",
        port=DB_PORT,
    ),
    PodSpec(
        key="frontend",
        namespace="web",
        name="frontend-5b7c8",
        node=0,
        service_account="frontend",
        labels={"app": "frontend"},
    ),
    PodSpec(
        key="batch",
        namespace="web",
        name="batch-8d2f1",
        node=1,
        service_account="batch",
        labels={"app": "batch"},
    ),
    PodSpec(
        key="legacy-client",
        namespace=OUTSIDE,
        name="legacy-client",
        node=1,
        service_account="default",
        labels={"app": "legacy-client"},
    ),
)

_HTTP: Final = Port(name="http", port=REVIEWS_PORT, target=POD_HTTP_PORT)
SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec(namespace="shop", name="reviews", selector={"app": "reviews"}, port=_HTTP),
    ServiceSpec(
        namespace="shop", name="reviews-v1", selector={"app": "reviews", "version": "v1"}, port=_HTTP
    ),
    ServiceSpec(
        namespace="shop", name="reviews-v2", selector={"app": "reviews", "version": "v2"}, port=_HTTP
    ),
    ServiceSpec(
        namespace="shop",
        name="ratings-db",
        selector={"app": "ratings-db"},
        port=Port(name="tcp", port=DB_PORT),
    ),
)


def spec(key: str) -> PodSpec:
    return next(p for p in PODS if p.key == key)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoApp:
    """The deployed application: pods by short name, Services by name (all in `shop`)."""

    pods: Mapping[str, MeshPod]
    services: Mapping[str, MeshService]

    def pod(self, key: str) -> MeshPod:
        return self.pods[key]

    def url(self, service: str, path: str = "/") -> str:
        return self.services[service].url(path)

    def tcp(self, service: str) -> str:
        found = self.services[service]
        return f"tcp://{found.cluster_ip}:{found.ports[0].port}"

    def variant(self, pod_ref: str | None) -> str:
        """`v1`/`v2` for a reviews pod's "ns/name", else the reference itself ("none" for nobody)."""
        for key in ("reviews-v1", "reviews-v2"):
            if self.pods[key].ref == pod_ref:
                return key.removeprefix("reviews-")
        return pod_ref or "none"


async def deploy(mesh: MeshHarness, kubectl: KubectlRunner) -> DemoApp:
    """Namespaces (enrolled with `kubectl label`, as a user would), pods and Services. Returns once the mesh
    has the application (callers wait for sync)."""
    for namespace in (*ENROLLED, OUTSIDE):
        mesh.ensure_namespace(namespace)
    await kubectl.run("label", "namespace", *ENROLLED, f"{MESH_LABEL}=enabled", "--overwrite")
    pods: dict[str, MeshPod] = {}
    for pod in PODS:
        pods[pod.key] = await mesh.add_pod(
            pod.namespace,
            pod.name,
            node=mesh.nodes[pod.node],
            labels=pod.labels,
            service_account=pod.service_account,
            kind=pod.kind,
            ports=(pod.port,),
        )
    services: dict[str, MeshService] = {}
    for service in SERVICES:
        services[service.name] = await mesh.add_service(
            service.namespace, service.name, service.selector, (service.port,)
        )
    return DemoApp(pods=pods, services=services)
