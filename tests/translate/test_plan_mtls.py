"""The plan carries each workload's inbound mTLS from PeerAuthentication: mesh, namespace, workload and port
levels, and a live policy change reaches the plan of the incremental translator."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model.frozenmap import FrozenMap
from controlplane.model.objects import Delete, Upsert
from controlplane.model.peerauth import MtlsMode, PeerAuthentication
from controlplane.model.snapshot import MeshSnapshot
from controlplane.translate.settings import TranslateSettings
from controlplane.translate.translator import Translator, translate_node
from tests.translate.builders import as_dict, mesh, namespace, node, pod

ROOT = "nodemesh-system"
STRICT, PERMISSIVE, UNSET = MtlsMode.STRICT, MtlsMode.PERMISSIVE, MtlsMode.UNSET


def pa(
    name: str,
    mode: MtlsMode = UNSET,
    *,
    ns: str = "shop",
    app: str | None = None,
    ports: dict[int, MtlsMode] | None = None,
    rejected: bool = False,
) -> PeerAuthentication:
    return PeerAuthentication(
        namespace=ns,
        name=name,
        mode=mode,
        selector=FrozenMap({"app": app}) if app is not None else None,
        port_modes=FrozenMap(ports or {}),
        rejected=rejected,
    )


def base(*policies: PeerAuthentication) -> MeshSnapshot:
    return mesh(
        namespace("shop"),
        namespace("web"),
        namespace(ROOT, enrolled=False),
        node("n", "10.0.0.1"),
        pod("shop", "api-1", "n", "10.1.0.1", labels=FrozenMap({"app": "api"})),
        pod("shop", "db-1", "n", "10.1.0.2", labels=FrozenMap({"app": "db"})),
        pod("web", "front-1", "n", "10.1.0.3", labels=FrozenMap({"app": "front"})),
        *policies,
    )


def modes(snapshot: MeshSnapshot, translator: Translator | None = None) -> dict[str, dict[str, Any]]:
    config = (
        translator.translate_node(snapshot, "n")
        if translator is not None
        else translate_node(snapshot, "n", TranslateSettings(root_namespace=ROOT))
    )
    result: dict[str, dict[str, Any]] = {}
    for message in config.workloads.values():
        as_json = as_dict(message)
        result[message.name] = {
            "mode": as_json.get("mtls_mode", "MTLS_MODE_UNSPECIFIED").removeprefix("MTLS_MODE_"),
            "ports": {int(k): v.removeprefix("MTLS_MODE_") for k, v in as_json.get("port_mtls", {}).items()},
        }
    return result


def mode_of(name: str, snapshot: MeshSnapshot) -> tuple[str, dict[int, str]]:
    entry = modes(snapshot)[name]
    return entry["mode"], entry["ports"]


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        # No policy: PERMISSIVE everywhere.
        ((), {"api-1": "PERMISSIVE", "db-1": "PERMISSIVE", "front-1": "PERMISSIVE"}),
        # Mesh-wide (root namespace, no selector).
        ((pa("mesh", STRICT, ns=ROOT),), {"api-1": "STRICT", "db-1": "STRICT", "front-1": "STRICT"}),
        # Namespace beats mesh.
        (
            (pa("mesh", STRICT, ns=ROOT), pa("shop", PERMISSIVE)),
            {"api-1": "PERMISSIVE", "db-1": "PERMISSIVE", "front-1": "STRICT"},
        ),
        # Workload beats namespace; UNSET at the workload level inherits.
        (
            (pa("shop", STRICT), pa("api", PERMISSIVE, app="api"), pa("db", UNSET, app="db")),
            {"api-1": "PERMISSIVE", "db-1": "STRICT", "front-1": "PERMISSIVE"},
        ),
        # A rejected policy fails closed: STRICT for what it may cover.
        ((pa("broken", PERMISSIVE, app="db", rejected=True),), {"db-1": "STRICT", "api-1": "PERMISSIVE"}),
    ],
)
def test_workload_mode_by_level(policies: tuple[PeerAuthentication, ...], expected: dict[str, str]) -> None:
    found = modes(base(*policies))
    assert {name: found[name]["mode"] for name in expected} == expected
    assert all(not entry["ports"] for entry in found.values())


def test_port_level_modes_are_sent_where_they_differ_from_the_workload() -> None:
    snapshot = base(
        pa("shop", STRICT),
        pa("api", UNSET, app="api", ports={8080: PERMISSIVE, 9090: STRICT, 7070: UNSET}),
    )
    # 9090 says what the workload says (STRICT, from the namespace): no entry; UNSET inherits too.
    assert mode_of("api-1", snapshot) == ("STRICT", {8080: "PERMISSIVE"})

    snapshot = base(pa("api", PERMISSIVE, app="api", ports={5432: STRICT}))
    assert mode_of("api-1", snapshot) == ("PERMISSIVE", {5432: "STRICT"})
    assert mode_of("db-1", snapshot) == ("PERMISSIVE", {})  # the selector does not match db


def test_a_policy_change_reaches_the_plan_of_the_incremental_translator() -> None:
    translator = Translator(TranslateSettings(root_namespace=ROOT))
    first = base()
    before = translator.translate_node(first, "n")
    assert modes(first, translator)["api-1"]["mode"] == "PERMISSIVE"

    strict = pa("api", STRICT, app="api")
    second = first.apply(Upsert(obj=strict))
    after = translator.translate_node(second, "n")
    assert modes(second, translator)["api-1"]["mode"] == "STRICT"
    # Only the selected workload's plan resource is rebuilt; the others are the very same messages.
    assert after.workloads["uid-shop-db-1"] is before.workloads["uid-shop-db-1"]
    assert after.workloads["uid-shop-api-1"] is not before.workloads["uid-shop-api-1"]

    third = second.apply(Delete(ref=strict.ref))
    assert modes(third, translator)["api-1"]["mode"] == "PERMISSIVE"
