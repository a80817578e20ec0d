"""The real Envoy accepts what translation produces (`envoy --mode validate`).

Every node's translated listeners, clusters and load assignments go into a static bootstrap. Envoy cannot
fetch RDS/EDS there, so each HCM's RDS reference is replaced by the route configuration it names (the very
message translation produced) and each EDS cluster becomes a STATIC one holding its ClusterLoadAssignment.
`validate_clusters` is turned off in those inlined route configs, as it is for RDS-delivered ones: a share
for an invalid backend deliberately names a cluster that does not exist (it is answered with 500).
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from controlplane.model.routes import HeaderMatch, RequestRedirectFilter
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator
from integration.envoy import EnvoyProcess
from integration.staticconfig import static_bootstrap
from integration.upstream import Upstream
from tests.translate.builders import (
    backend,
    endpoint,
    endpoint_slice,
    exact,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    prefix,
    rule,
    service,
)
from tests.translate.sample import sample_mesh

pytestmark = pytest.mark.envoy


async def _validate(envoy_binary: str, path: Path) -> tuple[int, str]:
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
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("node", ["node-a", "node-b", "node-without-ip"])
async def test_envoy_validates_translated_config(node: str, envoy_binary: str, tmp_path: Path) -> None:
    translator = Translator()
    mesh = sample_mesh()
    config = translator.translate_node(mesh, node)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static_bootstrap(config), indent=1))
    code, out = await _validate(envoy_binary, path)
    assert code == 0, f"Envoy rejected the translated config of {node}:\n{out[-3000:]}"
    assert f"configuration '{path}' OK" in out


async def test_envoy_validates_the_config_of_a_mesh_without_services(
    envoy_binary: str, tmp_path: Path
) -> None:
    # A node joins before any Service exists: its outbound listener has no destinations to match on.
    config = Translator().translate_node(mesh(node("node-1", "127.0.0.1")), "node-1")
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static_bootstrap(config), indent=1))
    code, out = await _validate(envoy_binary, path)
    assert code == 0, f"Envoy rejected the config of an empty mesh:\n{out[-3000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _traffic_mesh(port: int, v1: int, v2: int) -> MeshSnapshot:
    """shop/api's ClusterIP:port is the listener's own loopback address, so a plain connection to the
    listener (no redirect: SO_ORIGINAL_DST finds nothing and the local address stands) selects api's chain.
    Clients from 127.0.0.5 are web's pod, which has a consumer route for api."""
    return mesh(
        namespace("shop"),
        namespace("web"),
        node("node-1", "127.0.0.1"),
        pod("web", "client", "node-1", "127.0.0.5"),
        service("shop", "api", "127.0.0.1", http_port(port)),
        service("shop", "v1", "127.0.0.2", http_port(80)),
        service("shop", "v2", "127.0.0.3", http_port(80)),
        endpoint_slice("shop", "v1", endpoint("127.0.0.1"), ports=(("http", v1),)),
        endpoint_slice("shop", "v2", endpoint("127.0.0.1"), ports=(("http", v2),)),
        http_route(
            "shop",
            "api",
            parent("shop", "api"),
            rule(
                backend("shop", "v2"),
                matches=(prefix("/", headers=(HeaderMatch(name="x-canary", value="yes"),)),),
            ),
            rule(backend("shop", "v1"), matches=(prefix("/v1"),)),
            rule(
                backend("shop", "v1", weight=0), backend("shop", "v2", weight=3), matches=(exact("/only-v2"),)
            ),
            rule(backend("shop", "gone"), matches=(prefix("/broken"),)),
            rule(backend("shop", "gone"), backend("shop", "v1"), matches=(prefix("/half"),)),
            rule(
                matches=(exact("/moved"),),
                filters=(RequestRedirectFilter(hostname="elsewhere.example", status_code=301),),
            ),
        ),
        http_route("web", "api-for-web", parent("shop", "api"), rule(backend("shop", "v2"))),
    )


async def test_translated_routes_route_real_requests(envoy_binary: str, tmp_path: Path) -> None:
    port = _free_port()
    async with Upstream("v1") as v1, Upstream("v2") as v2:
        m = _traffic_mesh(port, v1.port, v2.port)
        config = Translator(TranslateSettings(outbound_port=port)).translate_node(m, "node-1")
        assert not [d for d in config.diagnostics if d.reason != "BackendNotFound"], config.diagnostics
        bootstrap = json.loads(json.dumps(static_bootstrap(config, hbone=False)))
        async with EnvoyProcess(bootstrap=bootstrap, workdir=tmp_path, binary=envoy_binary) as envoy:
            await envoy.wait_ready()
            url = f"http://127.0.0.1:{port}"
            timeout = aiohttp.ClientTimeout(total=10)

            async def get(path: str, *, source: str = "127.0.0.1", **headers: str) -> tuple[int, str]:
                connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
                async with (
                    aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                    session.get(url + path, headers=headers, allow_redirects=False) as response,
                ):
                    body = await response.text()
                    where = response.headers.get("location", "") if response.status == 301 else body
                    return response.status, where

            assert await get("/v1/x") == (200, "v1")
            assert await get("/other", **{"x-canary": "yes"}) == (200, "v2")
            # The longer path prefix outranks the header match (Gateway API precedence).
            assert await get("/v1/x", **{"x-canary": "yes"}) == (200, "v1")
            assert await get("/only-v2") == (200, "v2")
            assert (await get("/broken"))[0] == 500
            # Half the weight names a missing Service: that share gets 500 (2 * 0.5**40 odds of a flake).
            statuses = {(await get("/half"))[0] for _ in range(40)}
            assert statuses == {200, 500}
            assert await get("/moved") == (301, "http://elsewhere.example/moved")
            assert (await get("/v1x"))[0] == 404  # segment-aware prefix; no rule matches
            # web's client gets web's consumer route: everything to v2.
            assert await get("/v1/x", source="127.0.0.5") == (200, "v2")
            assert await get("/anything", source="127.0.0.5") == (200, "v2")
