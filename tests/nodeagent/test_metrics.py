"""The agent's /metrics covers what issue 5 promises: plan version, meshed pods, map entries, redirects, and
original-destination hits and misses, read from fakes of the maps and the reconciler."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network

from prometheus_client import CollectorRegistry

from nodeagent.datapath import (
    Counter,
    Exclusions,
    InboundCounter,
    InboundKey,
    InboundMode,
    PodSettings,
    ServicePort,
)
from nodeagent.metrics import AgentCollector, AgentState, MapsView, PodsView


class FakeMaps(MapsView):
    def counters(self) -> Mapping[Counter, int]:
        return {Counter.REDIRECTED: 7, Counter.ORIGDST_HIT: 5, Counter.ORIGDST_MISS: 1}

    def meshed(self) -> dict[int, PodSettings]:
        return {11: PodSettings(), 12: PodSettings(), 13: PodSettings()}

    def services(self) -> frozenset[ServicePort]:
        return frozenset({ServicePort(ip=IPv4Address("198.19.128.10"), port=80)})

    def exclusions(self) -> Exclusions:
        return Exclusions(ports=frozenset({22}), cidrs=frozenset({IPv4Network("10.0.0.0/8")}))

    def inbound_counters(self) -> Mapping[InboundCounter, int]:
        return {}

    def inbound(self) -> dict[InboundKey, InboundMode]:
        return {}


class FakePods(PodsView):
    @property
    def meshed(self) -> int:
        return 3

    @property
    def pending(self) -> Mapping[str, object]:
        return {"shop/new": object()}

    @property
    def errors(self) -> int:
        return 0


def test_the_issue_5_metrics_are_all_there() -> None:
    state = AgentState(node="n1", plan_version="v42", plans_applied=2)
    collector = AgentCollector(state)
    collector.maps, collector.pods = FakeMaps(), FakePods()
    registry = CollectorRegistry()
    registry.register(collector)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("nodemesh_agent_plan_info", version="v42") == 1
    assert sample("nodemesh_agent_meshed_pods") == 3
    assert sample("nodemesh_agent_pending_pods") == 1
    assert sample("nodemesh_datapath_map_entries", map="meshed_netns") == 3
    assert sample("nodemesh_datapath_map_entries", map="services") == 1
    assert sample("nodemesh_datapath_map_entries", map="excluded_cidrs") == 1
    assert sample("nodemesh_datapath_events_total", event="redirected") == 7
    assert sample("nodemesh_datapath_events_total", event="origdst_hit") == 5
    assert sample("nodemesh_datapath_events_total", event="origdst_miss") == 1
    # Every counter of the BPF programs is exported, zero or not (a closed label set).
    for counter in Counter:
        assert sample("nodemesh_datapath_events_total", event=counter.value) is not None


def test_before_the_maps_exist_only_the_agents_own_state_is_reported() -> None:
    registry = CollectorRegistry()
    registry.register(AgentCollector(AgentState(node="n1")))
    assert registry.get_sample_value("nodemesh_agent_ready") == 0
    assert registry.get_sample_value("nodemesh_datapath_events_total", {"event": "redirected"}) is None
