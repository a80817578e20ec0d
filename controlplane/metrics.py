"""The control plane's own metrics (the xDS transport registers its own in controlplane.xds.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.meshstate import PushReason
from controlplane.model.diagnostics import Severity

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ControlPlaneMetrics:
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
