"""A node's Envoy as the mesh runs it: inside the node's netns and its own cgroup, booted from
`meshctl.bootstrap.build_bootstrap` (ADS at the control plane), admin on the node's loopback, port 0.

Blocking calls (process start, admin GETs through a socket opened in the node's netns): async callers run
them in a thread. No pytest here: the demo uses it too.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.topology import Node, Process, Topology, TopologyError
from meshctl.bootstrap import ControlPlaneAddress, build_bootstrap
from nodeagent.datapath.netns import socket_in_netns


@dataclass
class NodeEnvoy:
    topology: Topology
    node: Node
    process: Process
    admin_port: int
    log_path: Path

    @classmethod
    def start(
        cls,
        topology: Topology,
        node: Node,
        *,
        cgroup: Path,
        workdir: Path,
        binary: str,
        controlplane: str,
        sds_socket: Path,
        delta: bool = True,
        timeout: float = 20.0,
    ) -> NodeEnvoy:
        """Starts Envoy and returns once its admin answers (it becomes ready once the control plane's
        first listeners and clusters arrive: `wait_ready`)."""
        workdir.mkdir(parents=True, exist_ok=True)
        bootstrap = build_bootstrap(
            node=node.name,
            controlplane=ControlPlaneAddress.parse(controlplane),
            delta=delta,
            admin_port=0,
            sds_socket=str(sds_socket),
        )
        config = workdir / f"envoy-{node.name}.json"
        config.write_text(json.dumps(bootstrap))
        admin_path = workdir / f"envoy-{node.name}.admin"
        admin_path.unlink(missing_ok=True)
        log_path = workdir / f"envoy-{node.name}.log"
        argv = [
            binary,
            "-c",
            str(config),
            "--admin-address-path",
            str(admin_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-path",
            str(log_path),
            "-l",
            # For debugging a failing test: NODEMESH_ENVOY_LOG_LEVEL=debug keeps every connection's story.
            os.environ.get("NODEMESH_ENVOY_LOG_LEVEL", "info"),
            "--component-log-level",
            "config:info,upstream:info",
            "--drain-time-s",
            "1",
        ]
        # Envoy joins its cgroup before it starts: accepted sockets inherit the listener's cgroup, where the
        # agent's getsockopt program answers SO_ORIGINAL_DST.
        with (workdir / f"envoy-{node.name}.out").open("w") as out:
            process = topology.spawn(node, argv, cgroup=cgroup, name=f"{node.name}:envoy", stdout=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise TopologyError(
                    f"envoy on {node.name} exited ({process.popen.returncode}): {_tail(log_path)}"
                )
            text = admin_path.read_text().strip() if admin_path.exists() else ""
            if text:
                return cls(topology, node, process, int(text.rsplit(":", 1)[1]), log_path)
            time.sleep(0.05)
        raise TopologyError(f"envoy on {node.name}: no admin address within {timeout}s")

    def admin(self, path: str, timeout: float = 5.0) -> str:
        """GET on the admin API through a socket opened in the node's netns; TopologyError unless 200.
        http.client reads the answer, chunked (a config dump) or not."""
        sock = socket_in_netns(self.node.netns_path)
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", self.admin_port))
            conn.sock = sock  # already connected, inside the node's netns
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
        finally:
            conn.close()
            sock.close()
        if response.status != 200:
            raise TopologyError(f"envoy admin GET {path} on {self.node.name}: HTTP {response.status}")
        return body

    def ready(self) -> bool:
        try:
            return "LIVE" in self.admin("/ready")
        except (OSError, TopologyError):
            return False

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.popen.poll() is not None:
                raise TopologyError(f"envoy on {self.node.name} exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"envoy on {self.node.name} not ready within {timeout}s: {self.log_tail()}"
                )
            time.sleep(0.05)

    def config_dump(self) -> dict[str, Any]:
        value = json.loads(self.admin("/config_dump?include_eds"))
        assert isinstance(value, dict)
        return value

    def stats(self) -> dict[str, int]:
        """Counters and gauges by name."""
        result: dict[str, int] = {}
        for line in self.admin("/stats?usedonly").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                result[name] = int(value)
        return result

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
