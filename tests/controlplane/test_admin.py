from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from controlplane.admin import AdminError, AdminServer
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.configdump import ConfigDump
from tests.xds import builders as b


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def test_health_readiness_metrics_and_debug() -> None:
    registry = CollectorRegistry()
    pushes = Counter("nodemesh_test_pushes", "pushes", registry=registry)
    pushes.inc(3)
    ready = asyncio.Event()
    pages = {"things": lambda: {"count": 2}}
    async with (
        AdminServer(address="127.0.0.1:0", registry=registry, readiness=ready, debug_pages=pages) as admin,
        aiohttp.ClientSession() as session,
    ):
        assert admin.port > 0
        assert await get(session, admin.url + "/healthz") == (200, "ok\n")
        status, body = await get(session, admin.url + "/readyz")
        assert status == 503
        assert "no snapshot" in body
        ready.set()
        assert (await get(session, admin.url + "/readyz"))[0] == 200
        status, body = await get(session, admin.url + "/metrics")
        assert status == 200
        assert "nodemesh_test_pushes_total 3.0" in body
        status, body = await get(session, admin.url + "/debug")
        assert "/debug/things" in body
        async with session.get(admin.url + "/debug/things") as response:
            assert await response.json() == {"count": 2}
        assert (await get(session, admin.url + "/debug/nope"))[0] == 404


async def test_port_in_use_is_a_clear_error() -> None:
    registry = CollectorRegistry()
    async with AdminServer(address="127.0.0.1:0", registry=registry, readiness=asyncio.Event()) as first:
        second = AdminServer(address=f"127.0.0.1:{first.port}", registry=registry, readiness=asyncio.Event())
        with pytest.raises(AdminError, match="cannot listen"):
            await second.__aenter__()


async def test_debug_config_serves_a_nodes_resources_and_clear_errors() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("node-a", b.mesh(cache.pool, {"c1": (1,)}))
    async with (
        AdminServer(
            address="127.0.0.1:0",
            registry=CollectorRegistry(),
            readiness=asyncio.Event(),
            config=ConfigDump(snapshots=cache),
        ) as admin,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(
            admin.url + "/debug/config", params={"node": "node-a", "type": "eds"}
        ) as response:
            assert response.status == 200
            document = await response.json()
        assert document["node"] == "node-a"
        assert [e["name"] for e in document["resources"]] == ["c1"]
        assert document["resources"][0]["resource"]["cluster_name"] == "c1"
        async with session.get(
            admin.url + "/debug/config", params={"node": "nope", "type": "eds"}
        ) as response:
            assert response.status == 404
            assert "node-a" in (await response.json())["error"]
        async with session.get(admin.url + "/debug/config", params={"node": "node-a"}) as response:
            assert response.status == 400
        _, body = await get(session, admin.url + "/debug")
        assert "/debug/config" in body


async def test_debug_config_is_absent_without_a_config_view() -> None:
    async with (
        AdminServer(address="127.0.0.1:0", registry=CollectorRegistry(), readiness=asyncio.Event()) as admin,
        aiohttp.ClientSession() as session,
    ):
        assert (await get(session, admin.url + "/debug/config?node=a&type=cds"))[0] == 404
