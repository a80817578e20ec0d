"""Watch restarts and relists of the Kubernetes informers, read from their stats at scrape time.

A collector rather than counters bumped in the informer: the informer already counts (`InformerStats`), so
the numbers cannot drift from it, and the watch loop stays free of metrics code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from controlplane.model.refs import Kind
from controlplane.sources.kube.informer import InformerStats, WatchEnd
from controlplane.sources.kube.resources import ResourceType

log = logging.getLogger(__name__)


class WatchStats(Protocol):
    """What the collector reads of an informer (`Informer` has both)."""

    @property
    def resource(self) -> ResourceType: ...

    @property
    def stats(self) -> InformerStats: ...


class WatchMetrics(Collector):
    """`nodemesh_kube_watch_restarts{kind,reason}` and `nodemesh_kube_relists{kind}`.

    Every watch that ends is restarted, so a restart is counted per WatchEnd (TIMEOUT is routine, the
    others are not). Relists are the lists after the first: each follows a 410 (or a failed relist's retry).
    """

    def __init__(self, informers: Callable[[], Iterable[WatchStats]]) -> None:
        self._informers = informers

    def collect(self) -> Iterator[CounterMetricFamily]:
        restarts = CounterMetricFamily(
            "nodemesh_kube_watch_restarts",
            "Kubernetes watches ended and restarted, by kind and why they ended (timeout is routine).",
            labels=["kind", "reason"],
        )
        relists = CounterMetricFamily(
            "nodemesh_kube_relists",
            "Kubernetes lists after the first, by kind: each follows a 410 (resourceVersion expired).",
            labels=["kind"],
        )
        for informer in self._informers():
            try:
                kind = Kind(informer.resource.kind)
            except ValueError:
                continue  # not a model kind: no bounded label for it
            stats = informer.stats
            for end in WatchEnd:
                restarts.add_metric([kind.value, end.value], stats.watch_ends.get(end, 0))
            relists.add_metric([kind.value], max(0, stats.lists - 1))
        yield restarts
        yield relists
