"""Every shape of `meshctl bootstrap` output passes the real Envoy's own config validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from integration.conftest import meshctl_bootstrap
from meshctl.bootstrap import OutputFormat, render

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="sotw-default"),
        pytest.param(["--delta"], id="delta"),
        pytest.param(["--controlplane", "unix:/run/nodemesh/xds.sock"], id="unix"),
        pytest.param(["--controlplane", "nodemesh-xds.nodemesh-system.svc:15010", "--delta"], id="dns"),
        pytest.param(["--controlplane", "[::1]:15010", "--admin-address", "::1"], id="ipv6"),
        pytest.param(["--stats-port", "15090"], id="stats-port"),
    ],
)
@pytest.mark.parametrize("output", list(OutputFormat))
async def test_envoy_validates_the_bootstrap(
    args: list[str], output: OutputFormat, envoy_binary: str, tmp_path: Path
) -> None:
    bootstrap = meshctl_bootstrap("--node", "node-a", *args)
    path = tmp_path / f"bootstrap.{output.value}"
    path.write_text(render(bootstrap, output))
    process = await asyncio.create_subprocess_exec(
        envoy_binary,
        "--mode",
        "validate",
        "--disable-hot-restart",
        "-c",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, out.decode(errors="replace")[-2000:]
    assert f"configuration '{path}' OK" in out.decode()
