"""The manifest-directory source: layout, change detection, and what happens to bad input."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from controlplane.model.diagnostics import Location, Reason, Severity
from controlplane.model.objects import Delete, Upsert
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.routes import HTTPRoute
from controlplane.model.service import Service
from controlplane.model.snapshot import MeshSnapshot
from controlplane.sources.events import QueueSink, SourceUpdate
from controlplane.sources.files import (
    FileSource,
    ManifestDirectory,
    diff_objects,
    load_manifests,
    split_documents,
)

SAMPLES = Path(__file__).resolve().parents[2] / "manifests/samples/mesh"


def service_yaml(name: str, port: int = 80, ip: str = "198.19.128.1", ns: str = "shop") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: v1
        kind: Service
        metadata:
          name: {name}
          namespace: {ns}
        spec:
          clusterIP: {ip}
          ports:
            - port: {port}
        """
    )


def ref(name: str, ns: str = "shop") -> ObjectRef:
    return ObjectRef.service(ns, name)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def refresh(d: ManifestDirectory) -> None:
    assert d.refresh()


def test_split_documents() -> None:
    text = "# header\n---\na: 1\n---\n\n# only a comment\n--- \nb: 2\n...\n--- {c: 3}\n"
    docs = list(split_documents(text))
    assert [(d.index, d.line, d.text.strip()) for d in docs] == [
        (0, 3, "a: 1"),
        (1, 8, "b: 2"),
        (2, 10, "{c: 3}"),
    ]


def test_any_layout_recursive_and_only_manifest_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", service_yaml("a") + "---\n" + service_yaml("b", ip="198.19.128.2"))
    write(tmp_path / "deep/er/c.yml", service_yaml("c", ip="198.19.128.3"))
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            json.loads(
                json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": "shop", "labels": {"nodemesh.io/mesh": "enabled"}},
                    }
                )
            )
        ],
    }
    write(tmp_path / "ns.json", json.dumps(listing))
    write(tmp_path / "notes.txt", service_yaml("ignored-txt"))
    write(tmp_path / ".hidden.yaml", service_yaml("ignored-hidden"))
    write(tmp_path / "..2026_11_20/x.yaml", service_yaml("ignored-configmap-dir"))
    write(tmp_path / "other.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    d = ManifestDirectory(tmp_path)
    refresh(d)
    assert sorted(d.objects()) == sorted(
        [ref("a"), ref("b"), ref("c"), ObjectRef(kind=Kind.NAMESPACE, name="shop")]
    )
    assert d.diagnostics() == ()
    assert not d.refresh()  # nothing changed: nothing re-read


def test_samples_load_cleanly_into_a_snapshot() -> None:
    objects, diagnostics = load_manifests(SAMPLES)
    assert [str(x) for x in diagnostics] == []
    snapshot = MeshSnapshot.from_objects(objects)
    reviews = ObjectRef.service("shop", "reviews")
    assert [r.name for r in snapshot.producer_routes(reviews)] == ["reviews"]
    assert [r.name for r in snapshot.consumer_routes("web", reviews)] == ["reviews-from-web"]
    assert [p.name for p in snapshot.traffic_policies_for(ObjectRef.service("shop", "ratings"))] == [
        "ratings-chaos"
    ]
    assert snapshot.service_at("198.19.128.13", 50051) is not None


def test_changes_become_per_object_events(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", service_yaml("a") + "---\n" + service_yaml("b", ip="198.19.128.2"))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    before = d.objects()
    # Change a, drop b, add c.
    write(tmp_path / "one.yaml", service_yaml("a", port=81) + "---\n" + service_yaml("c", ip="198.19.128.3"))
    refresh(d)
    events = diff_objects(before, d.objects())
    assert [(type(e).__name__, e.ref) for e in events] == [
        ("Upsert", ref("a")),
        ("Delete", ref("b")),
        ("Upsert", ref("c")),
    ]
    upsert = events[0]
    assert isinstance(upsert, Upsert) and isinstance(upsert.obj, Service) and upsert.obj.ports[0].port == 81


def test_object_moved_between_files_is_not_deleted(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", service_yaml("a"))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    before = d.objects()
    (tmp_path / "one.yaml").unlink()
    write(tmp_path / "sub/two.yaml", service_yaml("a"))
    refresh(d)
    assert diff_objects(before, d.objects()) == ()


def test_removed_file_deletes_its_objects(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", service_yaml("a"))
    write(tmp_path / "two.yaml", service_yaml("b", ip="198.19.128.2"))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    before = d.objects()
    (tmp_path / "two.yaml").unlink()
    refresh(d)
    assert diff_objects(before, d.objects()) == (Delete(ref=ref("b")),)


def test_invalid_yaml_document_is_reported_and_the_others_load(tmp_path: Path) -> None:
    text = (
        service_yaml("a")
        + "---\nkind: Service\nmetadata: {name: [unclosed\n---\n"
        + service_yaml("c", ip="198.19.128.3")
    )
    write(tmp_path / "mixed.yaml", text)
    d = ManifestDirectory(tmp_path)
    refresh(d)
    assert sorted(d.objects()) == [ref("a"), ref("c")]
    (diag,) = d.diagnostics()
    assert diag.reason is Reason.INVALID_YAML and diag.severity is Severity.ERROR
    assert diag.location is not None
    assert (diag.location.file, diag.location.document) == ("mixed.yaml", 1)
    assert diag.location.line is not None and diag.location.line >= 12


def test_broken_file_keeps_its_last_good_objects_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    write(path, service_yaml("a") + "---\n" + service_yaml("b", ip="198.19.128.2"))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    good = d.objects()
    # Mid-edit: b's document no longer parses. b is kept (its document may still define it).
    write(
        path, service_yaml("a") + "---\n" + "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n bad: [\n"
    )
    refresh(d)
    assert d.objects() == good
    assert [x.reason for x in d.diagnostics()] == [Reason.INVALID_YAML]
    # Fixed, without b: now b is deleted and the diagnostic is gone.
    write(path, service_yaml("a"))
    refresh(d)
    assert diff_objects(good, d.objects()) == (Delete(ref=ref("b")),)
    assert d.diagnostics() == ()


def test_invalid_object_keeps_last_valid_version_and_new_invalid_object_is_left_out(tmp_path: Path) -> None:
    route = textwrap.dedent(
        """\
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: r, namespace: shop}
        spec:
          parentRefs: [{group: "", kind: Service, name: a, port: 80}]
          rules:
            - backendRefs: [{name: a, port: 80, weight: WEIGHT}]
        """
    )
    write(tmp_path / "route.yaml", route.replace("WEIGHT", "5"))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    good = d.objects()
    write(tmp_path / "route.yaml", route.replace("WEIGHT", "-5"))
    write(tmp_path / "new.yaml", route.replace("WEIGHT", "-1").replace("name: r,", "name: fresh,"))
    refresh(d)
    assert d.objects() == good
    diags = {(str(x.ref), x.field, x.reason, x.location.file if x.location else "") for x in d.diagnostics()}
    assert diags == {
        ("HTTPRoute/shop/r", "spec.rules[0].backendRefs[0].weight", Reason.OUT_OF_RANGE, "route.yaml"),
        ("HTTPRoute/shop/r", "", Reason.KEPT_LAST_VALID, "route.yaml"),
        ("HTTPRoute/shop/fresh", "spec.rules[0].backendRefs[0].weight", Reason.OUT_OF_RANGE, "new.yaml"),
    }
    kept = d.objects()[ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="r")]
    assert isinstance(kept, HTTPRoute) and kept.rules[0].backend_refs[0].weight == 5


def test_duplicates_first_file_in_path_order_wins(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", service_yaml("a", port=2))
    write(tmp_path / "a.yaml", service_yaml("a", port=1))
    d = ManifestDirectory(tmp_path)
    refresh(d)
    winner = d.objects()[ref("a")]
    assert isinstance(winner, Service) and winner.ports[0].port == 1
    (diag,) = d.diagnostics()
    assert (diag.reason, diag.ref, diag.location) == (
        Reason.DUPLICATE_OBJECT,
        ref("a"),
        Location(file="b.yaml", document=0, line=1),
    )
    assert "a.yaml" in diag.message
    (tmp_path / "a.yaml").unlink()
    refresh(d)
    survivor = d.objects()[ref("a")]
    assert isinstance(survivor, Service) and survivor.ports[0].port == 2
    assert d.diagnostics() == ()


def test_default_namespace_and_missing_directory(tmp_path: Path) -> None:
    write(tmp_path / "svc.yaml", service_yaml("a").replace("  namespace: shop\n", ""))
    d = ManifestDirectory(tmp_path, default_namespace="team")
    refresh(d)
    assert list(d.objects()) == [ref("a", ns="team")]
    missing = ManifestDirectory(tmp_path / "nope")
    missing.refresh()
    assert missing.objects() == {}
    assert [x.severity for x in missing.diagnostics()] == [Severity.WARNING]


async def _next(queue: asyncio.Queue[SourceUpdate]) -> SourceUpdate:
    return await asyncio.wait_for(queue.get(), timeout=10)


async def test_file_source_publishes_initial_state_then_changes(tmp_path: Path) -> None:
    write(tmp_path / "svc.yaml", service_yaml("a"))
    queue: asyncio.Queue[SourceUpdate] = asyncio.Queue(maxsize=16)
    source = FileSource(tmp_path, QueueSink(queue), poll_interval=0.02, name="local")
    task = asyncio.create_task(source.run())
    try:
        first = await _next(queue)
        assert source.synced.is_set()
        assert (first.source, first.synced, first.diagnostics) == ("local", True, ())
        assert [e.ref for e in first.events] == [ref("a")]
        write(tmp_path / "svc.yaml", service_yaml("a") + "---\n" + service_yaml("b", ip="198.19.128.2"))
        second = await _next(queue)
        assert [(type(e).__name__, e.ref) for e in second.events] == [("Upsert", ref("b"))]
        write(tmp_path / "svc.yaml", "kind: [\n")
        third = await _next(queue)
        assert third.events == () and third.diagnostics is not None
        assert [x.reason for x in third.diagnostics] == [Reason.INVALID_YAML]
        (tmp_path / "svc.yaml").unlink()
        fourth = await _next(queue)
        assert sorted(e.ref for e in fourth.events) == [ref("a"), ref("b")]
        assert all(isinstance(e, Delete) for e in fourth.events) and fourth.diagnostics == ()
        snapshot = MeshSnapshot.empty()
        for update in (first, second, third, fourth):
            snapshot = snapshot.apply_all(update.events)
        assert len(snapshot) == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_file_source_empty_directory_still_syncs(tmp_path: Path) -> None:
    queue: asyncio.Queue[SourceUpdate] = asyncio.Queue()
    source = FileSource(tmp_path, QueueSink(queue), poll_interval=0.02)
    task = asyncio.create_task(source.run())
    try:
        update = await _next(queue)
        assert update.synced and update.events == () and source.synced.is_set()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
