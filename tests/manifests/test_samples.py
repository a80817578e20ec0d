"""Every sample of one of our kinds validates against its CRD's schema, as the API server would check it
(apidouble.schema: structural pruning, types, enums, bounds, patterns; CEL rules are not evaluated)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from apidouble import schema
from tests.manifests.layout import MANIFESTS, SAMPLES, Doc, crd_schemas, documents, is_raw_envoy, yaml_files

SCHEMAS = crd_schemas()
OUR_GROUP = "nodemesh.io"


def _objects_of_our_kinds() -> list[tuple[str, Doc]]:
    found: list[tuple[str, Doc]] = []
    for path in yaml_files(SAMPLES):
        if is_raw_envoy(path):
            continue
        for index, doc in enumerate(documents(path)):
            if str(doc["apiVersion"]).split("/")[0] == OUR_GROUP:
                found.append((f"{path.relative_to(MANIFESTS)}#{index}", doc))
    return found


OBJECTS = _objects_of_our_kinds()


def _errors(obj: Doc) -> list[str]:
    group, _, version = str(obj["apiVersion"]).partition("/")
    key = (group, version, str(obj["kind"]))
    assert key in SCHEMAS, f"no CRD in manifests/crds serves {obj['apiVersion']} {obj['kind']}"
    result = schema.process(obj, SCHEMAS[key])
    return [e.render() for e in result.errors] + [f"unknown field {f}" for f in result.unknown_fields]


def test_samples_include_our_kinds() -> None:
    assert {doc["kind"] for _, doc in OBJECTS} >= {"TrafficPolicy"}


@pytest.mark.parametrize(("where", "obj"), OBJECTS, ids=[where for where, _ in OBJECTS])
def test_sample_validates_against_its_crd(where: str, obj: Doc) -> None:
    assert _errors(obj) == [], where


def _first_traffic_policy() -> Doc:
    return copy.deepcopy(next(doc for _, doc in OBJECTS if doc["kind"] == "TrafficPolicy"))


def _set(obj: Doc, path: tuple[str, ...], value: Any) -> Doc:
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "loadBalancer", "algorithm"), "FASTEST", "spec.loadBalancer.algorithm: Unsupported value"),
        (("spec", "retries", "attempts"), 1000, "spec.retries.attempts"),
        (("spec", "timeout"), "soon", "spec.timeout"),
        (("spec", "bogus"), True, "unknown field spec.bogus"),
        (("spec", "targetRefs"), [], "spec.targetRefs"),
    ],
)
def test_the_check_catches_a_broken_sample(path: tuple[str, ...], value: Any, expected: str) -> None:
    broken = _set(_first_traffic_policy(), path, value)
    errors = _errors(broken)
    assert any(expected in e for e in errors), errors


def test_every_crd_has_a_schema_for_each_served_version_and_a_status_subresource() -> None:
    for path in yaml_files(MANIFESTS / "crds"):
        for doc in documents(path):
            if doc["kind"] != "CustomResourceDefinition":
                continue
            assert doc["spec"]["group"] == OUR_GROUP
            assert doc["metadata"]["name"] == f"{doc['spec']['names']['plural']}.{OUR_GROUP}"
            for version in doc["spec"]["versions"]:
                root = version["schema"]["openAPIV3Schema"]
                assert root["type"] == "object"
                assert "spec" in root["properties"] and "status" in root["properties"]
                assert "status" in (version.get("subresources") or {}), doc["metadata"]["name"]
