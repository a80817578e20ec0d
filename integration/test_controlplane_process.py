"""`nodemesh-controlplane` as a real process: JSON logs, admin endpoints, graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from integration.rawconfig import eds_cluster, endpoints, write_docs


class ControlPlaneProcess:
    def __init__(self, process: asyncio.subprocess.Process, socket: Path) -> None:
        self.process = process
        self.socket = socket
        self.lines: list[dict[str, Any]] = []

    async def line_with(self, msg: str) -> dict[str, Any]:
        """Read JSON log lines until one has this message."""
        async with asyncio.timeout(15):
            for seen in self.lines:
                if seen["msg"] == msg:
                    return seen
            assert self.process.stderr is not None
            while raw := await self.process.stderr.readline():
                record: dict[str, Any] = json.loads(raw)
                self.lines.append(record)
                if record["msg"] == msg:
                    return record
        raise AssertionError(f"control plane exited before logging {msg!r}: {self.lines}")


@pytest_asyncio.fixture
async def controlplane_process(tmp_path: Path) -> AsyncIterator[ControlPlaneProcess]:
    source = tmp_path / "xds"
    write_docs(source / "c.yaml", [eds_cluster("c1"), endpoints("c1", [8080])])
    socket = tmp_path / "x.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controlplane",
        f"--source=dir:{source}",
        "--xds-listen=127.0.0.1:0",
        f"--xds-listen=unix:{socket}",
        "--admin-listen=127.0.0.1:0",
        "--log-format=json",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield ControlPlaneProcess(process, socket)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serves_admin_and_stops_gracefully_on_sigterm(
    controlplane_process: ControlPlaneProcess,
) -> None:
    serving = await controlplane_process.line_with("control plane serving")
    assert serving["level"] == "info"
    admin = f"http://127.0.0.1:{serving['admin_port']}"
    xds_tcp_port = int(serving["xds_ports"].split(",")[0])
    assert xds_tcp_port > 0
    assert controlplane_process.socket.is_socket()
    snapshot = await controlplane_process.line_with("snapshot set")
    assert snapshot["resources"] == 2
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(admin + "/healthz") as response:
            assert response.status == 200
        async with http.get(admin + "/readyz") as response:
            assert response.status == 200
        async with http.get(admin + "/metrics") as response:
            assert "nodemesh_xds_connected_streams" in await response.text()
    controlplane_process.process.send_signal(signal.SIGTERM)
    stopped = await controlplane_process.line_with("stopped")
    assert stopped["signal"] == "SIGTERM"
    assert await asyncio.wait_for(controlplane_process.process.wait(), 10) == 0
    assert not controlplane_process.socket.exists()  # the unix socket is cleaned up on the way out
