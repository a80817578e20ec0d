"""Every inspection command against an in-process control plane (raw YAML source) with scripted ADS
clients: output checked against what the control plane holds; exit codes 0 / 1 / 2 / 3."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import json_format

from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from controlplane.xds import typeurls as t
from integration.rawconfig import eds_cluster, endpoints, write_docs
from meshctl import cli
from tests.xds.harness import SotwClient, wait_until


async def meshctl(*argv: str) -> tuple[int, str, str]:
    """`main(argv)` in a worker thread (its clients block; the control plane runs on this loop)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


@pytest_asyncio.fixture
async def controlplane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    write_docs(tmp_path / "clusters.yaml", [eds_cluster("c1"), eds_cluster("c2")])
    write_docs(tmp_path / "endpoints.yaml", [endpoints("c1", [7001]), endpoints("c2", [7002, 7003])])
    settings = Settings(
        source=SourceSpec(kind=SourceKind.DIR, path=tmp_path),
        xds_listen=("127.0.0.1:0",),
        admin_listen="127.0.0.1:0",
        debounce_quiet=0.01,
        debounce_max=0.1,
        poll_interval=0.05,
        shutdown_grace=0.2,
    )
    async with ControlPlane(settings).running() as running:
        await asyncio.wait_for(running.ready.wait(), 5)
        yield running


def addresses(cp: ControlPlane) -> list[str]:
    return ["--controlplane", f"127.0.0.1:{cp.xds_ports[0]}", "--admin", f"127.0.0.1:{cp.admin_port}"]


@contextlib.asynccontextmanager
async def envoy_like(cp: ControlPlane, node: str = "node-a") -> AsyncIterator[SotwClient]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_ports[0]}") as channel:
        client = SotwClient(channel, node)
        client.node.cluster = "nodemesh-envoy"
        client.node.user_agent_name = "envoy"
        try:
            yield client
        finally:
            await client.close()


async def test_proxy_status_check_and_a_nack(controlplane: ControlPlane, tmp_path: Path) -> None:
    cp = controlplane
    async with envoy_like(cp) as client:
        await client.request(t.CLUSTER)
        cds = await client.recv()
        await client.ack(cds)
        await client.request(t.ENDPOINT, ["c1", "c2"])
        eds = await client.recv()
        await client.ack(eds, ["c1", "c2"])
        await wait_until(
            lambda: (
                all(s.status.value == "synced" for st in cp.proxies.streams() for s in st.types.values())
                and len(cp.proxies) == 1
            )
        )

        code, out, _ = await meshctl(*addresses(cp), "proxy-status")
        assert code == 0
        header, row = out.splitlines()
        assert header.split() == ["NODE", "KIND", "VARIANT", "REPLICA", "CDS", "EDS", "CONNECTED"]
        assert row.split()[:8] == [
            "node-a",
            "envoy",
            "sotw",
            socket.gethostname(),
            "SYNCED",
            cds.version_info[:8],
            "SYNCED",
            eds.version_info[:8],
        ]

        code, out, _ = await meshctl(*addresses(cp), "check", "-o", "json")
        assert code == 0
        verdicts = {r["name"]: r["verdict"] for r in json.loads(out)}
        assert verdicts["controlplane-ready"] == "OK" and verdicts["proxy-synced"] == "OK"

        # A NACK: ERROR with the client's message, exit 1 from proxy-status and check.
        write_docs(
            tmp_path / "endpoints.yaml",
            [endpoints("c1", [7009]), endpoints("c2", [7002])],
        )
        pushed = await client.recv()
        await client.nack(pushed, "endpoint c1 rejected: bad port", ["c1", "c2"], version=eds.version_info)
        await wait_until(
            lambda: any(
                s.types[t.ENDPOINT].last_nack is not None and s.types[t.ENDPOINT].status.value == "error"
                for s in cp.proxies.streams()
            )
        )
        code, out, _ = await meshctl(*addresses(cp), "proxy-status", "node-a")
        assert code == 1
        assert out.splitlines()[1].split()[6:8] == ["ERROR", pushed.version_info[:8]]
        assert "node-a (envoy) EDS version" in out and "endpoint c1 rejected: bad port" in out

        code, out, _ = await meshctl(*addresses(cp), "proxy-status", "-o", "json")
        assert code == 1
        [proxy] = json.loads(out)
        [stream] = cp.proxies.streams()
        assert proxy["types"]["eds"]["status"] == "ERROR"
        assert proxy["types"]["eds"]["version"] == stream.types[t.ENDPOINT].sent_version
        assert proxy["types"]["eds"]["nack"]["message"] == "endpoint c1 rejected: bad port"
        assert proxy["types"]["cds"]["version"] == stream.types[t.CLUSTER].acked_version
        assert proxy["peer"] == stream.peer and proxy["stream_id"] == stream.stream_id

        code, out, _ = await meshctl(*addresses(cp), "check")
        assert code == 1
        assert any(line.startswith("FAIL") and "bad port" in line for line in out.splitlines())

    # Nobody connected: proxy-status says so on stderr and exits 0; for a named node, 1.
    await wait_until(lambda: len(cp.proxies) == 0)
    assert (await meshctl(*addresses(cp), "proxy-status"))[0] == 0
    code, _, err = await meshctl(*addresses(cp), "proxy-status", "node-zz")
    assert code == 1 and "node-zz" in err


async def test_proxy_config_tables_and_json_match_the_cache(controlplane: ControlPlane) -> None:
    cp = controlplane
    code, out, _ = await meshctl(*addresses(cp), "proxy-config", "endpoints", "node-a")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["CLUSTER", "ENDPOINT"],
        ["c1", "127.0.0.1:7001"],
        ["c2", "127.0.0.1:7002"],
        ["c2", "127.0.0.1:7003"],
    ]
    code, out, _ = await meshctl(*addresses(cp), "proxy-config", "clusters", "node-a", "-o", "json")
    assert code == 0
    document: dict[str, Any] = json.loads(out)
    held = cp.cache.get("node-a")
    assert held is not None
    assert document["version"] == held.version
    assert {e["name"]: e["resource"] for e in document["resources"]} == {
        name: json_format.MessageToDict(r.to_any(), preserving_proto_field_name=True)
        for name, r in held.of_type(t.CLUSTER).items()
    }
    code, out, _ = await meshctl(*addresses(cp), "proxy-config", "listeners", "node-a", "-o", "yaml")
    assert code == 0 and "resources: []" in out


async def test_exit_codes_for_usage_and_unreachable(
    controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = controlplane
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    code, _, err = await meshctl("--controlplane", dead, "proxy-status")
    assert code == 3
    assert dead in err and "--controlplane" in err
    code, _, err = await meshctl("--controlplane", f"127.0.0.1:{cp.xds_ports[0]}", "--admin", dead, "check")
    assert code == 3
    assert dead in err and "--admin" in err
    code, _, err = await meshctl(*addresses(cp), "proxy-config", "bogus", "node-a")
    assert code == 2 and "invalid choice" in err
    code, _, err = await meshctl("--controlplane", "nonsense", "proxy-status")
    assert code == 2 and "nonsense" in err
    # The environment variables are the fallback for the flags.
    monkeypatch.setenv("NODEMESH_CONTROLPLANE", dead)
    code, _, err = await meshctl("proxy-status")
    assert code == 3 and dead in err
    monkeypatch.setenv("NODEMESH_ADMIN", dead)
    code, _, err = await meshctl("proxy-config", "clusters", "node-a")
    assert code == 3 and f"admin endpoint at {dead}" in err


async def test_unknown_node_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # No default snapshot: a raw source with node-scoped files only would leave other nodes without config;
    # here the directory is empty, so the snapshot is empty but present: query a type that exists.
    settings = Settings(
        source=SourceSpec(kind=SourceKind.DIR, path=tmp_path),
        xds_listen=("127.0.0.1:0",),
        admin_listen="127.0.0.1:0",
        debounce_quiet=0.01,
        debounce_max=0.1,
        poll_interval=0.05,
        shutdown_grace=0.2,
    )
    async with ControlPlane(settings).running() as cp:
        await asyncio.wait_for(cp.ready.wait(), 5)
        cp.cache.set_default(None)
        code, _, err = await meshctl(*addresses(cp), "proxy-config", "clusters", "node-q")
    assert code == 1
    assert "no config for node 'node-q'" in err
