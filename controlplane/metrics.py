"""The control plane's own metrics (the xDS transport registers its own in controlplane.xds.metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.convergence import ConvergenceObserver, ConvergenceOutcome
from controlplane.meshstate import PushReason
from controlplane.model.diagnostics import Severity
from controlplane.xds.debounce import DebounceObserver

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Convergence includes the debounce wait and the proxies' own work: up to the 60 s default timeout.
_CONVERGENCE_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# 1 KiB .. 64 MiB by powers of 4.
_BYTES = tuple(float(1024 * 4**i) for i in range(9))


class ControlPlaneMetrics(DebounceObserver, ConvergenceObserver):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pushes = Counter("nodemesh_pushes", "Config pushes by reason.", ["reason"], registry=registry)
        for reason in PushReason:
            self.pushes.labels(reason.value)
        self.translate_seconds = Histogram(
            "nodemesh_translate_seconds",
            "Time to translate the model for every node.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.push_seconds = Histogram(
            "nodemesh_push_seconds",
            "Time from a debounced change to every node's snapshot installed.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.nodes = Gauge("nodemesh_nodes", "Nodes the control plane builds config for.", registry=registry)
        self.diagnostics = Gauge(
            "nodemesh_config_diagnostics",
            "Current config problems by severity.",
            ["severity"],
            registry=registry,
        )
        for severity in Severity:
            self.diagnostics.labels(severity.value)
        self.convergence_seconds = Histogram(
            "nodemesh_convergence_seconds",
            "From a change being seen to every connected proxy of the nodes it changed having ACKed it.",
            buckets=_CONVERGENCE_SECONDS,
            registry=registry,
        )
        self.convergence_outcomes = Counter(
            "nodemesh_convergence_pushes",
            "Pushes tracked to the end by outcome: converged, nacked (a proxy refused it) or timeout.",
            ["outcome"],
            registry=registry,
        )
        for outcome in ConvergenceOutcome:
            self.convergence_outcomes.labels(outcome.value)
        self.proxies_not_synced = Gauge(
            "nodemesh_proxies_not_synced",
            "Connected xDS streams not holding their node's newest config, ACKed (NACKed ones included).",
            registry=registry,
        )
        self.debounce_wait_seconds = Histogram(
            "nodemesh_debounce_wait_seconds",
            "How long changes waited in the debouncer before their push started.",
            buckets=_SECONDS,
            registry=registry,
        )
        self.debounce_coalesced = Counter(
            "nodemesh_debounce_coalesced_notifications",
            "Change notifications merged into a push already pending.",
            registry=registry,
        )
        self.node_config_bytes = Histogram(
            "nodemesh_node_config_bytes",
            "Encoded bytes of a node's whole snapshot, observed for each node whose config a push changed.",
            buckets=_BYTES,
            registry=registry,
        )
        self.node_config_max_bytes = Gauge(
            "nodemesh_node_config_max_bytes",
            "Encoded bytes of the largest node snapshot.",
            registry=registry,
        )

    def track_proxies_not_synced(self, count: Callable[[], float]) -> None:
        """Read the not-synced gauge from `count` at scrape time."""
        self.proxies_not_synced.set_function(count)

    def debounced(self, *, waited: float, notifications: int) -> None:
        self.debounce_wait_seconds.observe(waited)
        if notifications > 1:
            self.debounce_coalesced.inc(notifications - 1)

    def push_converged(self, *, outcome: ConvergenceOutcome, seconds: float) -> None:
        self.convergence_outcomes.labels(outcome.value).inc()
        if outcome is ConvergenceOutcome.CONVERGED:
            self.convergence_seconds.observe(seconds)
