from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from prometheus_client import CollectorRegistry

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.server import XdsServer
from controlplane.xds.status import ProxyStatusRegistry
from tests.xds.harness import XdsHarness, make_settings


@pytest_asyncio.fixture
async def xds() -> AsyncIterator[XdsHarness]:
    cache = SnapshotCache()
    registry = ProxyStatusRegistry()
    metrics = CollectorRegistry()
    async with XdsServer(cache, registry, make_settings(), metrics=XdsMetrics(metrics)) as server:
        (port,) = await server.listen(["127.0.0.1:0"])
        harness = XdsHarness(
            cache=cache, registry=registry, server=server, target=f"127.0.0.1:{port}", metrics=metrics
        )
        try:
            yield harness
        finally:
            await harness.close()
