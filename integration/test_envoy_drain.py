"""The supervisor drains the real Envoy when it stops: a request in flight finishes, new connections are
refused, and Envoy is stopped once nothing is open or the drain period is over.

Envoy (the static bootstrap of test_hot_restart.py: an HTTP and a tcp_proxy listener on loopback) runs under
`EnvoySupervisor`, stopped by cancellation in-process and by SIGTERM to `nodemesh-agent envoy`. The upstream
holds a request until the test releases it, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from integration.test_hot_restart import Recorder, bootstrap, echo, free_port, until
from nodeagent.envoy import EnvoySettings, EnvoySupervisor
from tests.running import running

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parents[1]


@dataclass
class SlowUpstream:
    """`/fast` answers at once; `/slow` answers once the test sets `release`."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/slow":
            self.arrived.set()
            await self.release.wait()
            return web.Response(text="slow done")
        return web.Response(text="fast")


@dataclass
class Scene:
    upstream: SlowUpstream
    bootstrap: Path
    http_port: int
    tcp_port: int

    def settings(self, envoy_binary: str, tmp_path: Path, *, drain: float) -> EnvoySettings:
        return EnvoySettings(
            binary=Path(envoy_binary),
            bootstrap=self.bootstrap,
            base_id=random.randrange(100_000, 400_000_000),
            concurrency=1,
            drain_time=2,
            parent_shutdown_time=4,
            log_path=tmp_path / "envoy.log",
            watch_interval=None,
            stop_grace=5.0,
            shutdown_drain_time=drain,
            # admin_address_path unset: the supervisor uses a file of its own to find the admin API
        )

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=60)
            ) as session,
            session.get(f"http://127.0.0.1:{self.http_port}{path}") as response,
        ):
            return response.status, await response.text()

    async def serving(self) -> bool:
        try:
            return await self.get("/fast") == (200, "fast")
        except (aiohttp.ClientError, OSError):
            return False

    async def refused(self) -> bool:
        """True once a new connection to the HTTP listener is refused (Envoy stopped accepting)."""
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        except ConnectionRefusedError:
            return True
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return False


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    upstream = SlowUpstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        try:
            http_port, tcp_port = free_port(), free_port()
            config = bootstrap(
                http_port=http_port,
                tcp_port=tcp_port,
                http_upstream=site.port,
                tcp_upstream=server.sockets[0].getsockname()[1],
            )
            path = tmp_path / "envoy.yaml"
            path.write_text(yaml.safe_dump(config))
            yield Scene(upstream, path, http_port, tcp_port)
        finally:
            upstream.release.set()
            server.close()
            await server.wait_closed()
    finally:
        await runner.cleanup()


async def in_flight_request_survives(
    scene: Scene, stop: Callable[[], None], envoy_alive: Callable[[], bool]
) -> None:
    """A request in flight when `stop` is called completes; new connections are refused meanwhile."""
    await until(scene.serving, "Envoy to serve")
    request = asyncio.create_task(scene.get("/slow"))
    try:
        await asyncio.wait_for(scene.upstream.arrived.wait(), 15)

        stop()

        await until(scene.refused, "new connections to be refused")
        assert envoy_alive() and not request.done()  # draining: the request is still in flight
        scene.upstream.release.set()
        assert await request == (200, "slow done")
    finally:
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request


async def test_stopping_the_supervisor_lets_the_request_in_flight_finish(
    scene: Scene, envoy_binary: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    supervisor = EnvoySupervisor(scene.settings(envoy_binary, tmp_path, drain=120.0), observer=recorder)
    async with running(supervisor) as task:
        await until(lambda: recorder.started, "epoch 0")
        pid = recorder.started[0].pid

        def envoy_alive() -> bool:
            return pid not in recorder.exited and not task.done()

        def stop() -> None:
            task.cancel()

        await in_flight_request_survives(scene, stop, envoy_alive)

        # Nothing open any more: stopped long before the 120 s period (a guard, not a measure).
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
    assert recorder.exited[pid] == 0  # SIGTERM after the drain, not SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_envoy_is_stopped_when_the_drain_period_ends_with_connections_open(
    scene: Scene, envoy_binary: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    supervisor = EnvoySupervisor(scene.settings(envoy_binary, tmp_path, drain=1.0), observer=recorder)
    async with running(supervisor) as task:
        await until(scene.serving, "Envoy to serve")
        pid = recorder.started[0].pid
        reader, writer = await asyncio.open_connection("127.0.0.1", scene.tcp_port)
        try:
            writer.write(b"before\n")
            assert await asyncio.wait_for(reader.readline(), 10) == b"before\n"

            task.cancel()
            await until(scene.refused, "new connections to be refused")
            writer.write(b"draining\n")  # the established connection still works while Envoy drains
            assert await asyncio.wait_for(reader.readline(), 10) == b"draining\n"

            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)
            # The period is over and the connection was still open: Envoy was stopped, which closed it.
            assert recorder.exited[pid] == 0
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()


async def test_sigterm_to_the_envoy_command_drains_before_it_exits(
    scene: Scene, envoy_binary: str, tmp_path: Path
) -> None:
    s = scene.settings(envoy_binary, tmp_path, drain=120.0)
    log = tmp_path / "supervisor.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "nodeagent",
            "envoy",
            "--bootstrap",
            str(s.bootstrap),
            "--envoy-binary",
            str(s.binary),
            "--base-id",
            str(s.base_id),
            "--concurrency",
            "1",
            "--drain-time",
            "2",
            "--parent-shutdown-time",
            "4",
            "--shutdown-drain-time",
            "120",
            "--watch-interval",
            "0",
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=out,
        )
    try:

        def stop() -> None:
            process.send_signal(signal.SIGTERM)

        await in_flight_request_survives(scene, stop, lambda: process.returncode is None)
        assert await asyncio.wait_for(process.wait(), 60) == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = log.read_text()
    assert "draining" in text and "drained: no downstream connection left" in text, text
