from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from controlplane.sources.rawxds import RawXdsSource
from controlplane.xds import typeurls
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.debounce import Debouncer
from controlplane.xds.snapshot import Snapshot
from tests.sources.test_rawdir import cluster, write

EDS_CLUSTER = """\
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: {name}
type: EDS
eds_cluster_config: {{eds_config: {{ads: {{}}}}}}
"""

ENDPOINTS = """\
"@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
cluster_name: {name}
"""


@contextlib.asynccontextmanager
async def running(source: RawXdsSource) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled(), task.exception()


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def cluster_names(snapshot: Snapshot | None) -> list[str]:
    assert snapshot is not None
    return sorted(snapshot.of_type(typeurls.CLUSTER))


def make(tmp_path: Path, cache: SnapshotCache, ready: asyncio.Event | None = None) -> RawXdsSource:
    return RawXdsSource(
        directory=tmp_path,
        cache=cache,
        debouncer=Debouncer(quiet=0.01, max_wait=0.05),
        poll_interval=0.02,
        ready=ready,
    )


async def test_initial_load_sets_the_default_snapshot_and_readiness(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", cluster("a") + "---\n" + cluster("b"))
    cache, ready = SnapshotCache(), asyncio.Event()
    async with running(make(tmp_path, cache, ready)):
        await asyncio.wait_for(ready.wait(), 5)
        assert cluster_names(cache.get("any-node")) == ["a", "b"]


async def test_empty_directory_is_ready_with_an_empty_snapshot(tmp_path: Path) -> None:
    cache, ready = SnapshotCache(), asyncio.Event()
    async with running(make(tmp_path, cache, ready)):
        await asyncio.wait_for(ready.wait(), 5)
        snapshot = cache.get("n")
        assert snapshot is not None and len(snapshot) == 0


async def test_edits_reach_the_cache(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", cluster("a"))
    cache = SnapshotCache()
    async with running(make(tmp_path, cache)):
        await until(lambda: cache.get("n") is not None)
        write(tmp_path / "c.yaml", cluster("a") + "---\n" + cluster("b"))
        await until(lambda: cluster_names(cache.get("n")) == ["a", "b"])
        (tmp_path / "c.yaml").unlink()
        await until(lambda: cluster_names(cache.get("n")) == [])


async def test_per_node_snapshots_follow_their_directory(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", cluster("shared"))
    cache = SnapshotCache()
    async with running(make(tmp_path, cache)):
        await until(lambda: cache.get("node-a") is not None)
        assert cluster_names(cache.get("node-a")) == ["shared"]
        write(tmp_path / "nodes" / "node-a" / "x.yaml", cluster("own"))
        await until(lambda: cluster_names(cache.get("node-a")) == ["own", "shared"])
        assert cluster_names(cache.get("node-b")) == ["shared"]
        # A change of the defaults reaches the node's own snapshot too.
        write(tmp_path / "c.yaml", cluster("shared2"))
        await until(lambda: cluster_names(cache.get("node-a")) == ["own", "shared2"])
        (tmp_path / "nodes" / "node-a" / "x.yaml").unlink()
        await until(lambda: "node-a" not in cache.node_ids())
        assert cluster_names(cache.get("node-a")) == ["shared2"]


async def test_inconsistent_change_keeps_the_previous_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "c.yaml", EDS_CLUSTER.format(name="a") + "---\n" + ENDPOINTS.format(name="a"))
    cache = SnapshotCache()
    source = make(tmp_path, cache)
    async with running(source):
        await until(lambda: cache.get("n") is not None)
        good = cache.get("n")
        caplog.set_level(logging.ERROR)
        # Cluster "b" wants endpoints "b", which do not exist: the cache refuses the snapshot.
        write(tmp_path / "c.yaml", EDS_CLUSTER.format(name="a") + "---\n" + EDS_CLUSTER.format(name="b"))
        await until(lambda: any("previous one stays" in r.getMessage() for r in caplog.records))
        assert cache.get("n") is good
        assert "references missing ClusterLoadAssignment 'b'" in caplog.text


async def test_bad_document_is_reported_and_the_rest_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    write(tmp_path / "c.yaml", cluster("a") + "---\n" + cluster("b", timeout="never"))
    cache = SnapshotCache()
    source = make(tmp_path, cache)
    async with running(source):
        await until(lambda: cache.get("n") is not None)
        assert cluster_names(cache.get("n")) == ["a"]
        [line] = source.diagnostics()
        assert "c.yaml: document 1:" in line
        assert "connect_timeout" in line
        assert "c.yaml: document 1:" in caplog.text


async def test_vanished_directory_keeps_the_last_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source_dir = tmp_path / "src"
    write(source_dir / "c.yaml", cluster("a"))
    cache = SnapshotCache()
    async with running(make(source_dir, cache)):
        await until(lambda: cache.get("n") is not None)
        caplog.set_level(logging.INFO)
        moved = tmp_path / "moved"
        source_dir.rename(moved)
        await until(lambda: "cannot read the raw xDS directory" in caplog.text)
        assert cluster_names(cache.get("n")) == ["a"]
        moved.rename(source_dir)
        write(source_dir / "c.yaml", cluster("b"))
        await until(lambda: cluster_names(cache.get("n")) == ["b"])
        assert "readable again" in caplog.text
