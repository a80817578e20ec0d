"""ModelProjection: informer events to model events and diagnostics, without a server."""

from __future__ import annotations

import copy
from typing import Any

from controlplane.model.diagnostics import Reason
from controlplane.model.objects import Delete, Upsert
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.workload import PodPhase, Workload
from controlplane.sources.kube.informer import EventType, InformerEvent
from controlplane.sources.kube.kinds import HTTP_ROUTES, PODS
from controlplane.sources.kube.projection import ModelProjection
from controlplane.sources.kube.resources import ObjectRef as KubeRef
from controlplane.sources.kube.resources import ResourceType
from tests.model.builders import fixture
from tests.sources.cluster import http_route

ROUTE = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews")


def _event(kind: EventType, resource: ResourceType, obj: dict[str, Any]) -> InformerEvent:
    return InformerEvent(type=kind, resource=resource, ref=KubeRef.of(obj), obj=obj)


def _route(generation: int, weight: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = http_route(rules=[{"backendRefs": [{"name": "reviews", "port": 9080, "weight": weight}]}])
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


def test_keeps_the_last_valid_version_and_clears_everything_on_delete() -> None:
    projection = ModelProjection(status_owned=[HTTP_ROUTES])
    added = projection.apply(_event(EventType.ADDED, HTTP_ROUTES, _route(1)))
    assert [type(e) for e in added.events] == [Upsert]
    valid = projection.objects[ROUTE]
    broken = projection.apply(_event(EventType.MODIFIED, HTTP_ROUTES, _route(2, weight=-1)))
    assert broken.events == () and broken.diagnostics_changed
    assert projection.objects[ROUTE] == valid
    assert {d.reason for d in projection.diagnostics()} == {Reason.OUT_OF_RANGE, Reason.KEPT_LAST_VALID}
    deleted = projection.apply(_event(EventType.DELETED, HTTP_ROUTES, _route(2, weight=-1)))
    assert deleted.events == (Delete(ref=ROUTE),) and deleted.diagnostics_changed
    assert projection.diagnostics() == () and dict(projection.objects) == {}


def test_an_object_invalid_from_the_start_has_diagnostics_but_no_events() -> None:
    projection = ModelProjection()
    change = projection.apply(_event(EventType.ADDED, HTTP_ROUTES, _route(1, weight=-1)))
    assert change.events == ()
    assert [d.reason for d in projection.diagnostics()] == [Reason.OUT_OF_RANGE]
    gone = projection.apply(_event(EventType.DELETED, HTTP_ROUTES, _route(1, weight=-1)))
    assert gone.events == () and gone.diagnostics_changed and projection.diagnostics() == ()


def test_status_only_changes_of_owned_kinds_are_skipped_but_pod_status_counts() -> None:
    projection = ModelProjection(status_owned=[HTTP_ROUTES])
    projection.apply(_event(EventType.ADDED, HTTP_ROUTES, _route(1)))
    assert projection.apply(_event(EventType.MODIFIED, HTTP_ROUTES, _route(1, status={"parents": []}))).empty
    assert not projection.apply(_event(EventType.MODIFIED, HTTP_ROUTES, _route(2, weight=3))).empty
    pod = fixture("pod.json")
    projection.apply(_event(EventType.ADDED, PODS, pod))
    finished = copy.deepcopy(pod)
    finished["status"]["phase"] = "Succeeded"
    change = projection.apply(_event(EventType.MODIFIED, PODS, finished))
    [event] = change.events
    assert isinstance(event, Upsert) and isinstance(event.obj, Workload)
    assert event.obj.phase is PodPhase.SUCCEEDED
    # The same again (a resync): no event.
    assert projection.apply(_event(EventType.MODIFIED, PODS, copy.deepcopy(finished))).empty
