"""The plan makes a workload refuse plaintext (STRICT) where its AuthorizationPolicies could not admit an
unauthenticated caller, on top of its PeerAuthentication mode, workload-wide and port by port."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controlplane.model.authz import (
    AuthorizationAction,
    AuthorizationPolicy,
    AuthorizationRule,
    Operation,
    Source,
    StringMatch,
    deny_all_stand_in,
)
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.objects import Delete, MeshObject, Upsert
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.policy import PolicyTargetRef
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate.plan import WorkloadMtls, workload_mtls
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator
from tests.translate.builders import as_dict, mesh, namespace, node, pod, service, tcp_port

ROOT = "nodemesh-system"
ALLOW, DENY, AUDIT = AuthorizationAction.ALLOW, AuthorizationAction.DENY, AuthorizationAction.AUDIT
STRICT, PERMISSIVE, UNSET = MtlsMode.STRICT, MtlsMode.PERMISSIVE, MtlsMode.UNSET
ALICE_ONLY = AuthorizationRule(
    sources=(Source(principals=(StringMatch.parse("cluster.local/ns/bank/sa/alice"),)),)
)


def ports(*numbers: int) -> AuthorizationRule:
    return AuthorizationRule(operations=(Operation(ports=numbers),))


def ap(
    name: str,
    action: AuthorizationAction,
    *rules: AuthorizationRule,
    ns: str = "bank",
    app: str | None = None,
    target_refs: tuple[PolicyTargetRef, ...] = (),
) -> AuthorizationPolicy:
    return AuthorizationPolicy(
        namespace=ns,
        name=name,
        action=action,
        rules=rules,
        selector=FrozenMap({"app": app}) if app is not None else None,
        target_refs=target_refs,
    )


def pa(
    name: str,
    mode: MtlsMode = UNSET,
    *,
    app: str | None = None,
    port_modes: dict[int, MtlsMode] | None = None,
) -> PeerAuthentication:
    return PeerAuthentication(
        namespace="bank",
        name=name,
        mode=mode,
        selector=FrozenMap({"app": app}) if app is not None else None,
        port_modes=FrozenMap(port_modes or {}),
    )


def base(*objects: MeshObject) -> MeshSnapshot:
    return mesh(
        namespace("bank"),
        namespace(ROOT, enrolled=False),
        node("n", "10.0.0.1"),
        pod("bank", "vault", "n", "10.1.0.1", labels=FrozenMap({"app": "vault"})),
        pod("bank", "open", "n", "10.1.0.2", labels=FrozenMap({"app": "open"})),
        *objects,
    )


def mtls(snapshot: MeshSnapshot, name: str) -> WorkloadMtls:
    workload = next(w for w in snapshot.workloads.values() if w.name == name)
    return workload_mtls(snapshot, workload, ROOT)


def wm(mode: MtlsMode, **port_modes: MtlsMode) -> WorkloadMtls:
    return WorkloadMtls(
        mode=mode, ports=tuple(sorted((int(k.removeprefix("p")), v) for k, v in port_modes.items()))
    )


@pytest.mark.parametrize(
    ("objects", "vault", "open_"),
    [
        pytest.param((), wm(PERMISSIVE), wm(PERMISSIVE), id="no policy"),
        pytest.param(
            (ap("alice", ALLOW, ALICE_ONLY, app="vault"),), wm(STRICT), wm(PERMISSIVE), id="allow alice"
        ),
        pytest.param(
            (ap("audit", AUDIT, AuthorizationRule(), app="vault"),),
            wm(PERMISSIVE),
            wm(PERMISSIVE),
            id="audit",
        ),
        pytest.param((ap("alice", ALLOW, ALICE_ONLY),), wm(STRICT), wm(STRICT), id="namespace-wide allow"),
        pytest.param(
            (ap("mesh", DENY, AuthorizationRule(), ns=ROOT),), wm(STRICT), wm(STRICT), id="mesh-wide deny"
        ),
        pytest.param(
            (ap("deny-admin", DENY, ports(9090), app="vault"),),
            wm(PERMISSIVE, p9090=STRICT),
            wm(PERMISSIVE),
            id="deny one port",
        ),
        pytest.param(
            (ap("web", ALLOW, ALICE_ONLY, ports(8080), app="vault"),),
            wm(STRICT, p8080=PERMISSIVE),
            wm(PERMISSIVE),
            id="allow plaintext on one port",
        ),
        pytest.param(
            (ap("web", ALLOW, ports(8080), app="vault"), pa("strict", STRICT)),
            wm(STRICT),
            wm(STRICT),
            id="strict stays strict where authorization admits plaintext",
        ),
        pytest.param(
            (
                ap("alice", ALLOW, ALICE_ONLY, app="vault"),
                pa("metrics", app="vault", port_modes={9090: PERMISSIVE}),
            ),
            wm(STRICT),
            wm(PERMISSIVE),
            id="a permissive port does not open what authorization refuses",
        ),
        pytest.param(
            (
                ap("deny-admin", DENY, ports(9090), app="vault"),
                pa("db", app="vault", port_modes={5432: STRICT}),
            ),
            wm(PERMISSIVE, p5432=STRICT, p9090=STRICT),
            wm(PERMISSIVE),
            id="port modes from both",
        ),
        pytest.param(
            (deny_all_stand_in(ap("rejected", ALLOW, AuthorizationRule(), app="open")),),
            wm(PERMISSIVE),
            wm(STRICT),
            id="a rejected allow policy fails closed",
        ),
    ],
)
def test_workload_mtls_folds_in_authorization(
    objects: tuple[MeshObject, ...], vault: WorkloadMtls, open_: WorkloadMtls
) -> None:
    snapshot = base(*objects)
    assert (mtls(snapshot, "vault"), mtls(snapshot, "open")) == (vault, open_)


def test_a_target_ref_policy_follows_its_service() -> None:
    policy = ap(
        "alice", ALLOW, ALICE_ONLY, target_refs=(PolicyTargetRef(group="", kind="Service", name="vault"),)
    )
    vault_service = service("bank", "vault", "10.96.0.1", tcp_port(8080))
    snapshot = base(policy, vault_service)
    assert mtls(snapshot, "vault") == wm(PERMISSIVE)  # a Service without a selector selects nothing
    snapshot = snapshot.apply(Upsert(obj=replace(vault_service, selector=FrozenMap({"app": "vault"}))))
    assert mtls(snapshot, "vault") == wm(STRICT)
    assert mtls(snapshot, "open") == wm(PERMISSIVE)


def plan_of(snapshot: MeshSnapshot, translator: Translator, name: str) -> dict[str, object]:
    config = translator.translate_node(snapshot, "n")
    message = next(m for m in config.workloads.values() if m.name == name)
    return as_dict(message)


def test_the_plan_carries_it() -> None:
    snapshot = base(
        ap("deny-admin", DENY, ports(9090), app="vault"), ap("alice", ALLOW, ALICE_ONLY, app="open")
    )
    translator = Translator(TranslateSettings(root_namespace=ROOT))
    vault = plan_of(snapshot, translator, "vault")
    assert (vault["mtls_mode"], vault["port_mtls"]) == ("MTLS_MODE_PERMISSIVE", {"9090": "MTLS_MODE_STRICT"})
    opened = plan_of(snapshot, translator, "open")
    assert (opened["mtls_mode"], opened.get("port_mtls")) == ("MTLS_MODE_STRICT", None)


def test_a_policy_change_reaches_the_plan_of_the_incremental_translator() -> None:
    translator = Translator(TranslateSettings(root_namespace=ROOT))
    first = base()
    assert plan_of(first, translator, "vault")["mtls_mode"] == "MTLS_MODE_PERMISSIVE"
    policy = ap("alice", ALLOW, ALICE_ONLY, app="vault")
    second = first.apply(Upsert(obj=policy))
    assert plan_of(second, translator, "vault")["mtls_mode"] == "MTLS_MODE_STRICT"
    third = second.apply(Delete(ref=policy.ref))
    assert plan_of(third, translator, "vault")["mtls_mode"] == "MTLS_MODE_PERMISSIVE"
