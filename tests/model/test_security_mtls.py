"""PeerAuthentication resolution: the effective mTLS mode of a workload port, and conflict diagnostics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.model.diagnostics import Reason, Severity
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.security import MtlsDecision, MtlsLevel, effective_mtls, security_diagnostics
from controlplane.model.snapshot import MeshSnapshot
from controlplane.model.workload import PodPhase, Workload

ROOT = "nodemesh-system"
STRICT, PERMISSIVE, UNSET = MtlsMode.STRICT, MtlsMode.PERMISSIVE, MtlsMode.UNSET
REVIEWS = FrozenMap({"app": "reviews"})


def pa(
    name: str,
    mode: MtlsMode = UNSET,
    *,
    ns: str = "shop",
    selector: dict[str, str] | None = None,
    ports: dict[int, MtlsMode] | None = None,
    day: int | None = None,
    rejected: bool = False,
) -> PeerAuthentication:
    return PeerAuthentication(
        namespace=ns,
        name=name,
        mode=mode,
        selector=FrozenMap(selector) if selector is not None else None,
        port_modes=FrozenMap(ports or {}),
        created=datetime(2026, 1, day, tzinfo=UTC) if day is not None else None,
        rejected=rejected,
    )


def pod(ns: str = "shop", name: str = "reviews-1", **labels: str) -> Workload:
    return Workload(
        uid=f"uid-{name}",
        namespace=ns,
        name=name,
        node="node-a",
        ips=("10.0.0.1",),
        labels=FrozenMap(labels or {"app": "reviews"}),
        phase=PodPhase.RUNNING,
    )


def ref(name: str, ns: str = "shop") -> ObjectRef:
    return ObjectRef(kind=Kind.PEER_AUTHENTICATION, namespace=ns, name=name)


def decision(mode: MtlsMode, level: MtlsLevel, policy: ObjectRef | None = None) -> MtlsDecision:
    return MtlsDecision(mode=mode, level=level, policy=policy)


APP = {"app": "reviews"}

# (case id, policies, port, expected)
CASES: list[tuple[str, tuple[PeerAuthentication, ...], int | None, MtlsDecision]] = [
    ("default", (), 9080, decision(PERMISSIVE, MtlsLevel.DEFAULT)),
    ("mesh", (pa("default", STRICT, ns=ROOT),), 9080, decision(STRICT, MtlsLevel.MESH, ref("default", ROOT))),
    ("mesh unset", (pa("default", UNSET, ns=ROOT),), 9080, decision(PERMISSIVE, MtlsLevel.DEFAULT)),
    (
        "namespace over mesh",
        (pa("default", STRICT, ns=ROOT), pa("ns", PERMISSIVE)),
        9080,
        decision(PERMISSIVE, MtlsLevel.NAMESPACE, ref("ns")),
    ),
    (
        "namespace unset inherits mesh",
        (pa("default", STRICT, ns=ROOT), pa("ns", UNSET)),
        9080,
        decision(STRICT, MtlsLevel.MESH, ref("default", ROOT)),
    ),
    (
        "workload over namespace",
        (pa("ns", PERMISSIVE), pa("w", STRICT, selector=APP)),
        9080,
        decision(STRICT, MtlsLevel.WORKLOAD, ref("w")),
    ),
    (
        "selector not matching",
        (pa("ns", PERMISSIVE), pa("w", STRICT, selector={"app": "ratings"})),
        9080,
        decision(PERMISSIVE, MtlsLevel.NAMESPACE, ref("ns")),
    ),
    (
        "selector in another namespace",
        (pa("w", STRICT, ns="web", selector=APP),),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
    (
        "other namespace's namespace policy",
        (pa("ns", STRICT, ns="web"),),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
    (
        "port override",
        (pa("w", STRICT, selector=APP, ports={9090: PERMISSIVE}),),
        9090,
        decision(PERMISSIVE, MtlsLevel.PORT, ref("w")),
    ),
    (
        "other port keeps the workload mode",
        (pa("w", STRICT, selector=APP, ports={9090: PERMISSIVE}),),
        9080,
        decision(STRICT, MtlsLevel.WORKLOAD, ref("w")),
    ),
    (
        "no port asked",
        (pa("w", STRICT, selector=APP, ports={9090: PERMISSIVE}),),
        None,
        decision(STRICT, MtlsLevel.WORKLOAD, ref("w")),
    ),
    (
        "port unset inherits the workload",
        (pa("w", STRICT, selector=APP, ports={9090: UNSET}),),
        9090,
        decision(STRICT, MtlsLevel.WORKLOAD, ref("w")),
    ),
    (
        "workload unset with a port override inherits the namespace elsewhere",
        (pa("ns", STRICT), pa("w", UNSET, selector=APP, ports={9090: PERMISSIVE})),
        9080,
        decision(STRICT, MtlsLevel.NAMESPACE, ref("ns")),
    ),
    (
        "oldest workload policy wins",
        (pa("a", PERMISSIVE, selector=APP, day=5), pa("b", STRICT, selector={"app": "reviews"}, day=2)),
        9080,
        decision(STRICT, MtlsLevel.WORKLOAD, ref("b")),
    ),
    (
        "oldest unset workload policy falls through, not to the next one",
        (pa("a", UNSET, selector=APP, day=1), pa("b", STRICT, selector=APP, day=2)),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
    (
        "a timestamp beats none, then names",
        (pa("a", PERMISSIVE), pa("b", STRICT, day=9), pa("c", PERMISSIVE)),
        9080,
        decision(STRICT, MtlsLevel.NAMESPACE, ref("b")),
    ),
    (
        "names break ties",
        (pa("b", STRICT), pa("a", PERMISSIVE)),
        9080,
        decision(PERMISSIVE, MtlsLevel.NAMESPACE, ref("a")),
    ),
    (
        "oldest mesh policy wins",
        (pa("x", PERMISSIVE, ns=ROOT, day=3), pa("y", STRICT, ns=ROOT, day=1)),
        9080,
        decision(STRICT, MtlsLevel.MESH, ref("y", ROOT)),
    ),
    (
        "a root selector policy is not mesh-wide",
        (pa("x", STRICT, ns=ROOT, selector=APP),),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
    # Rejected policies fail closed.
    (
        "rejected workload policy",
        (
            pa("ns", PERMISSIVE),
            pa("w", STRICT, selector=APP, rejected=True, day=9),
            pa("v", PERMISSIVE, selector=APP, day=1),
        ),
        9080,
        decision(STRICT, MtlsLevel.REJECTED, ref("w")),
    ),
    (
        "rejected namespace-wide stand-in",
        (pa("w", PERMISSIVE, selector=APP, ports={9080: PERMISSIVE}), pa("bad", STRICT, rejected=True)),
        9080,
        decision(STRICT, MtlsLevel.REJECTED, ref("bad")),
    ),
    (
        "rejected mesh policy",
        (pa("w", PERMISSIVE, selector=APP), pa("bad", STRICT, ns=ROOT, rejected=True)),
        9080,
        decision(STRICT, MtlsLevel.REJECTED, ref("bad", ROOT)),
    ),
    (
        "rejected policy selecting others",
        (pa("bad", STRICT, selector={"app": "ratings"}, rejected=True),),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
    (
        "rejected root selector policy",
        (pa("bad", STRICT, ns=ROOT, selector=APP, rejected=True),),
        9080,
        decision(PERMISSIVE, MtlsLevel.DEFAULT),
    ),
]


@pytest.mark.parametrize(("policies", "port", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_effective_mtls(
    policies: tuple[PeerAuthentication, ...], port: int | None, expected: MtlsDecision
) -> None:
    s = MeshSnapshot.from_objects([pod(), *policies])
    assert effective_mtls(s, pod(), port) == expected


def test_workloads_in_the_root_namespace() -> None:
    gateway = pod(ROOT, "gateway-1", app="gateway")
    s = MeshSnapshot.from_objects(
        [
            gateway,
            pa("default", STRICT, ns=ROOT),
            pa("gw", UNSET, ns=ROOT, selector={"app": "gateway"}, ports={443: PERMISSIVE}),
        ]
    )
    assert effective_mtls(s, gateway, 443) == decision(PERMISSIVE, MtlsLevel.PORT, ref("gw", ROOT))
    assert effective_mtls(s, gateway, 80) == decision(STRICT, MtlsLevel.MESH, ref("default", ROOT))
    # With another root namespace, the same policy is an ordinary namespace policy.
    assert effective_mtls(s, gateway, 80, root_namespace="mesh-root") == decision(
        STRICT, MtlsLevel.NAMESPACE, ref("default", ROOT)
    )
    assert str(effective_mtls(s, gateway, 80)) == f"STRICT (mesh by PeerAuthentication/{ROOT}/default)"


def test_custom_root_namespace() -> None:
    s = MeshSnapshot.from_objects([pod(), pa("default", STRICT, ns="mesh-root")])
    assert effective_mtls(s, pod(), 80).mode is PERMISSIVE
    assert effective_mtls(s, pod(), 80, root_namespace="mesh-root").mode is STRICT


def test_conflict_diagnostics() -> None:
    objects: list[Any] = [
        pod(name="reviews-1"),
        pod(name="reviews-2"),
        pod(name="ratings-1", app="ratings"),
        pa("mesh-a", STRICT, ns=ROOT, day=1),
        pa("mesh-b", PERMISSIVE, ns=ROOT, day=2),
        pa("ns-old", STRICT, day=1),
        pa("ns-new", PERMISSIVE, day=3),
        pa("w-old", STRICT, selector=APP, day=1),
        pa("w-new", PERMISSIVE, selector=APP, day=2),
        pa("w-ratings", STRICT, selector={"app": "ratings"}, day=3),
        pa("bad", STRICT, rejected=True),
    ]
    found = [
        (str(d.ref), d.reason, d.severity, d.message)
        for d in security_diagnostics(MeshSnapshot.from_objects(objects))
    ]
    assert found == [
        (
            f"PeerAuthentication/{ROOT}/mesh-b",
            Reason.CONFLICT,
            Severity.WARNING,
            f"ignored: PeerAuthentication/{ROOT}/mesh-a is older and already sets the mode of the mesh",
        ),
        (
            "PeerAuthentication/shop/ns-new",
            Reason.CONFLICT,
            Severity.WARNING,
            "ignored: PeerAuthentication/shop/ns-old is older and already sets the mode of namespace shop",
        ),
        (
            "PeerAuthentication/shop/w-new",
            Reason.CONFLICT,
            Severity.WARNING,
            "ignored for 2 workloads (Pod/shop/reviews-1, ...): PeerAuthentication/shop/w-old is older and "
            "selects them too",
        ),
    ]


def test_no_conflict_without_overlap() -> None:
    s = MeshSnapshot.from_objects(
        [
            pod(),
            pa("a", STRICT, selector=APP),
            pa("b", STRICT, selector={"app": "ratings"}),
            pa("c", STRICT, ns="web"),
        ]
    )
    assert security_diagnostics(s) == ()
