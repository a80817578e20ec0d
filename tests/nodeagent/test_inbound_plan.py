"""The plan's mTLS modes -> the inbound policy map (what the sk_lookup hook enforces), and what the
reconciler attaches the hook to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeAlias

import pytest

from nodeagent.datapath import DesiredState, InboundKey, InboundMode, NetnsSyncReport, ReconcileReport
from nodeagent.errors import PlanError
from nodeagent.plan import NetnsRef, desired_state, parse_plan
from nodeagent.reconciler import PodNetns, Reconciler
from protos.nodemesh.v1alpha1 import plan_pb2
from tests.nodeagent.planbuilders import node_settings, received, workload

STRICT, PERMISSIVE = InboundMode.STRICT, InboundMode.PERMISSIVE
A, B = IPv4Address("198.18.1.1"), IPv4Address("198.18.1.2")
Mode: TypeAlias = plan_pb2.MtlsMode


def moded(
    uid: str,
    ip: IPv4Address,
    mode: Mode = plan_pb2.MTLS_MODE_UNSPECIFIED,
    ports: Mapping[int, Mode] | None = None,
    *,
    path: str | None = None,
) -> plan_pb2.Workload:
    message = workload(uid, ips=(str(ip),), path=path or f"/n/{uid}")
    message.mtls_mode = mode
    for port, port_mode in (ports or {}).items():
        message.port_mtls[port] = port_mode
    return message


def inbound(*workloads: plan_pb2.Workload, strict_inbound: bool = False) -> dict[InboundKey, InboundMode]:
    settings = node_settings()
    settings.strict_inbound = strict_inbound
    return dict(desired_state(parse_plan(received(settings, *workloads)), {}).inbound)


@pytest.mark.parametrize(
    ("mode", "ports", "expected"),
    [
        # PERMISSIVE (or unset) is the absence of an entry: nothing enforced.
        (plan_pb2.MTLS_MODE_UNSPECIFIED, {}, {}),
        (plan_pb2.MTLS_MODE_PERMISSIVE, {}, {}),
        (plan_pb2.MTLS_MODE_STRICT, {}, {InboundKey(ip=A): STRICT}),
        # A STRICT port of a PERMISSIVE workload: only that port.
        (
            plan_pb2.MTLS_MODE_PERMISSIVE,
            {8080: plan_pb2.MTLS_MODE_STRICT},
            {InboundKey(ip=A, port=8080): STRICT},
        ),
        # A PERMISSIVE port of a STRICT workload: an explicit exception the hook looks up first.
        (
            plan_pb2.MTLS_MODE_STRICT,
            {9090: plan_pb2.MTLS_MODE_PERMISSIVE},
            {InboundKey(ip=A): STRICT, InboundKey(ip=A, port=9090): PERMISSIVE},
        ),
        # A port that says what the workload says needs no entry of its own.
        (plan_pb2.MTLS_MODE_STRICT, {80: plan_pb2.MTLS_MODE_STRICT}, {InboundKey(ip=A): STRICT}),
    ],
)
def test_modes_become_inbound_entries(
    mode: Mode, ports: dict[int, Mode], expected: dict[InboundKey, InboundMode]
) -> None:
    assert inbound(moded("a", A, mode, ports)) == expected


def test_node_strict_inbound_makes_every_workload_strict_on_every_port() -> None:
    entries = inbound(
        moded("a", A, plan_pb2.MTLS_MODE_PERMISSIVE, {9090: plan_pb2.MTLS_MODE_PERMISSIVE}),
        moded("b", B),
        strict_inbound=True,
    )
    assert entries == {InboundKey(ip=A): STRICT, InboundKey(ip=B): STRICT}


def test_workloads_disagreeing_on_one_address_fail_closed() -> None:
    # Two workload resources claiming one address (a stale pod and its replacement): STRICT wins.
    entries = inbound(
        moded("a", A, plan_pb2.MTLS_MODE_STRICT, {80: plan_pb2.MTLS_MODE_PERMISSIVE}),
        moded("b", A, plan_pb2.MTLS_MODE_STRICT, {80: plan_pb2.MTLS_MODE_STRICT}),
    )
    assert entries == {InboundKey(ip=A): STRICT, InboundKey(ip=A, port=80): PERMISSIVE}
    entries = inbound(
        moded("a", A, plan_pb2.MTLS_MODE_STRICT, {80: plan_pb2.MTLS_MODE_PERMISSIVE}),
        moded("b", A, plan_pb2.MTLS_MODE_PERMISSIVE, {80: plan_pb2.MTLS_MODE_STRICT}),
    )
    assert entries[InboundKey(ip=A, port=80)] is STRICT


def test_ipv6_addresses_are_left_out() -> None:
    message = workload("a", ips=("fd00::1", str(A)), path="/n/a")
    message.mtls_mode = plan_pb2.MTLS_MODE_STRICT
    assert inbound(message) == {InboundKey(ip=A): STRICT}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: setattr(m, "mtls_mode", 7), "unknown mTLS mode 7"),
        (lambda m: m.port_mtls.__setitem__(8080, 9), "port 8080: unknown mTLS mode 9"),
        (lambda m: m.port_mtls.__setitem__(70000, plan_pb2.MTLS_MODE_STRICT), "port 70000 out of range"),
    ],
)
def test_unknown_modes_and_bad_ports_refuse_the_plan(mutate: object, reason: str) -> None:
    message = moded("a", A)
    assert callable(mutate)
    mutate(message)
    with pytest.raises(PlanError, match=reason):
        parse_plan(received(node_settings(), message))


# The reconciler: the hook goes to every meshed pod's namespace, whatever its mode (a mode switch is then a
# map update only), and leaves with the pod.


@dataclass
class Maps:
    states: list[DesiredState] = field(default_factory=list)

    def reconcile(self, desired: DesiredState) -> ReconcileReport:
        self.states.append(desired)
        return ReconcileReport()


@dataclass
class Hooks:
    syncs: list[dict[int, Path]] = field(default_factory=list)

    def sync(self, wanted: Mapping[int, Path]) -> NetnsSyncReport:
        self.syncs.append(dict(wanted))
        return NetnsSyncReport(attached=frozenset(wanted))


class Cookies:
    COOKIES: Mapping[str, int] = {"/n/a": 11, "/n/b": 12, "/n/host": 1}

    async def resolve(self, ref: NetnsRef) -> PodNetns:
        assert ref.path is not None
        return PodNetns(cookie=self.COOKIES[ref.path], path=Path(ref.path))


async def test_the_hook_follows_the_meshed_pods_and_the_modes_only_the_map() -> None:
    maps, hooks = Maps(), Hooks()
    reconciler = Reconciler(maps, Cookies(), hooks=hooks, forbidden={1: "the node's own netns"})

    await reconciler.apply(parse_plan(received(node_settings(), moded("a", A), moded("b", B))))
    first = hooks.syncs[-1]
    assert first == {11: Path("/n/a"), 12: Path("/n/b")}
    assert maps.states[-1].inbound == {}

    # b turns STRICT: the same namespaces are hooked, the map now enforces b.
    await reconciler.apply(
        parse_plan(received(node_settings(), moded("a", A), moded("b", B, plan_pb2.MTLS_MODE_STRICT)))
    )
    assert hooks.syncs[-1] == first
    assert maps.states[-1].inbound == {InboundKey(ip=B): STRICT}

    # a leaves the mesh; a host-network pod (the node's own netns) never gets the hook.
    await reconciler.apply(
        parse_plan(
            received(
                node_settings(), moded("b", B, plan_pb2.MTLS_MODE_STRICT), moded("host", A, path="/n/host")
            )
        )
    )
    assert hooks.syncs[-1] == {12: Path("/n/b")}
