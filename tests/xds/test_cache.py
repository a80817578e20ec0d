"""The snapshot cache: consistency on set, defaults, and per-node watches."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.errors import InconsistentSnapshotError
from tests.xds import builders as b


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_inconsistent_snapshot_is_refused_and_the_old_one_kept() -> None:
    cache = SnapshotCache()
    good = b.mesh(cache.pool, {"a": (1,)})
    cache.set_snapshot("n", good)
    with pytest.raises(InconsistentSnapshotError):
        cache.set_snapshot("n", b.snapshot(cache.pool, b.eds_cluster("x")))
    assert cache.get("n") is good


def test_default_serves_nodes_without_their_own_and_clear_falls_back() -> None:
    cache = SnapshotCache()
    default, own = b.mesh(cache.pool, {"d": (1,)}), b.mesh(cache.pool, {"o": (1,)})
    assert cache.get("n") is None
    cache.set_default(default)
    cache.set_snapshot("n", own)
    assert (cache.get("n"), cache.get("other")) == (own, default)
    cache.clear("n")
    assert cache.get("n") is default
    assert cache.node_ids() == frozenset()


async def test_watch_wakes_only_for_its_node() -> None:
    cache = SnapshotCache()
    first = b.mesh(cache.pool, {"a": (1,)})
    cache.set_snapshot("n1", first)
    watch = cache.watch("n1")
    assert await watch.next(None) is first
    waiting = asyncio.create_task(watch.next(first))
    await settle()
    cache.set_snapshot("n2", b.mesh(cache.pool, {"b": (1,)}))
    cache.set_snapshot("n1", first)  # the same snapshot again is no change
    await settle()
    assert not waiting.done()
    second = b.mesh(cache.pool, {"a": (2,)})
    cache.set_snapshot("n1", second)
    assert await asyncio.wait_for(waiting, 1) is second


async def test_set_default_wakes_nodes_without_their_own() -> None:
    cache = SnapshotCache()
    waiting = asyncio.create_task(cache.watch("n").next(None))
    await settle()
    default = b.mesh(cache.pool, {"d": (1,)})
    cache.set_default(default)
    assert await asyncio.wait_for(waiting, 1) is default
