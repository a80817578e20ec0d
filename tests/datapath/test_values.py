"""Data path values and their encoding into the C structs (no kernel needed)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.datapath.errors import MapError, NetnsError
from nodeagent.datapath.maps import (
    MAX_ENVOY_ADDRS,
    MAX_OUTBOUND_PORTS,
    MAX_POD_EXCLUDED_PORTS,
    POD_REDIRECT_ALL,
    EnvoyTarget,
    Exclusions,
    PodSettings,
    ReconcileReport,
    decode_pod_settings,
    decode_target,
    encode_pod_settings,
    encode_target,
)
from nodeagent.datapath.netns import netns_path

ports = st.integers(min_value=1, max_value=65535)
addresses = st.builds(IPv4Address, st.integers(min_value=0, max_value=2**32 - 1))


@given(redirect_all=st.booleans(), excluded=st.frozensets(ports, max_size=MAX_POD_EXCLUDED_PORTS))
def test_pod_settings_round_trip(redirect_all: bool, excluded: frozenset[int]) -> None:
    settings = PodSettings(redirect_all=redirect_all, exclude_ports=excluded)
    encoded = encode_pod_settings(settings)
    assert bool(encoded.flags & POD_REDIRECT_ALL) == redirect_all
    assert encoded.n_exclude_ports == len(excluded)
    assert decode_pod_settings(encoded) == settings


@given(
    targets=st.lists(addresses, min_size=1, max_size=MAX_ENVOY_ADDRS),
    port=st.integers(min_value=1, max_value=65535 - MAX_OUTBOUND_PORTS),
    count=st.integers(min_value=1, max_value=MAX_OUTBOUND_PORTS),
)
def test_envoy_target_round_trip_in_network_order(targets: list[IPv4Address], port: int, count: int) -> None:
    target = EnvoyTarget(addresses=tuple(targets), outbound_port=port, outbound_ports=count)
    encoded = encode_target(target)
    # The kernel compares these with user_ip4/user_port, which hold network-order bytes.
    assert bytes(encoded)[:4] == targets[0].packed
    assert encoded.outbound_port == socket.htons(port)
    assert encoded.n_outbound_ports == count
    assert decode_target(encoded) == target


def test_no_target_encodes_as_redirection_off() -> None:
    assert encode_target(None).n_envoy_ips == 0
    assert decode_target(encode_target(None)) is None


def test_values_reject_what_the_c_structs_cannot_hold() -> None:
    with pytest.raises(MapError):
        PodSettings(exclude_ports=frozenset(range(1, MAX_POD_EXCLUDED_PORTS + 2)))
    with pytest.raises(MapError):
        PodSettings(exclude_ports=frozenset({0}))
    with pytest.raises(MapError):
        EnvoyTarget(addresses=())
    with pytest.raises(MapError):
        EnvoyTarget(addresses=tuple(IPv4Address(f"10.0.0.{i}") for i in range(MAX_ENVOY_ADDRS + 1)))
    with pytest.raises(MapError):
        EnvoyTarget(addresses=(IPv4Address("10.0.0.1"),), outbound_ports=MAX_OUTBOUND_PORTS + 1)
    with pytest.raises(MapError):
        EnvoyTarget(addresses=(IPv4Address("10.0.0.1"),), outbound_port=65535, outbound_ports=2)
    with pytest.raises(MapError):
        Exclusions(ports=frozenset({70000}))


def test_reconcile_report_changed() -> None:
    assert not ReconcileReport().changed
    assert ReconcileReport(meshed_removed=1).changed
    assert ReconcileReport(target_changed=True).changed


def test_netns_path_from_a_plan_reference() -> None:
    assert str(netns_path(pid=42)) == "/proc/42/ns/net"
    assert str(netns_path(path="/var/run/netns/x")) == "/var/run/netns/x"
    with pytest.raises(NetnsError, match="exactly one"):
        netns_path()
