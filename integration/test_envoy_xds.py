"""The xDS server against the real Envoy: boot from `meshctl bootstrap`, proxy real requests, follow changes,
survive a NACK. SotW and delta ADS, over TCP and a unix socket."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from controlplane.app import ControlPlane
from controlplane.xds import typeurls
from controlplane.xds.status import ConfigStatus, TypeStatus
from integration.conftest import StartEnvoy, xds_address
from integration.envoy import EnvoyProcess, dynamic_names
from integration.rawconfig import eds_cluster, endpoints, listener, route_config, write_docs
from integration.upstream import Upstream

pytestmark = pytest.mark.envoy

NODE = "node-a"
VARIANTS = [pytest.param(False, id="sotw"), pytest.param(True, id="delta")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mesh:
    """Everything one test drives: the source directory, the control plane, upstreams, Envoys, a client."""

    source: Path
    controlplane: ControlPlane
    upstreams: dict[str, Upstream]
    start_envoy: StartEnvoy
    http: aiohttp.ClientSession

    def port_of(self, upstream: str) -> int:
        return self.upstreams[upstream].port

    async def boot(self, *, delta: bool, unix: bool = False) -> EnvoyProcess:
        await asyncio.wait_for(self.controlplane.ready.wait(), 5)
        envoy = await self.start_envoy(xds_address(self.controlplane, unix=unix), node=NODE, delta=delta)
        await envoy.wait_ready()
        return envoy


@pytest_asyncio.fixture
async def mesh(
    source_dir: Path, upstreams: dict[str, Upstream], controlplane: ControlPlane, start_envoy: StartEnvoy
) -> AsyncIterator[Mesh]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        yield Mesh(
            source=source_dir,
            controlplane=controlplane,
            upstreams=upstreams,
            start_envoy=start_envoy,
            http=http,
        )


def write_base(source: Path, upstreams: dict[str, Upstream]) -> None:
    """Listener "http" -> routes "r" -> cluster c1 (upstream v1)."""
    write_docs(source / "listener.yaml", [listener("http", "r")])
    write_docs(source / "routes.yaml", [route_config("r", [("/", {"c1": 1})])])
    write_docs(source / "clusters.yaml", [eds_cluster("c1")])
    write_docs(source / "endpoints.yaml", [endpoints("c1", [upstreams["v1"].port])])


async def get(http: aiohttp.ClientSession, port: int, path: str = "/") -> str:
    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
        body = await response.text()
        return body if response.status == 200 else f"HTTP {response.status}: {body}"


async def metric_values(http: aiohttp.ClientSession, admin_url: str) -> dict[str, float]:
    """The control plane's /metrics as `name{labels}` -> value."""
    async with http.get(admin_url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def listener_port(envoy: EnvoyProcess, name: str = "http") -> int:
    async def port() -> int:
        return (await envoy.listener_ports()).get(name, 0)

    return await envoy.wait_for(port, what=f"listener {name!r} bound")


async def wait_response(
    envoy: EnvoyProcess, http: aiohttp.ClientSession, port: int, expected: str, path: str = "/"
) -> None:
    async def answered() -> bool:
        return await get(http, port, path) == expected

    await envoy.wait_for(answered, what=f"GET {path} through Envoy to answer {expected!r}")


async def wait_dump(envoy: EnvoyProcess, kind: str, predicate: object, what: str) -> None:
    assert callable(predicate)

    async def holds() -> bool:
        return bool(predicate(dynamic_names(await envoy.config_dump(), kind)))

    await envoy.wait_for(holds, what=what)


def type_status(controlplane: ControlPlane, type_url: str, node: str = NODE) -> TypeStatus:
    [stream] = [s for s in controlplane.proxies.streams() if s.node_id == node]
    return stream.types.get(type_url) or TypeStatus(type_url=type_url)


@pytest.mark.parametrize("unix", [pytest.param(False, id="tcp"), pytest.param(True, id="unix")])
@pytest.mark.parametrize("delta", VARIANTS)
async def test_envoy_boots_from_meshctl_bootstrap_and_proxies(delta: bool, unix: bool, mesh: Mesh) -> None:
    http, upstreams, controlplane = mesh.http, mesh.upstreams, mesh.controlplane
    write_base(mesh.source, upstreams)
    envoy = await mesh.boot(delta=delta, unix=unix)
    port = await listener_port(envoy)
    assert await get(http, port) == "v1"
    assert upstreams["v1"].requests == 1

    dump = await envoy.config_dump()
    assert set(dynamic_names(dump, "listeners")) == {"http"}
    assert set(dynamic_names(dump, "routes")) == {"r"}
    assert set(dynamic_names(dump, "clusters")) == {"c1"}
    assert set(dynamic_names(dump, "endpoints")) == {"c1"}
    # The control plane saw every type ACKed by this node, over the variant asked for.
    [stream] = controlplane.proxies.streams()
    assert stream.variant.value == ("delta" if delta else "sotw")
    for type_url in (typeurls.LISTENER, typeurls.ROUTE, typeurls.CLUSTER, typeurls.ENDPOINT):
        assert stream.types[type_url].status is ConfigStatus.SYNCED, type_url

    # The admin server is ready and its metrics count the proxy and the pushes.
    admin = f"http://127.0.0.1:{controlplane.admin_port}"
    async with http.get(admin + "/readyz") as response:
        assert response.status == 200
    metrics = await metric_values(http, admin)
    variant = "delta" if delta else "sotw"
    assert metrics[f'nodemesh_xds_connected_streams{{variant="{variant}"}}'] == 1
    assert metrics[f'nodemesh_xds_pushes_total{{type="cds",variant="{variant}"}}'] >= 1
    assert metrics['nodemesh_xds_push_latency_seconds_count{type="lds"}'] >= 1
    async with http.get(admin + "/debug/proxies") as response:
        [proxy] = await response.json()
    assert proxy["node"] == NODE
    assert proxy["types"][typeurls.CLUSTER]["status"] == "synced"


@pytest.mark.parametrize("delta", VARIANTS)
async def test_changes_reach_envoy_without_restart(delta: bool, mesh: Mesh) -> None:
    http, source_dir = mesh.http, mesh.source
    v1, v2, v3 = (mesh.port_of(n) for n in ("v1", "v2", "v3"))
    write_base(source_dir, mesh.upstreams)
    envoy = await mesh.boot(delta=delta)
    pid = envoy.pid
    port = await listener_port(envoy)
    assert await get(http, port) == "v1"

    # A new route, to a new cluster with its endpoints.
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), eds_cluster("c2")])
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v1]), endpoints("c2", [v2])])
    write_docs(source_dir / "routes.yaml", [route_config("r", [("/two", {"c2": 1}), ("/", {"c1": 1})])])
    await wait_response(envoy, http, port, "v2", path="/two")
    assert await get(http, port, "/") == "v1"
    dump = await envoy.config_dump()
    assert set(dynamic_names(dump, "clusters")) == {"c1", "c2"}
    routes = dynamic_names(dump, "routes")["r"]["virtual_hosts"][0]["routes"]
    assert [r["match"]["prefix"] for r in routes] == ["/two", "/"]

    # A weight change: everything on "/" moves to c2.
    write_docs(
        source_dir / "routes.yaml", [route_config("r", [("/two", {"c2": 1}), ("/", {"c1": 0, "c2": 100})])]
    )

    def weights(routes: dict[str, dict[str, object]]) -> object:
        route = routes["r"]["virtual_hosts"][0]["routes"][1]["route"]  # type: ignore[index]
        return {c["name"]: c.get("weight") for c in route.get("weighted_clusters", {}).get("clusters", [])}

    await wait_dump(envoy, "routes", lambda r: weights(r) == {"c1": 0, "c2": 100}, what="weights 0/100")
    answers = collections.Counter([await get(http, port) for _ in range(20)])
    assert answers == {"v2": 20}

    # Endpoint added to c1 (route "/" back to c1 alone): Envoy balances over both.
    write_docs(source_dir / "routes.yaml", [route_config("r", [("/two", {"c2": 1}), ("/", {"c1": 1})])])
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v1, v3]), endpoints("c2", [v2])])

    def c1_ports(eds: dict[str, dict[str, object]]) -> set[int]:
        lb_endpoints = eds["c1"]["endpoints"][0]["lb_endpoints"]  # type: ignore[index]
        return {e["endpoint"]["address"]["socket_address"]["port_value"] for e in lb_endpoints}

    await wait_dump(envoy, "endpoints", lambda e: c1_ports(e) == {v1, v3}, what="c1 endpoints v1+v3")
    answers = collections.Counter([await get(http, port) for _ in range(20)])
    assert set(answers) == {"v1", "v3"}

    # Endpoint removed: only v3 is left in c1.
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v3]), endpoints("c2", [v2])])
    await wait_dump(envoy, "endpoints", lambda e: c1_ports(e) == {v3}, what="c1 endpoints v3 only")
    answers = collections.Counter([await get(http, port) for _ in range(10)])
    assert answers == {"v3": 10}

    # Cluster removed (with its route and endpoints): gone from Envoy.
    write_docs(source_dir / "routes.yaml", [route_config("r", [("/", {"c1": 1})])])
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1")])
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v3])])
    await wait_dump(envoy, "clusters", lambda c: set(c) == {"c1"}, what="cluster c2 removed")
    await wait_dump(envoy, "endpoints", lambda e: set(e) == {"c1"}, what="endpoints of c2 removed")
    assert await get(http, port, "/two") == "v3"  # "/two" now falls through to "/" -> c1
    clusters = {c["name"] for c in (await envoy.clusters())["cluster_statuses"]}
    assert "c2" not in clusters

    assert envoy.pid == pid  # all of it without a restart
    assert (await envoy.stats("server.hot_restart_epoch"))["server.hot_restart_epoch"] == 0


async def fetch_csds(controlplane: ControlPlane) -> Any:
    async with grpc.aio.insecure_channel(xds_address(controlplane, unix=False)) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        return await stub.FetchClientStatus(csds_pb2.ClientStatusRequest(), timeout=5)


def csds_type_entry(
    response: csds_pb2.ClientStatusResponse, type_url: str
) -> csds_pb2.ClientConfig.GenericXdsConfig:
    [config] = [c for c in response.config if c.node.id == NODE]
    [entry] = [e for e in config.generic_xds_configs if e.type_url == type_url and e.name == ""]
    return entry


@pytest.mark.parametrize("delta", VARIANTS)
async def test_rejected_config_is_nacked_recorded_and_not_resent(delta: bool, mesh: Mesh) -> None:
    http, source_dir, controlplane = mesh.http, mesh.source, mesh.controlplane
    v1 = mesh.port_of("v1")
    write_base(source_dir, mesh.upstreams)
    envoy = await mesh.boot(delta=delta)
    port = await listener_port(envoy)
    assert await get(http, port) == "v1"
    good_cds = type_status(controlplane, typeurls.CLUSTER)
    assert good_cds.status is ConfigStatus.SYNCED

    # Our parser and consistency check accept it; Envoy's validation does not (connect_timeout must be > 0).
    bad = eds_cluster("bad", connect_timeout="0s")
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), bad])
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v1]), endpoints("bad", [1])])

    async def nacked() -> TypeStatus | None:
        status = type_status(controlplane, typeurls.CLUSTER)
        return status if status.status is ConfigStatus.ERROR else None

    nacked_cds = await envoy.wait_for(nacked, what="Envoy to NACK the CDS update")
    assert nacked_cds is not None
    assert nacked_cds.last_nack is not None
    assert "connecttimeout" in nacked_cds.last_nack.message.lower()  # Envoy's validation error, verbatim
    assert nacked_cds.acked_version == good_cds.acked_version

    # CSDS reports the error for this node and type.
    entry = csds_type_entry(await fetch_csds(controlplane), typeurls.CLUSTER)
    assert entry.config_status == csds_pb2.ERROR
    assert entry.error_state.details == nacked_cds.last_nack.message

    # Envoy keeps serving the last good config.
    assert await get(http, port) == "v1"
    assert "bad" not in dynamic_names(await envoy.config_dump(), "clusters")
    rejected = "cluster_manager.cds.update_rejected"
    assert (await envoy.stats(rejected))[rejected] >= 1
    metrics = await metric_values(http, f"http://127.0.0.1:{controlplane.admin_port}")
    assert metrics['nodemesh_xds_nacks_total{type="cds"}'] >= 1

    # No resend of the rejected version: saving the same content again, and a change of another type (a new
    # route version), produce no further CDS response.
    cds_sent = nacked_cds.responses_sent
    rds_sent = type_status(controlplane, typeurls.ROUTE).responses_sent
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), bad])
    write_docs(source_dir / "routes.yaml", [route_config("r", [("/x", {"c1": 1}), ("/", {"c1": 1})])])

    async def route_acked() -> bool:
        status = type_status(controlplane, typeurls.ROUTE)
        return status.responses_sent > rds_sent and status.status is ConfigStatus.SYNCED

    await envoy.wait_for(route_acked, what="the new route version ACKed")
    await asyncio.sleep(1.0)  # several debounce and poll periods in which a resend loop would show
    assert type_status(controlplane, typeurls.CLUSTER).responses_sent == cds_sent

    # A new version (the fix) is sent once and ACKed.
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), eds_cluster("bad", connect_timeout="2s")])

    async def fixed() -> bool:
        return type_status(controlplane, typeurls.CLUSTER).status is ConfigStatus.SYNCED

    await envoy.wait_for(fixed, what="the fixed CDS version ACKed")
    assert type_status(controlplane, typeurls.CLUSTER).responses_sent >= cds_sent + 1
    await wait_dump(envoy, "clusters", lambda c: "bad" in c, what="fixed cluster in Envoy")
    entry = csds_type_entry(await fetch_csds(controlplane), typeurls.CLUSTER)
    assert entry.config_status == csds_pb2.SYNCED
    assert await get(http, port) == "v1"


def padded_endpoints(cluster: str, ports: list[int], *, pad: int = 4000) -> dict[str, Any]:
    """endpoints() with a large metadata value, so a response that carries this assignment is easy to spot."""
    doc = endpoints(cluster, ports)
    for lb_endpoint in doc["endpoints"][0]["lb_endpoints"]:
        lb_endpoint["metadata"] = {"filter_metadata": {"nodemesh.test": {"pad": "x" * pad}}}
    return doc


def endpoint_ports(eds: dict[str, dict[str, Any]], cluster: str) -> set[int]:
    lb_endpoints = eds[cluster]["endpoints"][0]["lb_endpoints"]
    return {e["endpoint"]["address"]["socket_address"]["port_value"] for e in lb_endpoints}


@pytest.mark.parametrize("delta", VARIANTS)
async def test_envoy_keeps_every_assignment_when_responses_carry_only_the_changed_one(
    delta: bool, mesh: Mesh
) -> None:
    """SotW EDS and RDS responses after the first carry only what changed (as delta ones do): Envoy must keep
    the assignments and route configurations a response leaves out."""
    http, source_dir, controlplane = mesh.http, mesh.source, mesh.controlplane
    v1, v2, v3 = (mesh.port_of(n) for n in ("v1", "v2", "v3"))
    write_docs(source_dir / "listener.yaml", [listener("http", "r"), listener("other", "r2")])
    other_routes = route_config("r2", [("/", {"c2": 1})])
    write_docs(
        source_dir / "routes.yaml",
        [route_config("r", [("/two", {"c2": 1}), ("/three", {"c3": 1}), ("/", {"c1": 1})]), other_routes],
    )
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), eds_cluster("c2"), eds_cluster("c3")])
    others = [padded_endpoints("c2", [v2]), padded_endpoints("c3", [v3])]
    write_docs(source_dir / "endpoints.yaml", [endpoints("c1", [v1]), *others])
    envoy = await mesh.boot(delta=delta)
    port = await listener_port(envoy)
    for path, expected in (("/", "v1"), ("/two", "v2"), ("/three", "v3")):
        await wait_response(envoy, http, port, expected, path=path)

    async def eds_synced() -> TypeStatus | None:
        status = type_status(controlplane, typeurls.ENDPOINT)
        return status if status.status is ConfigStatus.SYNCED else None

    before = await envoy.wait_for(eds_synced, what="endpoints ACKed")
    assert before is not None

    # Two changes of c1 alone, each waited for in Envoy.
    for ports in ([v3], [v1, v3]):
        write_docs(source_dir / "endpoints.yaml", [endpoints("c1", ports), *others])
        await wait_dump(
            envoy, "endpoints", lambda e, p=set(ports): endpoint_ports(e, "c1") == p, what=f"c1 on {ports}"
        )
    after = await envoy.wait_for(eds_synced, what="the changed endpoints ACKed")
    assert after is not None
    assert after.responses_sent >= before.responses_sent + 2
    # The responses carried c1 only: together smaller than one padded assignment of c2 or c3.
    snapshot = controlplane.cache.get(NODE)
    assert snapshot is not None
    padded = len(snapshot.of_type(typeurls.ENDPOINT)["c2"].any_bytes)
    assert after.bytes_sent - before.bytes_sent < padded

    # Envoy still holds every assignment, and routes to each.
    eds = dynamic_names(await envoy.config_dump(), "endpoints")
    assert set(eds) == {"c1", "c2", "c3"}
    assert (endpoint_ports(eds, "c1"), endpoint_ports(eds, "c2"), endpoint_ports(eds, "c3")) == (
        {v1, v3},
        {v2},
        {v3},
    )
    assert await get(http, port, "/two") == "v2"
    assert await get(http, port, "/three") == "v3"
    assert set(collections.Counter([await get(http, port) for _ in range(10)])) <= {"v1", "v3"}

    # A change of route configuration "r" alone: "r2", left out of the response, stays in Envoy.
    other_port = await listener_port(envoy, "other")
    rds_before = type_status(controlplane, typeurls.ROUTE).responses_sent
    write_docs(source_dir / "routes.yaml", [route_config("r", [("/", {"c3": 1})]), other_routes])
    await wait_response(envoy, http, port, "v3", path="/two")
    assert type_status(controlplane, typeurls.ROUTE).responses_sent > rds_before
    assert set(dynamic_names(await envoy.config_dump(), "routes")) == {"r", "r2"}
    assert await get(http, other_port) == "v2"
