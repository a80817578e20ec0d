"""StatusReporter with fakes of its two seams: what it writes, when it does not, and failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from controlplane.model.diagnostics import Diagnostic, Reason, Severity
from controlplane.model.refs import Kind, ObjectRef
from controlplane.status.errors import ObjectGoneError, StatusConflictError, StatusWriteError
from controlplane.status.reporter import (
    ReporterSettings,
    StatusObjects,
    StatusPatcher,
    StatusReporter,
    WriteOutcome,
)

ROUTE = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews")
POLICY = ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="shop", name="reviews")
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


def _route(rv: str, status: Mapping[str, object] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "reviews", "namespace": "shop", "generation": 2, "resourceVersion": rv},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}]},
    }
    if status is not None:
        obj["status"] = dict(status)
    return obj


def _policy(rv: str) -> dict[str, Any]:
    return {"metadata": {"name": "reviews", "namespace": "shop", "generation": 1, "resourceVersion": rv}}


class FakeObjects:
    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {}

    def status_objects(self) -> Iterable[tuple[ObjectRef, Mapping[str, object]]]:
        return list(self.objects.items())


class FakePatcher:
    """Records writes; raises scripted errors. It does not touch FakeObjects: like an informer cache that
    has not seen the write yet, until the test says so."""

    def __init__(self) -> None:
        self.writes: list[tuple[ObjectRef, dict[str, object], str]] = []
        self.errors: dict[ObjectRef, Exception] = {}
        self.written = asyncio.Event()

    async def patch_status(
        self, ref: ObjectRef, status: Mapping[str, object], *, resource_version: str
    ) -> None:
        error = self.errors.pop(ref, None)
        if error is not None:
            raise error
        self.writes.append((ref, dict(status), resource_version))
        self.written.set()


_objects: type[StatusObjects] = FakeObjects
_patcher: type[StatusPatcher] = FakePatcher


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def _reporter(objects: FakeObjects, patcher: FakePatcher, sleeps: Sleeps | None = None) -> StatusReporter:
    return StatusReporter(objects=objects, patcher=patcher, now=lambda: NOW, sleep=sleeps or Sleeps())


def _accepted(status: Mapping[str, object]) -> tuple[object, object]:
    parents: Any = status["parents"]
    accepted = next(c for c in parents[0]["conditions"] if c["type"] == "Accepted")
    return accepted["status"], accepted["reason"]


async def test_writes_what_differs_once_and_not_again_before_or_after_the_cache_catches_up() -> None:
    objects, patcher = FakeObjects(), FakePatcher()
    objects.objects = {ROUTE: _route("5"), POLICY: _policy("6")}
    reporter = _reporter(objects, patcher)
    reporter.update([], known={ROUTE, POLICY})
    assert await reporter.reconcile() is False
    assert [(ref, rv) for ref, _, rv in patcher.writes] == [(ROUTE, "5"), (POLICY, "6")]
    assert _accepted(patcher.writes[0][1]) == ("True", "Accepted")
    # The watch has not delivered the writes yet: the reporter remembers them.
    await reporter.reconcile()
    assert len(patcher.writes) == 2
    # Now it has (new resourceVersions, the written status): still nothing to do.
    objects.objects[ROUTE] = _route("7", patcher.writes[0][1])
    objects.objects[POLICY] = {**_policy("8"), "status": patcher.writes[1][1]}
    await reporter.reconcile()
    assert len(patcher.writes) == 2
    assert reporter.stats[WriteOutcome.WRITTEN] == 2


async def test_a_route_without_mesh_parents_and_without_status_is_left_alone() -> None:
    objects, patcher = FakeObjects(), FakePatcher()
    gateway_route = _route("5")
    gateway_route["spec"]["parentRefs"] = [{"name": "public-gw"}]
    objects.objects = {ROUTE: gateway_route}
    reporter = _reporter(objects, patcher)
    reporter.update([], known={ROUTE})
    await reporter.reconcile()
    assert patcher.writes == []


async def test_nothing_is_written_before_the_first_update() -> None:
    objects, patcher = FakeObjects(), FakePatcher()
    objects.objects = {ROUTE: _route("5")}
    reporter = _reporter(objects, patcher)
    reporter.refresh()
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert patcher.writes == []


async def test_new_diagnostics_rewrite_the_status_and_someone_elses_overwrite_is_put_right() -> None:
    objects, patcher = FakeObjects(), FakePatcher()
    objects.objects = {ROUTE: _route("5")}
    reporter = _reporter(objects, patcher)
    reporter.update([], known={ROUTE})
    await reporter.reconcile()
    objects.objects[ROUTE] = _route("6", patcher.writes[-1][1])
    bad = Diagnostic(
        severity=Severity.ERROR, reason=Reason.OUT_OF_RANGE, message="no", ref=ROUTE, field="spec.x"
    )
    reporter.update([bad], known=set())
    await reporter.reconcile()
    assert _accepted(patcher.writes[-1][1]) == ("False", "UnsupportedValue")
    assert patcher.writes[-1][2] == "6"
    objects.objects[ROUTE] = _route("9", {"parents": []})  # wiped by someone else
    await reporter.reconcile()
    assert len(patcher.writes) == 3
    assert _accepted(patcher.writes[-1][1]) == ("False", "UnsupportedValue")


async def test_gone_objects_are_skipped_conflicts_and_failures_retried() -> None:
    objects, patcher = FakeObjects(), FakePatcher()
    other = ObjectRef(kind=Kind.GRPC_ROUTE, namespace="shop", name="ratings")
    objects.objects = {ROUTE: _route("5"), POLICY: _policy("6"), other: _route("7")}
    patcher.errors = {
        ROUTE: StatusConflictError("409"),
        POLICY: ObjectGoneError("404"),
        other: StatusWriteError("500"),
    }
    reporter = _reporter(objects, patcher)
    reporter.update([], known={ROUTE, POLICY, other})
    assert await reporter.reconcile() is True
    assert patcher.writes == []
    stats = reporter.stats
    assert (stats[WriteOutcome.CONFLICT], stats[WriteOutcome.GONE], stats[WriteOutcome.FAILED]) == (1, 1, 1)
    del objects.objects[POLICY]  # the deletion reaches the cache
    objects.objects[ROUTE] = _route("10")  # so does the change that caused the conflict
    assert await reporter.reconcile() is False
    assert sorted((str(ref), rv) for ref, _, rv in patcher.writes) == [
        ("GRPCRoute/shop/ratings", "7"),
        ("HTTPRoute/shop/reviews", "10"),
    ]


async def test_writes_are_paced() -> None:
    objects, patcher, sleeps = FakeObjects(), FakePatcher(), Sleeps()
    refs = [ObjectRef(kind=Kind.TRAFFIC_POLICY, namespace="shop", name=f"p{i}") for i in range(4)]
    objects.objects = {ref: _policy(str(i)) for i, ref in enumerate(refs)}
    reporter = StatusReporter(
        objects=objects,
        patcher=patcher,
        now=lambda: NOW,
        sleep=sleeps,
        settings=ReporterSettings(write_interval=0.25),
    )
    reporter.update([], known=set(refs))
    await reporter.reconcile()
    assert len(patcher.writes) == 4
    assert sleeps.delays == [0.25, 0.25, 0.25]


async def test_run_reconciles_after_updates_and_backs_off_after_a_failure() -> None:
    objects, patcher, sleeps = FakeObjects(), FakePatcher(), Sleeps()
    objects.objects = {ROUTE: _route("5")}
    patcher.errors = {ROUTE: StatusWriteError("500")}
    settings = ReporterSettings(retry_delay=3.0, pass_interval=0.5)
    reporter = StatusReporter(
        objects=objects, patcher=patcher, now=lambda: NOW, sleep=sleeps, settings=settings
    )
    task = asyncio.create_task(reporter.run())
    try:
        reporter.update([], known={ROUTE})
        async with asyncio.timeout(5):
            await patcher.written.wait()
        assert sleeps.delays[0] == 3.0, "the failed pass waits retry_delay before trying again"
        assert [ref for ref, _, _ in patcher.writes] == [ROUTE]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
