"""Incremental translation (build counts), determinism, and config size that grows additively."""

from __future__ import annotations

import dataclasses
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from xds.type.matcher.v3 import matcher_pb2

from controlplane.model.objects import Delete, MeshObject, Upsert
from controlplane.model.routes import HTTPRoute
from controlplane.model.service import Service
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate import naming
from controlplane.translate.config import NodeConfig, ResourceKind
from controlplane.translate.translator import BuildKind, Translator
from tests.translate.builders import (
    backend,
    endpoint,
    endpoint_slice,
    http_port,
    http_route,
    mesh,
    namespace,
    node,
    parent,
    pod,
    rule,
    service,
)
from tests.translate.sample import sample_mesh

NODES = ("node-a", "node-b")


def _all(translator: Translator, m: MeshSnapshot) -> dict[str, NodeConfig]:
    config = translator.translate_mesh(m)
    return {n: translator.translate_node(m, n, config) for n in NODES}


def _delta(translator: Translator, before: Counter[BuildKind]) -> dict[str, int]:
    return {k.value: v - before[k] for k, v in translator.builds.items() if v != before[k]}


def _bytes(config: NodeConfig) -> dict[ResourceKind, dict[str, bytes]]:
    return {
        kind: {name: m.SerializeToString(deterministic=True) for name, m in config.resources(kind).items()}
        for kind in ResourceKind
    }


def _changes(new: NodeConfig, old: NodeConfig) -> dict[str, tuple[list[str], list[str]]]:
    changes = new.changed_since(old)
    return {k.value: (sorted(c.changed), sorted(c.removed)) for k, c in changes.kinds.items()}


def test_unchanged_snapshot_builds_nothing() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    # An equal object re-applied leaves the snapshot's content as it was: nothing is rebuilt.
    same = m.apply(Upsert(obj=m.services[next(iter(sorted(m.services)))]))
    second = _all(translator, same)
    assert _delta(translator, before) == {}
    assert all(first[n] is second[n] for n in NODES)


def test_endpoint_change_rebuilds_only_that_load_assignment() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    changed = m.apply(
        Upsert(
            obj=endpoint_slice(
                "shop", "reviews-v1", endpoint("10.1.0.20", zone="z1"), endpoint("10.1.0.99", zone="z1")
            )
        )
    )
    second = _all(translator, changed)
    assert _delta(translator, before) == {"load_assignment": 1}
    for n in NODES:
        a, b = first[n], second[n]
        assert a.listeners is b.listeners and a.clusters is b.clusters and a.route_configs is b.route_configs
        assert a.workloads is b.workloads and a.node_settings is b.node_settings
        assert _changes(b, a) == {"load_assignment": (["shop/reviews-v1:80"], [])}
        assert all(
            b.load_assignments[k] is v for k, v in a.load_assignments.items() if k != "shop/reviews-v1:80"
        )
    mesh_changes = translator.translate_mesh(changed).changed_since(translator.translate_mesh(changed))
    assert not mesh_changes


def test_route_change_rebuilds_only_the_route_configs_it_attaches_to() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    route = m.http_routes[next(r for r in m.http_routes if r.name == "reviews-split")]
    edited = dataclasses.replace(route, rules=route.rules[1:])
    second = _all(translator, m.apply(Upsert(obj=edited)))
    assert _delta(translator, before) == {"route_config": 1, "check": 1}
    for n in NODES:
        a, b = first[n], second[n]
        assert a.listeners is b.listeners and a.clusters is b.clusters
        assert a.load_assignments is b.load_assignments
        assert _changes(b, a) == {"route_config": (["shop/reviews:80"], [])}


def test_new_service_adds_its_resources_and_rebuilds_the_shared_listener_once() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    second = _all(translator, m.apply(Upsert(obj=service("shop", "extra", "10.96.9.9", http_port(80)))))
    assert _delta(translator, before) == {
        "cluster": 1,
        "load_assignment": 1,
        "route_config": 1,
        "filter_chain": 1,
        "policy": 1,
        "service_vip": 1,
        # `outbound_services` holds every Service chain and is one object for all nodes: built once.
        "listener": 1,
    }
    added: tuple[list[str], list[str]] = (["shop/extra:80"], [])
    assert _changes(second["node-a"], first["node-a"]) == {
        "listener": (["outbound_services"], []),
        "cluster": added,
        "load_assignment": added,
        "route_config": added,
        "service_vip": (["shop/extra"], []),
    }


def test_deleted_service_removes_its_resources() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    ref = next(r for r in m.services if r.name == "postgres")
    second = _all(translator, m.apply(Delete(ref=ref)))
    gone: tuple[list[str], list[str]] = ([], ["db/postgres:5432"])
    assert _changes(second["node-b"], first["node-b"]) == {
        "listener": (["outbound_services"], []),
        "cluster": gone,
        "load_assignment": gone,
        "service_vip": ([], ["db/postgres"]),
    }


def test_new_pod_touches_only_its_node_and_the_shared_pods_listener() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    second = _all(
        translator, m.apply(Upsert(obj=pod("db", "postgres-1", "node-b", "10.1.0.41", sa="postgres")))
    )
    # The pod listeners of the mesh (its IP can now be dialled over HBONE), built once for every node.
    assert _delta(translator, before) == {"workload": 1, "hbone": 1, "listener": 1}
    assert _changes(second["node-a"], first["node-a"]) == {
        "listener": (["outbound_pod_nodes", "outbound_pods"], [])
    }
    assert second["node-a"].listeners["outbound_pods"] is second["node-b"].listeners["outbound_pods"]
    # Its node learns it: its plan, its identity's originate cluster (new on the node), and the HBONE
    # listeners that know local pods (source IP -> identity, CONNECT authorities, its TCP authorization).
    # The HTTP pod listener is untouched: postgres declares no HTTP port.
    assert _changes(second["node-b"], first["node-b"]) == {
        "workload": (["uid-db-postgres-1"], []),
        "cluster": (["hbone|db|postgres"], []),
        "listener": (
            ["hbone_inbound", "hbone_originate", "inbound_tcp", "outbound_pod_nodes", "outbound_pods"],
            [],
        ),
    }


def test_policy_change_reaches_the_route_configs_that_hash_to_its_target() -> None:
    """reviews' routes (and reviews-v1's default route) send to reviews-v1, whose consistent-hash policy
    sets their hash policy."""
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    ref = next(r for r in m.traffic_policies if r.name == "reviews-v1")
    second = _all(translator, m.apply(Delete(ref=ref)))
    changes = _changes(second["node-a"], first["node-a"])
    assert changes["cluster"] == (["shop/reviews-v1:80"], [])
    assert changes["route_config"] == (["shop/reviews-v1:80", "shop/reviews:80", "shop/reviews:80@web"], [])
    assert _bytes(second["node-a"]) == _bytes(Translator().translate_node(m.apply(Delete(ref=ref)), "node-a"))


def test_first_config_reports_everything_as_changed() -> None:
    config = Translator().translate_node(sample_mesh(), "node-a")
    changes = config.changed_since(None)
    assert {k: sorted(changes.of(k).changed) for k in ResourceKind} == {
        k: sorted(config.resources(k)) for k in ResourceKind
    }


def _objects() -> list[MeshObject]:
    return list(sample_mesh())


@settings(max_examples=25, deadline=None)
@given(st.permutations(_objects()))
def test_translation_is_deterministic_whatever_the_object_order(objects: list[MeshObject]) -> None:
    expected = {n: _bytes(c) for n, c in _all(Translator(), mesh(*_objects())).items()}
    got = {n: _bytes(c) for n, c in _all(Translator(), MeshSnapshot.from_objects(objects)).items()}
    assert got == expected


def _matcher_size(matcher: matcher_pb2.Matcher) -> int:
    """Map entries, list entries and predicates in the matcher: what Envoy holds per connection lookup."""
    count = 0

    def predicate(p: matcher_pb2.Matcher.MatcherList.Predicate) -> int:
        which = p.WhichOneof("match_type")
        if which == "single_predicate":
            return 1
        inner = p.and_matcher if which == "and_matcher" else p.or_matcher
        return sum(predicate(x) for x in inner.predicate)

    def walk(m: matcher_pb2.Matcher) -> None:
        nonlocal count
        for entry in m.matcher_tree.exact_match_map.map.values():
            count += 1
            if entry.HasField("matcher"):
                walk(entry.matcher)
        for fm in m.matcher_list.matchers:
            count += 1 + predicate(fm.predicate)
            if fm.on_match.HasField("matcher"):
                walk(fm.on_match.matcher)
        if m.on_no_match.HasField("matcher"):
            walk(m.on_no_match.matcher)

    walk(matcher)
    return count


def _consumer_mesh(services: int, workloads: int) -> MeshSnapshot:
    """`workloads` client pods of namespace web on one node, each of `services` Services with a web
    consumer route: the worst case for the source-IP layer."""
    objects: list[MeshObject] = [namespace("shop"), namespace("web"), node("node-a", "10.0.0.1")]
    for i in range(services):
        objects.append(service("shop", f"s{i}", f"10.96.1.{i + 1}", http_port(80)))
        objects.append(
            HTTPRoute(
                namespace="web",
                name=f"r{i}",
                parent_refs=(parent("shop", f"s{i}"),),
                rules=(rule(backend("shop", f"s{i}")),),
            )
        )
    objects += [pod("web", f"c{j}", "node-a", f"10.1.2.{j + 1}") for j in range(workloads)]
    return mesh(*objects)


def test_listener_size_is_additive_in_services_and_local_workloads() -> None:
    def size(s: int, w: int) -> tuple[int, int, int]:
        config = Translator().translate_node(_consumer_mesh(s, w), "node-a")
        # `outbound_pods` grows with the mesh's meshed pods, shared by nodes: test_pods covers it.
        listeners = [
            li
            for name, li in config.listeners.items()
            if name.startswith("outbound") and name not in (naming.OUTBOUND_PODS, naming.OUTBOUND_POD_NODES)
        ]
        return (
            # Every chain but the node listener's handoffs (one per local consumer namespace).
            sum(len(li.filter_chains) for li in listeners) - len(config.listeners["outbound"].filter_chains),
            len(config.route_configs),
            sum(_matcher_size(li.filter_chain_matcher) for li in listeners),
        )

    for s, w in ((2, 2), (8, 2), (2, 16), (8, 16)):
        chains, routes, matcher = size(s, w)
        assert (chains, routes) == (2 * s, 2 * s)  # producer + web's consumer chain per Service port
        base, more_s, more_w = size(1, 1)[2], size(s, 1)[2], size(1, w)[2]
        # No services x workloads term: growing both costs the sum of growing each.
        assert matcher == more_s + more_w - base


def test_unrelated_route_keeps_every_node_listener() -> None:
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    second = _all(
        translator,
        m.apply(
            Upsert(
                obj=http_route(
                    "shop", "new", parent("shop", "reviews-v2"), rule(backend("shop", "reviews-v1"))
                )
            )
        ),
    )
    assert all(first[n].listeners is second[n].listeners for n in NODES)


def test_clusterip_taken_by_another_service_updates_the_listener() -> None:
    """reviews-v2 keeps its filter chain (the same message) but loses one of its two ClusterIPs to a
    Service that sorts first: the destinations that select the chain change, so the listeners do."""
    translator = Translator()
    dual = Service(
        namespace="shop", name="reviews-v2", cluster_ips=("10.96.0.12", "10.96.0.13"), ports=(http_port(80),)
    )
    m = sample_mesh().apply(Upsert(obj=dual))
    _all(translator, m)
    # No ports: it adds no chain of its own, only claims the address.
    m = m.apply(Upsert(obj=service("shop", "aaa-clash", "10.96.0.12")))
    incremental = _all(translator, m)
    for n in NODES:
        assert _bytes(incremental[n]) == _bytes(Translator().translate_node(m, n))


def test_new_consumer_route_rebuilds_only_the_shared_consumer_listener() -> None:
    """web's clients are on both nodes: its new consumer route changes the one `outbound_consumer|web`
    (built once, shared) and its route config; each node's own listener stays the same object."""
    translator = Translator()
    m = sample_mesh()
    first = _all(translator, m)
    before = Counter(translator.builds)
    route = http_route("web", "ratings-for-web", parent("shop", "ratings"), rule(backend("shop", "ratings")))
    second = _all(translator, m.apply(Upsert(obj=route)))
    assert _delta(translator, before)["listener"] == 1
    shared = second["node-a"].listeners["outbound_consumer|web"]
    assert shared is second["node-b"].listeners["outbound_consumer|web"]
    assert "shop/ratings:9090@web" in {c.name for c in shared.filter_chains}
    for n in NODES:
        assert second[n].listeners["outbound"] is first[n].listeners["outbound"]
        assert _changes(second[n], first[n])["listener"] == (["outbound_consumer|web"], [])
