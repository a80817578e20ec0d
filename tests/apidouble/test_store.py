from __future__ import annotations

import pytest

from apidouble.errors import ApiError
from apidouble.store import EventType, Store

RESOURCE = ("", "configmaps")


def _put(store: Store, name: str, value: str) -> int:
    rv = store.next_rv()
    store.put(
        RESOURCE, {"metadata": {"name": name, "namespace": "d", "resourceVersion": str(rv)}, "v": value}
    )
    return rv


async def test_watch_replays_history_after_the_given_rv() -> None:
    store = Store()
    first = _put(store, "a", "1")
    _put(store, "a", "2")
    store.remove(RESOURCE, ("d", "a"), store.next_rv())
    replay, watcher = store.watch(RESOURCE, None, first)
    assert [c.type for c in replay] == [EventType.MODIFIED, EventType.DELETED]
    assert replay[-1].obj["metadata"]["resourceVersion"] == str(store.current_rv)
    _put(store, "b", "1")
    assert [c.obj["metadata"]["name"] for c in watcher.pending] == ["b"]
    store.unwatch(watcher)


async def test_snapshot_rewinds_to_an_older_rv() -> None:
    store = Store()
    first = _put(store, "a", "1")
    _put(store, "a", "2")
    _put(store, "b", "1")
    assert [o["v"] for o in store.snapshot(RESOURCE, None, first)] == ["1"]
    assert [o["metadata"]["name"] for o in store.snapshot(RESOURCE, None)] == ["a", "b"]


async def test_history_limit_compacts_so_old_rvs_expire() -> None:
    store = Store(history_limit=3)
    first = _put(store, "a", "0")
    for i in range(5):
        _put(store, "a", str(i))
    with pytest.raises(ApiError) as info:
        store.watch(RESOURCE, None, first)
    assert info.value.code == 410
    replay, watcher = store.watch(RESOURCE, None, store.current_rv - 3)
    assert len(replay) == 3
    store.unwatch(watcher)


async def test_slow_watcher_is_closed_when_its_backlog_overflows() -> None:
    store = Store(watcher_backlog=2)
    _, watcher = store.watch(RESOURCE, None, store.current_rv)
    for i in range(3):
        _put(store, f"o{i}", "x")
    assert watcher.closed
