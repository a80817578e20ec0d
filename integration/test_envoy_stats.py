"""`meshctl bootstrap --stats-port`: a real Envoy serves its Prometheus stats there (what the DaemonSet's
15090 port promises), and nothing else of its admin interface.

Envoy opens its static listeners only once its first CDS and LDS responses arrived (or timed out, 15 s each):
a control plane serving a raw cluster answers them at once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
import yaml

from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from integration.conftest import meshctl_bootstrap
from integration.test_hot_restart import free_port
from tests.sources.test_rawdir import cluster, write

pytestmark = pytest.mark.envoy


async def test_the_stats_port_serves_prometheus_stats_and_nothing_else(
    envoy_binary: str, tmp_path: Path
) -> None:
    source = tmp_path / "xds"
    source.mkdir()
    write(source / "c.yaml", cluster("a"))
    settings = Settings(
        source=SourceSpec(kind=SourceKind.DIR, path=source),
        xds_listen=("127.0.0.1:0",),
        admin_listen="127.0.0.1:0",
        poll_interval=0.05,
        shutdown_grace=0.1,
    )
    async with ControlPlane(settings).running() as controlplane:
        await asyncio.wait_for(controlplane.ready.wait(), 10)
        await _check_stats(envoy_binary, tmp_path, f"127.0.0.1:{controlplane.xds_ports[0]}")


async def _check_stats(envoy_binary: str, tmp_path: Path, controlplane: str) -> None:
    admin_port, stats_port = free_port(), free_port()
    while stats_port == admin_port:
        stats_port = free_port()
    args = ["--node", "node-a", "--controlplane", controlplane, "--admin-port", str(admin_port)]
    bootstrap = meshctl_bootstrap(*args, "--stats-port", str(stats_port))
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": stats_port}
    # Loopback only in a test (the machine's other addresses are not ours to listen on).
    listener["address"]["socket_address"]["address"] = "127.0.0.1"
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    log = tmp_path / "envoy.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *(envoy_binary, "-c", str(path), "--disable-hot-restart", "--concurrency", "1"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{stats_port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            text = ""
            async with asyncio.timeout(20):
                while not text:
                    assert process.returncode is None, log.read_text()[-2000:]
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{base}/stats/prometheus") as response:
                            if response.status == 200:
                                text = await response.text()
                    await asyncio.sleep(0.1)
            assert "# TYPE envoy_server_live gauge" in text
            others = (("GET", "/config_dump"), ("POST", "/quitquitquit"), ("POST", "/stats/prometheus"))
            for method, other in others:
                async with http.request(method, f"{base}{other}") as response:
                    assert response.status == 404, (method, other)
            assert process.returncode is None  # /quitquitquit did not reach the admin interface
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
