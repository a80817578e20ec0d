"""The reconciler against fakes of its seams (the maps, the cookie source): what reaches the maps and when."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodeagent.datapath import DesiredState, MapError, NetnsError, PodSettings, ReconcileReport
from nodeagent.plan import NetnsRef, Plan, parse_plan
from nodeagent.reconciler import NetnsCookies, PodNetns, Reconciler, RetrySettings
from tests.nodeagent.planbuilders import node_settings, received, workload

FAST = RetrySettings(initial=0.01, maximum=0.05)


@dataclass
class FakeMaps:
    states: list[DesiredState] = field(default_factory=list)
    fail: bool = False

    def reconcile(self, desired: DesiredState) -> ReconcileReport:
        if self.fail:
            raise MapError("map update: No space left on device")
        self.states.append(desired)
        return ReconcileReport(meshed_added=len(desired.meshed))

    @property
    def meshed(self) -> dict[int, PodSettings]:
        return dict(self.states[-1].meshed) if self.states else {}


@dataclass
class FakeCookies:
    """Cookies by netns reference; a reference listed in `failures` fails that many times first."""

    cookies: dict[str, int]
    failures: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def resolve(self, ref: NetnsRef) -> PodNetns:
        key = str(ref)
        self.calls.append(key)
        if self.failures.get(key, 0) > 0:
            self.failures[key] -= 1
            raise NetnsError(f"cannot open {key}: No such file or directory")
        if key not in self.cookies:
            raise NetnsError(f"cannot open {key}: No such file or directory")
        return PodNetns(cookie=self.cookies[key], path=Path(key))


def plan_of(*uids_and_paths: tuple[str, str]) -> Plan:
    return parse_plan(received(node_settings(), *(workload(uid, path=path) for uid, path in uids_and_paths)))


@contextlib.asynccontextmanager
async def retrying(reconciler: Reconciler) -> AsyncIterator[None]:
    task = asyncio.create_task(reconciler.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_applies_the_plan_with_each_pods_cookie() -> None:
    maps = FakeMaps()
    reconciler = Reconciler(maps, FakeCookies({"/n/a": 11, "/n/b": 12}), retry=FAST)
    assert not reconciler.applied

    await reconciler.apply(plan_of(("a", "/n/a"), ("b", "/n/b")))
    assert set(maps.meshed) == {11, 12}

    await reconciler.apply(plan_of(("b", "/n/b")))
    assert set(maps.meshed) == {12}
    assert reconciler.applied and reconciler.meshed == 1 and not reconciler.pending


async def test_a_pod_whose_netns_cannot_be_opened_is_pending_and_retried() -> None:
    maps = FakeMaps()
    cookies = FakeCookies({"/n/a": 11, "/n/late": 13}, failures={"/n/late": 3})
    reconciler = Reconciler(maps, cookies, retry=FAST)
    async with retrying(reconciler):
        await reconciler.apply(plan_of(("a", "/n/a"), ("late", "/n/late")))
        # Applied without it: the others are not held back.
        assert set(maps.meshed) == {11}
        pending = reconciler.pending["late"]
        assert "No such file" in pending.reason and pending.attempts == 1

        async with asyncio.timeout(5):
            while 13 not in maps.meshed:  # noqa: ASYNC110 - the retry loop reconciles on its own schedule
                await asyncio.sleep(0.01)
    assert not reconciler.pending
    assert cookies.calls.count("/n/late") == 4  # three failures, then the cookie


async def test_a_pod_removed_from_the_plan_stops_being_retried() -> None:
    cookies = FakeCookies({"/n/a": 11})
    reconciler = Reconciler(FakeMaps(), cookies, retry=FAST)
    await reconciler.apply(plan_of(("a", "/n/a"), ("gone", "/n/gone")))
    assert set(reconciler.pending) == {"gone"}
    await reconciler.apply(plan_of(("a", "/n/a")))
    assert not reconciler.pending


async def test_the_nodes_own_netns_is_never_meshed() -> None:
    maps = FakeMaps()
    reconciler = Reconciler(
        maps, FakeCookies({"/n/host": 1}), retry=FAST, forbidden={1: "the node's own netns"}
    )
    await reconciler.apply(plan_of(("host", "/n/host")))
    assert maps.meshed == {}
    assert reconciler.pending["host"].reason == "the node's own netns"


async def test_map_failures_are_raised_and_counted() -> None:
    maps = FakeMaps(fail=True)
    reconciler = Reconciler(maps, FakeCookies({"/n/a": 11}), retry=FAST)
    with pytest.raises(MapError):
        await reconciler.apply(plan_of(("a", "/n/a")))
    assert reconciler.errors == 1


async def test_netns_cookies_are_cached_per_namespace_file(tmp_path: Path) -> None:
    lookups: list[Path] = []

    def lookup(path: Path) -> int:
        lookups.append(path)
        return 1000 + len(lookups)

    first, second = tmp_path / "ns1", tmp_path / "ns2"
    first.touch()
    second.touch()
    (tmp_path / "same-as-ns1").hardlink_to(first)
    cookies = NetnsCookies(lookup)

    one = await cookies.cookie(NetnsRef(path=str(first)))
    assert await cookies.cookie(NetnsRef(path=str(tmp_path / "same-as-ns1"))) == one  # same inode: cached
    assert await cookies.cookie(NetnsRef(path=str(second))) != one
    assert len(lookups) == 2
    with pytest.raises(NetnsError, match="cannot open the netns"):
        await cookies.cookie(NetnsRef(path=str(tmp_path / "missing")))
