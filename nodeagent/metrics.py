"""The agent's Prometheus metrics, read at scrape time from the agent's state and the pinned maps.

A collector instead of gauges updated everywhere: the numbers come from where they live (the maps' entries
and the kernel's per-CPU counters), so they cannot drift from the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from nodeagent.datapath import (
    Counter,
    DatapathError,
    Exclusions,
    InboundCounter,
    InboundKey,
    InboundMode,
    PodSettings,
    ServicePort,
)
from nodeagent.identity.manager import IdentityMetrics, IssuanceResult

log = logging.getLogger(__name__)


class MapsView(Protocol):
    """Read access to the maps (DatapathMaps implements it)."""

    def counters(self) -> Mapping[Counter, int]: ...

    def meshed(self) -> dict[int, PodSettings]: ...

    def services(self) -> frozenset[ServicePort]: ...

    def exclusions(self) -> Exclusions: ...

    def inbound_counters(self) -> Mapping[InboundCounter, int]: ...

    def inbound(self) -> dict[InboundKey, InboundMode]: ...


class HooksView(Protocol):
    """Which pod namespaces carry the inbound hook (NetnsHooks implements it)."""

    def attached(self) -> frozenset[int]: ...


@dataclass(slots=True)
class AgentState:
    """What the agent knows about itself; updated by the agent, read by the collector and /readyz."""

    node: str = ""
    programs_attached: bool = False
    plan_version: str = ""
    plans_applied: int = 0
    plans_rejected: int = 0
    xds_connected: bool = False
    # Hook -> how this agent got it: attached (new), adopted (pinned earlier), replaced (upgraded).
    programs: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.programs_attached and self.plans_applied > 0


class PodsView(Protocol):
    """The reconciler's view of the plan's pods (Reconciler implements it)."""

    @property
    def meshed(self) -> int: ...

    @property
    def pending(self) -> Mapping[str, object]: ...

    @property
    def errors(self) -> int: ...


class AgentCollector(Collector):
    """Set `maps` and `pods` once they exist; until then only the agent's own state is reported."""

    def __init__(self, state: AgentState) -> None:
        self._state = state
        self.maps: MapsView | None = None
        self.pods: PodsView | None = None
        self.hooks: HooksView | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        s = self._state
        yield InfoMetricFamily(
            "nodemesh_agent_plan", "Version of the applied plan.", value={"version": s.plan_version}
        )
        yield _counter("nodemesh_agent_plans_applied", "Plan updates applied (and ACKed).", s.plans_applied)
        yield _counter("nodemesh_agent_plans_rejected", "Plan updates refused (NACKed).", s.plans_rejected)
        yield _gauge("nodemesh_agent_xds_connected", "1 while the xDS stream is up.", s.xds_connected)
        yield _gauge(
            "nodemesh_agent_programs_attached", "1 once the BPF programs are attached.", s.programs_attached
        )
        programs = GaugeMetricFamily(
            "nodemesh_agent_program_install",
            "The BPF programs and how this agent got each: attached, adopted (from the pins) or replaced.",
            labels=["hook", "result"],
        )
        for hook, result in sorted(s.programs.items()):
            programs.add_metric([hook, result], 1)
        yield programs
        yield _gauge("nodemesh_agent_ready", "1 once programs are attached and a plan is applied.", s.ready)
        if self.pods is not None:
            yield _counter("nodemesh_agent_reconcile_errors", "Failed map reconciles.", self.pods.errors)
            yield _gauge("nodemesh_agent_meshed_pods", "Pods of the plan in the maps.", self.pods.meshed)
            yield _gauge(
                "nodemesh_agent_pending_pods",
                "Pods of the plan whose netns cannot be opened yet (retried).",
                len(self.pods.pending),
            )
        if self.hooks is not None:
            try:
                hooked = len(self.hooks.attached())
            except OSError as exc:
                log.warning("cannot list the inbound hooks for metrics: %s", exc)
            else:
                yield _gauge(
                    "nodemesh_datapath_inbound_hooks",
                    "Pod network namespaces with the inbound (STRICT mTLS) hook attached.",
                    hooked,
                )
        if self.maps is None:
            return
        try:
            counters = self.maps.counters()
            inbound_counters = self.maps.inbound_counters()
            entries = {
                "meshed_netns": len(self.maps.meshed()),
                "services": len(self.maps.services()),
                "inbound_policy": len(self.maps.inbound()),
            }
            exclusions = self.maps.exclusions()
            entries["excluded_ports"] = len(exclusions.ports)
            entries["excluded_cidrs"] = len(exclusions.cidrs)
        except DatapathError as exc:
            log.warning("cannot read the maps for metrics: %s", exc)
            return
        family = GaugeMetricFamily("nodemesh_datapath_map_entries", "Entries per BPF map.", labels=["map"])
        for name, count in entries.items():
            family.add_metric([name], count)
        yield family
        events = CounterMetricFamily(
            "nodemesh_datapath_events",
            "Data path events counted by the BPF programs: redirected, origdst_hit, origdst_miss, skips.",
            labels=["event"],
        )
        for counter in Counter:
            events.add_metric([counter.value], counters.get(counter, 0))
        yield events
        refused = CounterMetricFamily(
            "nodemesh_datapath_inbound_refused",
            "New plaintext connections to STRICT pods refused (RST) by the inbound hook, by reason.",
            labels=["reason"],
        )
        accepted = CounterMetricFamily(
            "nodemesh_datapath_inbound_accepted",
            "New connections to meshed pods the inbound hook let through, by reason.",
            labels=["reason"],
        )
        for inbound in InboundCounter:
            verdict = refused if inbound.refused else accepted
            verdict.add_metric([inbound.reason], inbound_counters.get(inbound, 0))
        yield refused
        yield accepted


class IdentityView(Protocol):
    """The identity manager's numbers (IdentityManager implements it)."""

    def metrics(self) -> IdentityMetrics: ...


class IdentityCollector(Collector):
    """The workload certificates of this node: held, requested (by result), renewed, and the time left
    until the first one expires (alert on it: renewals start at half the lifetime)."""

    def __init__(self, identities: IdentityView) -> None:
        self._identities = identities

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        m = self._identities.metrics()
        yield _gauge(
            "nodemesh_agent_certificates", "Workload certificates held, one per identity.", m.certificates
        )
        requests = CounterMetricFamily(
            "nodemesh_agent_certificate_requests",
            "Certificate requests to the CA by result: ok, denied (node not authorized), error.",
            labels=["result"],
        )
        for result in IssuanceResult:
            requests.add_metric([result.value], m.requests.get(result, 0))
        yield requests
        yield _counter(
            "nodemesh_agent_certificate_renewals",
            "Certificates replaced by a new one before they expired.",
            m.renewals,
        )
        if m.seconds_to_earliest_expiry is not None:
            yield _gauge(
                "nodemesh_agent_certificate_earliest_expiry_seconds",
                "Seconds until the first held certificate expires (absent while none is held).",
                m.seconds_to_earliest_expiry,
            )


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))
