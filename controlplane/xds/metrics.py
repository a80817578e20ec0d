"""Prometheus metrics of the xDS server, on a registry passed in (no global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.xds.typeurls import short_name

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pushes = Counter(
            "nodemesh_xds_pushes", "xDS responses sent", ["type", "variant"], registry=registry
        )
        self.push_latency = Histogram(
            "nodemesh_xds_push_latency_seconds",
            "From the event that caused a response (request or new snapshot) to its write completing",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.connected = Gauge(
            "nodemesh_xds_connected_streams", "Connected ADS streams", ["variant"], registry=registry
        )
        self.nacks = Counter("nodemesh_xds_nacks", "NACKs received", ["type"], registry=registry)
        self.bytes_sent = Counter(
            "nodemesh_xds_sent_bytes", "Bytes of xDS responses sent", ["type"], registry=registry
        )
        self.rejected_streams = Counter(
            "nodemesh_xds_rejected_streams", "Streams ended for a malformed request", registry=registry
        )

    def observe_push(self, type_url: str, variant: str, size: int, latency: float) -> None:
        label = short_name(type_url)
        self.pushes.labels(label, variant).inc()
        self.bytes_sent.labels(label).inc(size)
        self.push_latency.labels(label).observe(latency)

    def observe_nack(self, type_url: str) -> None:
        self.nacks.labels(short_name(type_url)).inc()
