"""MeshSnapshot with security policies: their indexes, and any event order ends in the same snapshot."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.model.authz import AuthorizationAction, AuthorizationPolicy
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.refs import ObjectRef
from controlplane.model.security import effective_mtls, policies_for
from controlplane.model.snapshot import Index, MeshSnapshot
from tests.model.test_snapshot import NAMES, NAMESPACES, mesh_objects, names, nss, pod, svc


def test_security_indexes() -> None:
    objects: list[MeshObject] = [
        pod("shop", "reviews-1", "node-a", "10.0.0.1"),
        pod("shop", "reviews-2", "node-b", "10.0.0.2"),
        pod("web", "front-1", "node-a", "10.0.0.3"),
        svc("shop", "reviews", "10.1.0.1", 80),
        AuthorizationPolicy(namespace="shop", name="b", target_refs=(PolicyTargetRef(name="reviews"),)),
        AuthorizationPolicy(namespace="shop", name="a"),
        AuthorizationPolicy(namespace="web", name="c", action=AuthorizationAction.DENY),
        PeerAuthentication(namespace="shop", name="strict", mode=MtlsMode.STRICT),
    ]
    s = MeshSnapshot.from_objects(objects)
    assert [p.name for p in s.authorization_policies_in("shop")] == ["a", "b"]
    assert [p.name for p in s.authorization_policies_in("web")] == ["c"]
    assert [p.name for p in s.authorization_policies_targeting(ObjectRef.service("shop", "reviews"))] == ["b"]
    assert [p.name for p in s.peer_authentications_in("shop")] == ["strict"]
    assert s.peer_authentications_in("web") == ()
    assert [w.name for w in s.workloads_in("shop")] == ["reviews-1", "reviews-2"]
    assert s.get(ObjectRef(kind="PeerAuthentication", namespace="shop", name="strict")) is objects[-1]
    s2 = s.apply(Delete(ref=objects[4].ref))
    assert s2.changed == {objects[4].ref}
    assert s2.authorization_policies_targeting(ObjectRef.service("shop", "reviews")) == ()
    assert [p.name for p in s2.authorization_policies_in("shop")] == ["a"]


labels = st.sampled_from((None, FrozenMap({"app": "x"}), FrozenMap({"app": "y"})))

security_objects: st.SearchStrategy[MeshObject] = st.one_of(
    st.builds(
        lambda ns, n, sel, targets, action, rejected: AuthorizationPolicy(
            namespace=ns,
            name=n,
            selector=sel if not targets else None,
            target_refs=tuple(PolicyTargetRef(name=t) for t in targets),
            action=action,
            rejected=rejected,
        ),
        nss,
        names,
        labels,
        st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
        st.sampled_from(AuthorizationAction),
        st.booleans(),
    ),
    st.builds(
        lambda ns, n, sel, mode, rejected: PeerAuthentication(
            namespace=ns, name=n, selector=sel, mode=mode, rejected=rejected
        ),
        nss,
        names,
        labels,
        st.sampled_from(MtlsMode),
        st.booleans(),
    ),
)
all_objects = st.one_of(mesh_objects, security_objects)
events = st.lists(all_objects, min_size=1, max_size=10).flatmap(
    lambda pool: st.lists(
        st.one_of(
            st.builds(lambda o: Upsert(obj=o), st.sampled_from(pool)),
            st.sampled_from([Delete(ref=o.ref) for o in pool]),
        ),
        max_size=40,
    )
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_any_event_sequence_equals_building_from_the_final_state(sequence: list[ModelEvent]) -> None:
    snapshot = MeshSnapshot.empty()
    state: dict[ObjectRef, MeshObject] = {}
    for event in sequence:
        before = dict(state)
        snapshot = snapshot.apply(event)
        if isinstance(event, Upsert):
            state[event.ref] = event.obj
        else:
            state.pop(event.ref, None)
        assert snapshot.changed == ({event.ref} if before != state else set())
    final = MeshSnapshot.from_objects(state.values())
    assert snapshot == final
    assert dict(snapshot.indexes) == dict(final.indexes)
    for index in Index:
        assert all(len(refs) > 0 for refs in snapshot.indexes[index].values())
    # The security lookups answer from the indexes alike, whatever the order of events.
    for workload in final.workloads.values():
        for root in NAMESPACES:
            assert policies_for(snapshot, workload, root_namespace=root) == policies_for(
                final, workload, root_namespace=root
            )
            assert effective_mtls(snapshot, workload, 80, root_namespace=root) == effective_mtls(
                final, workload, 80, root_namespace=root
            )
