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
        self._push_children: dict[tuple[str, str], tuple[Counter, Counter, Histogram]] = {}
        self.rejected_streams = Counter(
            "nodemesh_xds_rejected_streams", "Streams ended for a malformed request", registry=registry
        )

    def observe_push(self, type_url: str, variant: str, size: int, latency: float) -> None:
        # Every stream observes every push: look the labelled children up once (labels() takes a lock).
        children = self._push_children.get((type_url, variant))
        if children is None:
            label = short_name(type_url)
            children = self._push_children[(type_url, variant)] = (
                self.pushes.labels(label, variant),
                self.bytes_sent.labels(label),
                self.push_latency.labels(label),
            )
        pushes, bytes_sent, latency_histogram = children
        pushes.inc()
        bytes_sent.inc(size)
        latency_histogram.observe(latency)

    def observe_nack(self, type_url: str) -> None:
        self.nacks.labels(short_name(type_url)).inc()
