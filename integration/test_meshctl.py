"""meshctl against a real control plane (raw YAML source) with a real Envoy connected: every inspection
command's output checked against what the control plane holds and what Envoy did."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from controlplane.app import ControlPlane
from controlplane.xds import typeurls
from controlplane.xds.status import ConfigStatus
from integration.conftest import StartEnvoy, xds_address
from integration.envoy import EnvoyProcess
from integration.rawconfig import eds_cluster, endpoints, listener, route_config, write_docs
from integration.upstream import Upstream
from meshctl import cli
from tests.xds.test_configdump import key_and_cert

pytestmark = pytest.mark.envoy

NODE = "node-a"
ENVOY_TYPES = (typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE)


async def meshctl(*argv: str) -> tuple[int, str, str]:
    """`meshctl ARGV` in-process, in a worker thread: its clients block, and the control plane runs on this
    loop."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


def flags(cp: ControlPlane) -> list[str]:
    return ["--controlplane", xds_address(cp, unix=False), "--admin", f"127.0.0.1:{cp.admin_port}"]


def write_mesh(source: Path, upstream: Upstream) -> None:
    write_docs(source / "listener.yaml", [listener("http", "r")])
    write_docs(source / "routes.yaml", [route_config("r", [("/two", {"c1": 1}), ("/", {"c1": 1})])])
    write_docs(source / "clusters.yaml", [eds_cluster("c1")])
    write_docs(source / "endpoints.yaml", [endpoints("c1", [upstream.port])])


async def boot(cp: ControlPlane, start_envoy: StartEnvoy, *, delta: bool) -> EnvoyProcess:
    await asyncio.wait_for(cp.ready.wait(), 5)
    envoy = await start_envoy(xds_address(cp, unix=False), node=NODE, delta=delta)
    await envoy.wait_ready()

    async def all_synced() -> bool:
        streams = [s for s in cp.proxies.streams() if s.node_id == NODE]
        return len(streams) == 1 and all(
            t in streams[0].types and streams[0].types[t].status is ConfigStatus.SYNCED for t in ENVOY_TYPES
        )

    await envoy.wait_for(all_synced, what="Envoy to ACK CDS, EDS, LDS and RDS")
    return envoy


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("delta", [pytest.param(False, id="sotw"), pytest.param(True, id="delta")])
async def test_proxy_status_and_check_with_a_real_envoy(
    delta: bool,
    controlplane: ControlPlane,
    start_envoy: StartEnvoy,
    source_dir: Path,
    upstreams: dict[str, Upstream],
) -> None:
    cp = controlplane
    write_mesh(source_dir, upstreams["v1"])
    envoy = await boot(cp, start_envoy, delta=delta)
    variant = "delta" if delta else "sotw"

    code, out, err = await meshctl(*flags(cp), "proxy-status")
    assert code == 0, err
    [header, row] = table(out)
    assert header == ["NODE", "KIND", "VARIANT", "REPLICA", "CDS", "EDS", "LDS", "RDS", "CONNECTED"]
    [stream] = cp.proxies.streams()
    expected = [NODE, "envoy", variant, cp.replica]
    for type_url in ENVOY_TYPES:
        expected += ["SYNCED", stream.types[type_url].sent_version[:8]]
    assert row[:12] == expected
    assert row[-1] == "ago"

    code, out, _ = await meshctl(*flags(cp), "proxy-status", "-o", "json")
    assert code == 0
    [proxy] = json.loads(out)
    assert proxy["node"] == NODE and proxy["kind"] == "envoy" and proxy["variant"] == variant
    assert proxy["cluster"] == "nodemesh-envoy" and proxy["replica"] == cp.replica
    assert proxy["stream_id"] == stream.stream_id and proxy["peer"] == stream.peer
    for type_url in ENVOY_TYPES:
        entry = proxy["types"][typeurls.short_name(type_url)]
        assert entry == {
            **entry,
            "status": "SYNCED",
            "version": stream.types[type_url].acked_version,
            "nack": None,
        }

    code, out, _ = await meshctl(*flags(cp), "check")
    assert code == 0
    assert any(line.startswith("OK") and "controlplane-ready" in line for line in out.splitlines())
    synced = [line for line in out.splitlines() if "proxy-synced" in line]
    assert synced == [synced[0]] and synced[0].startswith("OK") and f"{NODE} (envoy, {variant})" in synced[0]

    # Envoy rejects a cluster (connect_timeout 0s passes our parser, not Envoy's validation).
    write_docs(source_dir / "clusters.yaml", [eds_cluster("c1"), eds_cluster("bad", connect_timeout="0s")])
    write_docs(
        source_dir / "endpoints.yaml", [endpoints("c1", [upstreams["v1"].port]), endpoints("bad", [1])]
    )

    async def nacked() -> bool:
        [s] = cp.proxies.streams()
        return s.types[typeurls.CLUSTER].status is ConfigStatus.ERROR

    await envoy.wait_for(nacked, what="Envoy to NACK CDS")
    [stream] = cp.proxies.streams()
    nack = stream.types[typeurls.CLUSTER].last_nack
    assert nack is not None and "connecttimeout" in nack.message.lower()

    code, out, _ = await meshctl(*flags(cp), "proxy-status", NODE)
    assert code == 1
    row = table(out)[1]
    assert row[4:6] == ["ERROR", stream.types[typeurls.CLUSTER].sent_version[:8]]
    assert "Rejected (NACK):" in out
    assert nack.message.strip().splitlines()[0] in out  # Envoy's own words

    code, out, _ = await meshctl(*flags(cp), "proxy-status", "-o", "yaml")
    assert code == 1
    [proxy] = yaml.safe_load(out)
    assert proxy["types"]["cds"]["status"] == "ERROR"
    assert proxy["types"]["cds"]["nack"]["message"] == nack.message
    assert proxy["types"]["lds"]["status"] == "SYNCED"

    code, out, _ = await meshctl(*flags(cp), "check")
    assert code == 1
    [failure] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert "proxy-synced" in failure and "CDS version" in failure
    assert nack.message.strip().splitlines()[-1] in out  # the reason, Envoy's last line


async def test_proxy_config_shows_what_the_control_plane_holds(
    controlplane: ControlPlane, start_envoy: StartEnvoy, source_dir: Path, upstreams: dict[str, Upstream]
) -> None:
    cp = controlplane
    write_mesh(source_dir, upstreams["v1"])
    key_pem, cert_pem = key_and_cert("spiffe://cluster.local/ns/shop/sa/cart")
    secret = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": "spiffe://cluster.local/ns/shop/sa/cart",
        "tls_certificate": {
            "certificate_chain": {"inline_bytes": base64.b64encode(cert_pem).decode()},
            "private_key": {"inline_bytes": base64.b64encode(key_pem).decode()},
        },
    }
    write_docs(source_dir / "secrets.yaml", [secret])
    await boot(cp, start_envoy, delta=False)
    held = cp.cache.get(NODE)
    assert held is not None and typeurls.SECRET in held.resources

    code, out, _ = await meshctl(*flags(cp), "proxy-config", "listeners", NODE)
    assert code == 0
    assert table(out) == [["NAME", "ADDRESS", "FILTER", "CHAINS"], ["http", "127.0.0.1:0", "1"]]
    code, out, _ = await meshctl(*flags(cp), "proxy-config", "routes", NODE)
    assert table(out) == [["NAME", "VIRTUAL", "HOSTS", "ROUTES"], ["r", "1", "(all)", "2"]]
    code, out, _ = await meshctl(*flags(cp), "proxy-config", "clusters", NODE)
    assert table(out) == [["NAME", "TYPE", "LB", "EDS", "NAME"], ["c1", "EDS", "ROUND_ROBIN", "c1"]]
    code, out, _ = await meshctl(*flags(cp), "proxy-config", "endpoints", NODE)
    assert table(out) == [
        ["CLUSTER", "ENDPOINT", "HEALTH", "LOCALITY"],
        ["c1", f"127.0.0.1:{upstreams['v1'].port}", "UNKNOWN", "-"],
    ]
    code, out, _ = await meshctl(*flags(cp), "proxy-config", "secrets", NODE)
    assert code == 0
    [_, row] = table(out)
    assert row[:4] == [secret["name"], "certificate", secret["name"], "1234abcd"]

    # -o json: every kind, exactly the resources the control plane holds (as Envoy JSON).
    for kind, type_url in [
        ("listeners", typeurls.LISTENER),
        ("routes", typeurls.ROUTE),
        ("clusters", typeurls.CLUSTER),
        ("endpoints", typeurls.ENDPOINT),
    ]:
        code, out, _ = await meshctl(*flags(cp), "proxy-config", kind, NODE, "-o", "json")
        assert code == 0
        document: dict[str, Any] = json.loads(out)
        assert document["type_url"] == type_url and document["version"] == held.version
        assert {e["name"]: e["resource"] for e in document["resources"]} == {
            name: json_format.MessageToDict(r.to_any(), preserving_proto_field_name=True)
            for name, r in held.of_type(type_url).items()
        }

    # Secrets: the key never leaves the control plane; the certificate does.
    for output in ("json", "yaml"):
        code, out, _ = await meshctl(*flags(cp), "proxy-config", "secrets", NODE, "-o", output)
        assert code == 0
        assert "PRIVATE KEY" not in out and base64.b64encode(key_pem).decode()[:40] not in out
        assert key_pem.decode().splitlines()[1] not in out
        document = json.loads(out) if output == "json" else yaml.safe_load(out)
        tls = document["resources"][0]["resource"]["tls_certificate"]
        assert tls["private_key"] == {"inline_string": "[redacted]"}
        assert base64.b64decode(tls["certificate_chain"]["inline_bytes"]) == cert_pem


async def test_entry_point_and_unreachable_control_plane(
    controlplane: ControlPlane, start_envoy: StartEnvoy, source_dir: Path, upstreams: dict[str, Upstream]
) -> None:
    cp = controlplane
    write_mesh(source_dir, upstreams["v1"])
    await boot(cp, start_envoy, delta=True)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshctl",
        *flags(cp),
        "proxy-status",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "\x1b[" not in text  # a pipe is not a terminal: no colours
    assert table(text)[1][:3] == [NODE, "envoy", "delta"]

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshctl",
        "--controlplane",
        dead,
        "proxy-status",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3
    assert out == b""
    message = err.decode()
    assert f"cannot reach the control plane's xDS/CSDS at {dead}" in message
    assert "--controlplane" in message and "NODEMESH_CONTROLPLANE" in message
    code, _, err_text = await meshctl("--controlplane", xds_address(cp, unix=False), "--admin", dead, "check")
    assert code == 3 and f"admin endpoint at {dead}" in err_text
