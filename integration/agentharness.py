"""What agent tests need beyond the fabric: an in-process control plane on its own thread (so blocking test
code never stalls it) serving a plan the test sets directly, and `nodemesh-agent` as a real process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.resource import build_resource
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatusRegistry
from integration.topology import Node, Process, Topology, TopologyError
from protos.nodemesh.v1alpha1 import plan_pb2

PlanMessage = plan_pb2.Workload | plan_pb2.ServiceVip | plan_pb2.NodeSettings
AGENT_HEALTH_PORT = 15021  # inside the node's own netns: no other run can collide with it


class ThreadedControlPlane:
    """An XdsServer + SnapshotCache on a private event loop thread. `stop()` takes it down (the agent sees
    the control plane disappear); `start()` brings a fresh one up at the same address with the current
    plan."""

    def __init__(self, address: str, node_id: str) -> None:
        self.address = address
        self.node_id = node_id
        self._plan: Snapshot = Snapshot.build(())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cache: SnapshotCache | None = None
        self._stop: asyncio.Event | None = None
        self.registry: ProxyStatusRegistry | None = None

    def set_plan(self, messages: Iterable[PlanMessage]) -> None:
        """The node's plan from now on (kept while the control plane is down, served when it returns)."""
        self._plan = Snapshot.build(build_resource(m) for m in messages)
        if self._loop is not None and self._cache is not None:
            self._loop.call_soon_threadsafe(self._cache.set_snapshot, self.node_id, self._plan)

    def start(self) -> None:
        if self._thread is not None:
            raise TopologyError("control plane already running")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def serve() -> None:
            self._cache = SnapshotCache()
            self._cache.set_snapshot(self.node_id, self._plan)
            self.registry = ProxyStatusRegistry()
            self._stop = asyncio.Event()
            try:
                async with XdsServer(self._cache, self.registry, ServerSettings(stop_grace=0.2)) as server:
                    await server.listen([self.address])
                    started.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        def body() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            finally:
                loop.close()

        self._thread = threading.Thread(target=body, name="controlplane", daemon=True)
        self._thread.start()
        started.result(timeout=10)

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        self._thread = self._loop = self._cache = self._stop = None


class AgentProcess:
    """`python -m nodeagent run ...` in a node's netns and its own cgroup, logging to a file."""

    def __init__(self, topology: Topology, node: Node, process: Process, log: Path) -> None:
        self.topology = topology
        self.node = node
        self.process = process
        self.log = log

    @classmethod
    def start(
        cls,
        topology: Topology,
        node: Node,
        *,
        cgroup: Path,
        controlplane: str,
        pods_cgroup: Path,
        envoy_cgroup: Path,
        pin_dir: Path,
        log: Path,
        extra_args: Sequence[str] = (),
    ) -> AgentProcess:
        argv = [
            # The shell execs the agent (same pid) with its output appended to the log: no pipe can fill.
            "sh",
            "-c",
            'log="$1"; shift; exec "$@" >>"$log" 2>&1',
            "agent",
            str(log),
            sys.executable,
            "-m",
            "nodeagent",
            "run",
            "--node",
            node.name,
            "--controlplane",
            controlplane,
            "--cgroup",
            str(pods_cgroup),
            "--envoy-cgroup",
            str(envoy_cgroup),
            "--bpffs",
            str(pin_dir),
            "--health-listen",
            f"127.0.0.1:{AGENT_HEALTH_PORT}",
            "--xds-retry-max",
            "0.5",
            *extra_args,
        ]
        process = topology.spawn(node, argv, cgroup=cgroup, name=f"{node.name}:agent")
        return cls(topology, node, process, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> str:
        return self.topology.http_get_in(self.node, "127.0.0.1", AGENT_HEALTH_PORT, path)

    def ready(self) -> bool:
        try:
            self.get("/readyz")
        except (OSError, TopologyError):
            return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.popen.poll() is not None:
                raise TopologyError(f"agent exited ({self.process.popen.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TopologyError(f"agent not ready within {timeout}s: {self.log_tail()}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """Samples by `name{label="value",...}` (labels sorted), as the agent serves them."""
        result: dict[str, float] = {}
        for family in text_string_to_metric_families(self.get("/metrics")):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                result[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return result

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        return ""
