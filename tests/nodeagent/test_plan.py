from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from controlplane.xds import typeurls
from nodeagent.datapath import EnvoyTarget, Exclusions, PodSettings, ServicePort
from nodeagent.errors import PlanError
from nodeagent.plan import NetnsRef, desired_state, parse_plan
from nodeagent.xdsclient import ReceivedResource
from protos.nodemesh.v1alpha1 import plan_pb2
from tests.nodeagent.planbuilders import node_settings, received, service, workload


def test_a_full_plan_gives_the_maps_contents() -> None:
    plan = parse_plan(
        received(
            node_settings("198.19.0.1", exclude_cidrs=["10.0.0.0/8", "fd00::/8"], exclude_ports=[22]),
            service("web", ["198.19.128.10", "fd00::10"], [80, 8080]),
            workload("u1", path="/run/netns/a", exclude_ports=[3306]),
            workload("u2", pid=42),
        )
    )

    state = desired_state(plan, {"u1": 101, "u2": 102})

    assert state.target == EnvoyTarget(addresses=(IPv4Address("198.19.0.1"),), outbound_port=15001)
    assert state.meshed == {101: PodSettings(exclude_ports=frozenset({3306})), 102: PodSettings()}
    # IPv6 destinations mean nothing to cgroup/connect4: left out, not an error.
    assert state.exclusions == Exclusions(ports=frozenset({22}), cidrs=frozenset({IPv4Network("10.0.0.0/8")}))
    assert state.services == {
        ServicePort(ip=IPv4Address("198.19.128.10"), port=80),
        ServicePort(ip=IPv4Address("198.19.128.10"), port=8080),
    }
    assert plan.workloads["u1"].netns == NetnsRef(path="/run/netns/a")
    assert plan.workloads["u2"].netns.netns_file().as_posix() == "/proc/42/ns/net"
    assert {str(i) for i in plan.spiffe_ids} == {"spiffe://cluster.local/ns/default/sa/default"}


def test_pods_without_a_cookie_yet_are_left_out() -> None:
    plan = parse_plan(received(node_settings(), workload("u1", pid=1), workload("u2", pid=2)))
    assert set(desired_state(plan, {"u2": 7}).meshed) == {7}
    assert desired_state(plan, {}).meshed == {}


def test_workloads_sharing_a_netns_share_one_entry_with_the_union_of_exclusions() -> None:
    plan = parse_plan(
        received(workload("u1", pid=1, exclude_ports=[1]), workload("u2", pid=2, exclude_ports=[2]))
    )
    assert desired_state(plan, {"u1": 5, "u2": 5}).meshed == {5: PodSettings(exclude_ports=frozenset({1, 2}))}


def test_no_node_settings_or_no_envoy_address_turns_redirection_off() -> None:
    assert desired_state(parse_plan(received(workload("u1", pid=1))), {"u1": 1}).target is None
    assert desired_state(parse_plan(received(node_settings(envoy=""))), {}).target is None


def test_the_version_follows_the_resources() -> None:
    first = parse_plan(received(node_settings(), workload("u1", pid=1)))
    same = parse_plan(received(workload("u1", pid=1), node_settings()))
    changed = parse_plan(received(node_settings(), workload("u1", pid=2)))
    assert first.version == same.version
    assert first.version != changed.version


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (workload("u1", path="relative/path"), "needs a netns reference"),
        (workload("u1", pid=-1), "needs a netns reference"),
        (workload("u1", pid=1, ips=["not-an-ip"]), "not an IP address"),
        (workload("u1", pid=1, sa="Not_Valid"), "service account"),
        (workload("u1", pid=1, exclude_ports=[70000]), "out of range"),
        (workload("u1", pid=1, exclude_ports=range(1, 10)), "at most 8 excluded ports"),
        (service("web", ["198.19.128.300"], [80]), "not an IP address"),
        (service("web", ["198.19.128.1"], [0]), "out of range"),
        (node_settings("fd00::1"), "not an IPv4 address"),
        (node_settings(exclude_cidrs=["10.0.0.0/33"]), "not a CIDR"),
        (node_settings(outbound_port=65536), "out of range"),
        (node_settings(outbound_ports=65), "outbound ports"),
        (node_settings(outbound_port=65535, outbound_ports=2), "outbound ports"),
    ],
)
def test_an_invalid_plan_is_refused_with_a_reason(message: plan_pb2.Workload, reason: str) -> None:
    with pytest.raises(PlanError, match=reason):
        parse_plan(received(message))


def test_the_outbound_ports_reach_the_target() -> None:
    plan = parse_plan(received(node_settings("198.19.0.1", outbound_ports=4)))
    target = desired_state(plan, {}).target
    node_ip = IPv4Address("198.19.0.1")
    assert target == EnvoyTarget(addresses=(node_ip,), outbound_port=15001, outbound_ports=4)
    # An older control plane sends none: one port.
    assert desired_state(parse_plan(received(node_settings())), {}).target == EnvoyTarget(
        addresses=(IPv4Address("198.19.0.1"),), outbound_port=15001
    )


def test_a_workload_whose_name_is_not_its_uid_is_refused() -> None:
    resources = received(workload("u1", pid=1))
    view = resources[typeurls.WORKLOAD]["u1"]
    renamed = {typeurls.WORKLOAD: {"other": view}}
    with pytest.raises(PlanError, match="differs from the resource name"):
        parse_plan(renamed)


def test_a_resource_of_the_wrong_type_is_refused() -> None:
    view = received(workload("u1", pid=1))[typeurls.WORKLOAD]["u1"]
    wrong = {
        typeurls.SERVICE_VIP: {"default/x": ReceivedResource(name="x", version="1", resource=view.resource)}
    }
    with pytest.raises(PlanError, match="expected"):
        parse_plan(wrong)
