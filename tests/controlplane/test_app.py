from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from controlplane.admin import AdminError
from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from tests.sources.test_rawdir import cluster, write


def settings(source: Path, admin: str = "127.0.0.1:0") -> Settings:
    return Settings(
        source=SourceSpec(kind=SourceKind.DIR, path=source),
        xds_listen=("127.0.0.1:0",),
        admin_listen=admin,
        poll_interval=0.02,
        debounce_quiet=0.01,
        debounce_max=0.05,
        shutdown_grace=0.1,
    )


async def test_runs_every_component_and_stops_cleanly(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", cluster("a"))
    async with ControlPlane(settings(tmp_path)).running() as controlplane:
        assert controlplane.xds_ports[0] > 0
        await asyncio.wait_for(controlplane.ready.wait(), 5)
        snapshot = controlplane.cache.get("any")
        assert snapshot is not None and len(snapshot) == 1
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{controlplane.admin_port}/debug/source") as response,
        ):
            assert await response.json() == []
    # The exit stack closed the servers: nothing listens any more.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", controlplane.xds_ports[0])


async def test_startup_failure_surfaces_from_running(tmp_path: Path) -> None:
    async with ControlPlane(settings(tmp_path)).running() as first:
        second = ControlPlane(settings(tmp_path, admin=f"127.0.0.1:{first.admin_port}"))
        with pytest.raises(AdminError, match="cannot listen"):
            async with second.running():
                pass
