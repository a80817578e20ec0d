"""The test fabric itself: reachability inside it, isolation from the root netns, and a teardown that leaves
nothing behind (the leak check must see leftovers while they exist, and none afterwards)."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration.topology import Topology, TopologyError, parse_endpoint
from integration.topology_fixtures import datapath_unavailable_reason
from nodeagent.datapath.libbpf import Libbpf
from nodeagent.datapath.loader import Datapath
from nodeagent.datapath.maps import EnvoyTarget, PodSettings

pytestmark = pytest.mark.privileged


def test_pods_reach_each_other_across_nodes(fabric: Topology) -> None:
    n1, n2 = fabric.add_node(), fabric.add_node()
    a, b = fabric.add_pod(n1), fabric.add_pod(n2)
    fabric.start_server(b, "tcp", 7000)

    result = fabric.tcp_call(a, b.ip, 7000)

    reply = result["reply"]
    assert isinstance(reply, dict)
    assert reply["pod"] == b.name
    assert parse_endpoint(reply["peer"])[0] == a.ip
    assert (a.ip, b.ip) == (n1.pod_cidr.network_address + 1, n2.pod_cidr.network_address + 1)


def test_processes_run_in_their_pod_cgroup(fabric: Topology) -> None:
    pod = fabric.add_pod(fabric.add_node())
    server = fabric.start_server(pod, "tcp", 7000)
    assert str(server.pid) in (pod.cgroup / "cgroup.procs").read_text().split()


def test_teardown_removes_everything(tmp_path: Path) -> None:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF unavailable: {reason}")
    topology = Topology.create()
    try:
        node = topology.add_node()
        pod = topology.add_pod(node)
        envoy_cgroup = topology.add_cgroup(node, "envoy")
        Datapath(pin_dir=topology.pin_dir(node), lib=Libbpf.load()).install(
            pods_cgroup=node.cgroup, envoy_cgroup=envoy_cgroup
        )
        topology.start_server(pod, "http", 8080)
        leaks = topology.leak_check()
        # The check sees every kind of thing the run made while it exists.
        for kind in ("netns", "cgroup", "pin dir", "process", "blackhole route"):
            assert any(leak.startswith(kind) for leak in leaks), (kind, leaks)
    finally:
        topology.close()
    assert topology.leak_check() == []


def test_uninstall_detaches_the_programs(fabric: Topology) -> None:
    reason = datapath_unavailable_reason()
    if reason is not None:
        pytest.skip(f"eBPF unavailable: {reason}")
    node = fabric.add_node()
    client, server = fabric.add_pod(node), fabric.add_pod(node)
    fabric.start_server(server, "tcp", 7000)
    datapath = Datapath(pin_dir=fabric.pin_dir(node), lib=Libbpf.load())
    datapath.install(pods_cgroup=node.cgroup, envoy_cgroup=fabric.add_cgroup(node, "envoy"))
    with datapath.open_maps() as maps:
        maps.set_target(EnvoyTarget(addresses=(node.ip,)))
        maps.set_meshed(fabric.netns_cookie(client), PodSettings())
    # Redirected to an Envoy that is not running: refused.
    with pytest.raises(TopologyError):
        fabric.tcp_call(client, server.ip, 7000)

    datapath.uninstall()

    assert not datapath.pin_dir.exists()
    assert datapath.status() == {}
    reply = fabric.tcp_call(client, server.ip, 7000)["reply"]
    assert isinstance(reply, dict)
    assert parse_endpoint(reply["peer"])[0] == client.ip
    datapath.uninstall()  # idempotent
