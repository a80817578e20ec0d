"""The node Envoy's supervisor with the real Envoy: hot restarts during steady traffic lose nothing.

Envoy (static bootstrap: an HTTP listener and a tcp_proxy listener on loopback, in front of loopback
upstreams) runs under `EnvoySupervisor`. Clients open a new connection for every request, and a long-lived TCP
connection exchanges a line every 50 ms, while the test hot restarts Envoy twice. Every test uses its own
random base id (shared memory and hot-restart sockets), so parallel runs cannot clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from integration.upstream import Upstream
from nodeagent.envoy import EnvoySettings, EnvoySupervisor, EpochProcess, StartReason, shared_memory_path

pytestmark = pytest.mark.envoy

DRAIN_TIME = 2
PARENT_SHUTDOWN_TIME = 4


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range. Hot restart hands listen sockets over by
    address, so listeners need a fixed port (a port-0 listener gets a new port in every epoch); outside the
    ephemeral range, no client connection (the load makes thousands) can take it before Envoy binds it."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    candidates = [port for port in range(10_000, 32_768) if not low <= port <= high]
    for port in random.sample(candidates, 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free loopback port outside the ephemeral range")


def bootstrap(*, http_port: int, tcp_port: int, http_upstream: int, tcp_upstream: int) -> dict[str, Any]:
    def cluster(name: str, port: int) -> dict[str, Any]:
        endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
        }

    def listener(name: str, port: int, filter_: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [filter_]}],
        }

    http = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager",
            "stat_prefix": "http",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "http_upstream"}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }
    tcp = {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "tcp",
            "cluster": "tcp_upstream",
        },
    }
    return {
        "node": {"id": "hot-restart-test", "cluster": "hot-restart-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [listener("http", http_port, http), listener("tcp", tcp_port, tcp)],
            "clusters": [cluster("http_upstream", http_upstream), cluster("tcp_upstream", tcp_upstream)],
        },
    }


@dataclass
class Recorder:
    """The supervisor's observer: what started and what exited."""

    started: list[EpochProcess] = field(default_factory=list)
    exited: dict[int, int] = field(default_factory=dict)  # pid -> return code
    refused: list[str] = field(default_factory=list)

    def epoch_started(self, process: EpochProcess) -> None:
        self.started.append(process)

    def epoch_exited(self, process: EpochProcess, returncode: int) -> None:
        self.exited[process.pid] = returncode

    def restart_refused(self, reason: StartReason, message: str) -> None:
        self.refused.append(message)


async def until(condition: Any, what: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Load:
    """Requests over new connections (HTTP and TCP), counted."""

    http_port: int
    tcp_port: int
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def _fail(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(what)

    async def http(self, stop: asyncio.Event) -> None:
        # force_close: a new connection for every request, so every request meets the listener.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=5)
        ) as session:
            while not stop.is_set():
                try:
                    async with session.get(f"http://127.0.0.1:{self.http_port}/x") as response:
                        body = await response.text()
                    if response.status == 200 and body == "v1":
                        self.ok += 1
                    else:
                        self._fail(f"http: {response.status} {body[:80]!r}")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self._fail(f"http: {exc!r}")
                await asyncio.sleep(0.005)

    async def tcp(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.tcp_port), 5
                )
                try:
                    writer.write(b"ping\n")
                    reply = await asyncio.wait_for(reader.readline(), 5)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                if reply == b"ping\n":
                    self.ok += 1
                else:
                    self._fail(f"tcp: {reply!r}")
            except (OSError, TimeoutError) as exc:
                self._fail(f"tcp: {exc!r}")
            await asyncio.sleep(0.005)


@dataclass
class LongLived:
    """One TCP connection through Envoy, a line every 50 ms, until it fails or is told to stop."""

    port: int
    successes: list[float] = field(default_factory=list)  # monotonic times of good exchanges
    ended: str = ""

    async def run(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            n = 0
            while not stop.is_set():
                n += 1
                writer.write(f"line {n}\n".encode())
                reply = await asyncio.wait_for(reader.readline(), 5)
                if reply != f"line {n}\n".encode():
                    self.ended = f"reply {reply!r}"
                    return
                self.successes.append(time.monotonic())
                await asyncio.sleep(0.05)
            self.ended = "stopped"
        except (OSError, TimeoutError) as exc:
            self.ended = repr(exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@dataclass
class Harness:
    supervisor: EnvoySupervisor
    recorder: Recorder
    settings: EnvoySettings
    http_port: int
    tcp_port: int
    upstreams: dict[str, int]  # HTTP upstream name -> port
    tcp_upstream: int

    def write_bootstrap(self, http_upstream: str, *, corrupt: bool = False) -> None:
        config = bootstrap(
            http_port=self.http_port,
            tcp_port=self.tcp_port,
            http_upstream=self.upstreams[http_upstream],
            tcp_upstream=self.tcp_upstream,
        )
        if corrupt:
            config["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
        self.settings.bootstrap.write_text(yaml.safe_dump(config))

    async def get(self) -> str:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.get(f"http://127.0.0.1:{self.http_port}/") as response,
        ):
            assert response.status == 200
            return await response.text()

    async def server_info(self) -> dict[str, Any] | None:
        path = self.settings.admin_address_path
        assert path is not None
        address = path.read_text().strip() if path.exists() else ""
        if not address:
            return None
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"http://{address}/server_info") as response,
            ):
                info: dict[str, Any] = json.loads(await response.text())
                return info
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return None  # the old epoch's admin is gone, the new one's not written yet

    async def wait_live(self, epoch: int) -> dict[str, Any]:
        async def live() -> dict[str, Any] | None:
            info = await self.server_info()
            if info and info["state"] == "LIVE" and info["command_line_options"]["restart_epoch"] == epoch:
                return info
            return None

        result: dict[str, Any] = await until(live, f"epoch {epoch} to be LIVE")
        return result


@pytest.fixture
async def harness(envoy_binary: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with contextlib.AsyncExitStack() as stack:
        upstreams = {name: (await stack.enter_async_context(Upstream(name))).port for name in ("v1", "v2")}
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.close)
        tcp_upstream = server.sockets[0].getsockname()[1]
        http_port, tcp_port = free_port(), free_port()
        bootstrap_path = tmp_path / "envoy.yaml"
        settings = EnvoySettings(
            binary=Path(envoy_binary),
            bootstrap=bootstrap_path,
            base_id=random.randrange(100_000, 400_000_000),
            concurrency=2,
            drain_time=DRAIN_TIME,
            parent_shutdown_time=PARENT_SHUTDOWN_TIME,
            log_path=tmp_path / "envoy.log",
            log_level="info",
            admin_address_path=tmp_path / "admin-address",
            watch_interval=0.2,  # a changed bootstrap is an upgrade
            stop_grace=5.0,
        )
        recorder = Recorder()
        supervisor = EnvoySupervisor(settings, observer=recorder)
        harness = Harness(supervisor, recorder, settings, http_port, tcp_port, upstreams, tcp_upstream)
        harness.write_bootstrap("v1")
        task = asyncio.create_task(supervisor.run())
        try:
            await harness.wait_live(0)
            yield harness
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for process in recorder.started:
                with pytest.raises(ProcessLookupError):
                    os.kill(process.pid, 0)  # exited and reaped: not even a zombie
            assert not shared_memory_path(settings.base_id).exists()
            log_path = tmp_path / "envoy.log"
            if log_path.exists():
                print(f"--- envoy log tail ---\n{''.join(log_path.read_text().splitlines(True)[-15:])}")


async def test_hot_restarts_during_steady_traffic_lose_no_request_and_keep_long_lived_connections(
    harness: Harness,
) -> None:
    supervisor, recorder = harness.supervisor, harness.recorder
    assert shared_memory_path(harness.settings.base_id).exists()  # the region is the one we clean up
    load = Load(harness.http_port, harness.tcp_port)
    stop_load = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(load.http(stop_load))
        group.create_task(load.tcp(stop_load))
        try:
            for epoch in (1, 2):
                old = supervisor.current
                assert old is not None and old.epoch == epoch - 1
                stop_stream = asyncio.Event()
                stream = LongLived(harness.tcp_port)
                stream_task = group.create_task(stream.run(stop_stream))
                await until(lambda s=stream: len(s.successes) >= 3, "the long-lived connection to carry data")
                served_before = load.ok

                restarted_at = time.monotonic()
                supervisor.restart()
                info = await harness.wait_live(epoch)

                new = supervisor.current
                assert new is not None and new.epoch == epoch and new.pid != old.pid
                assert new.reason is StartReason.REQUEST
                assert {p.pid for p in supervisor.epochs} == {old.pid, new.pid}  # the old one drains
                assert info["hot_restart_version"]
                # The old epoch exits by itself (the new one tells it to, after the parent shutdown time).
                await until(lambda pid=old.pid: pid in recorder.exited, f"epoch {epoch - 1} to exit")
                exited_at = time.monotonic()
                assert recorder.exited[old.pid] == 0
                assert exited_at - restarted_at >= PARENT_SHUTDOWN_TIME - 0.5
                assert supervisor.pids == {new.pid}
                # The connection established with the old epoch kept working through the whole drain period.
                assert any(t >= restarted_at + DRAIN_TIME for t in stream.successes), (
                    stream.ended,
                    restarted_at,
                )
                stop_stream.set()
                await stream_task
                assert load.ok > served_before  # traffic kept flowing across the restart
                # Only the new epoch is alive now, and it serves new connections.
                served = load.ok
                await until(lambda n=served: load.ok >= n + 20, f"epoch {epoch} alone to serve requests")
        finally:
            stop_load.set()
    print(f"requests over new connections during two hot restarts: ok={load.ok} failed={load.failed}")
    assert load.failed == 0, load.errors
    assert load.ok > 100
    assert [(p.epoch, p.reason) for p in recorder.started] == [
        (0, StartReason.INITIAL),
        (1, StartReason.REQUEST),
        (2, StartReason.REQUEST),
    ]
    assert not recorder.refused


async def test_a_crashed_envoy_is_started_again_as_epoch_zero(harness: Harness) -> None:
    supervisor, recorder = harness.supervisor, harness.recorder
    first = supervisor.current
    assert first is not None

    os.kill(first.pid, 9)

    await until(
        lambda: first.pid in recorder.exited and len(recorder.started) == 2, "a new epoch after the crash"
    )
    second = supervisor.current
    assert second is not None and second.pid != first.pid
    assert (second.epoch, second.reason) == (0, StartReason.CRASH)
    await harness.wait_live(0)
    assert await harness.get() == "v1"
    # Hot restart works again from the fresh epoch 0.
    supervisor.restart()
    await harness.wait_live(1)


async def test_a_crash_of_the_new_epoch_while_the_old_one_drains_is_retried_from_the_old_one(
    harness: Harness,
) -> None:
    supervisor, recorder = harness.supervisor, harness.recorder
    parent = supervisor.current
    assert parent is not None
    supervisor.restart()
    await harness.wait_live(1)
    child = supervisor.current
    assert child is not None and child.epoch == 1

    os.kill(child.pid, 9)  # after it took the listen sockets over and told the parent to drain

    await until(lambda: len(recorder.started) == 3, "the retry")
    retry = supervisor.current
    assert retry is not None and (retry.epoch, retry.reason) == (1, StartReason.CRASH)
    assert parent.pid in supervisor.pids  # the draining parent handed its sockets over once more
    await harness.wait_live(1)
    assert await harness.get() == "v1"
    # The retried child, not the dead one, tells the parent to shut down.
    await until(lambda: parent.pid in recorder.exited, "the parent to exit")
    assert recorder.exited[parent.pid] == 0 and supervisor.pids == {retry.pid}
    assert await harness.get() == "v1"


async def test_a_changed_bootstrap_is_validated_then_hot_restarted_onto(harness: Harness) -> None:
    recorder = harness.recorder
    assert await harness.get() == "v1"

    harness.write_bootstrap("v2", corrupt=True)
    await until(lambda: recorder.refused, "the invalid bootstrap to be refused")
    assert "NOT_A_TYPE" in recorder.refused[0]
    assert len(recorder.started) == 1 and await harness.get() == "v1"  # epoch 0 keeps serving

    harness.write_bootstrap("v2")
    await harness.wait_live(1)
    assert [(p.epoch, p.reason) for p in recorder.started] == [
        (0, StartReason.INITIAL),
        (1, StartReason.UPGRADE),
    ]
    assert await harness.get() == "v2"
