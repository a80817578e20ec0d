from __future__ import annotations

from typing import Any

import pytest

from apidouble.schema import process
from tests.apidouble.conftest import load_yaml

SCHEMA: dict[str, Any] = load_yaml("widget-crd.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _widget(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "example.nodemesh.io/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def test_valid_object_is_defaulted_and_keeps_metadata() -> None:
    result = process(_widget({"size": 2, "parts": [{"id": "a"}], "extra": {"anything": {"goes": 1}}}), SCHEMA)
    assert result.errors == ()
    assert result.unknown_fields == ()
    assert result.obj["spec"] == {
        "size": 2,
        "color": "red",
        "parts": [{"id": "a", "weight": 1}],
        "extra": {"anything": {"goes": 1}},
    }
    assert result.obj["metadata"] == {"name": "w"}


def test_unknown_fields_are_pruned_and_reported() -> None:
    result = process(
        _widget({"size": 2, "bogus": 1, "parts": [{"id": "a", "nope": True}]}) | {"top": 1}, SCHEMA
    )
    assert result.errors == ()
    assert set(result.unknown_fields) == {"spec.bogus", "spec.parts[0].nope", "top"}
    assert "bogus" not in result.obj["spec"]
    assert "top" not in result.obj


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({}, "spec.size", "Required value"),
        (
            {"size": "big"},
            "spec.size",
            'Invalid value: "string": spec.size in body must be of type integer: "string"',
        ),
        (
            {"size": 0},
            "spec.size",
            "Invalid value: 0: spec.size in body should be greater than or equal to 1",
        ),
        (
            {"size": 11},
            "spec.size",
            "Invalid value: 11: spec.size in body should be less than or equal to 10",
        ),
        (
            {"size": 1, "color": "pink"},
            "spec.color",
            'Unsupported value: "pink": supported values: "red", "green", "blue"',
        ),
        (
            {"size": 1, "name": "A1"},
            "spec.name",
            "Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'",
        ),
        ({"size": 1, "name": "abcdefghi"}, "spec.name", "Too long: may not be more than 8 bytes"),
        ({"size": 1, "tags": ["a", "b", "c", "d"]}, "spec.tags", "Too many: 4: must have at most 3 items"),
        ({"size": 1, "parts": [{"weight": 2}]}, "spec.parts[0].id", "Required value"),
        (
            {"size": 1, "labels": {"k": 1}},
            "spec.labels[k]",
            'Invalid value: "integer": spec.labels[k] in body must be of type string: "integer"',
        ),
    ],
)
def test_validation_errors_name_the_field(spec: dict[str, Any], field: str, message: str) -> None:
    result = process(_widget(spec), SCHEMA)
    assert [(e.field, e.message) for e in result.errors] == [(field, message)]


def test_a_schema_for_metadata_restricts_but_never_prunes_it() -> None:
    # Generated CRDs declare `metadata: {type: object}`; the real server still keeps all of ObjectMeta.
    restricted = SCHEMA | {
        "properties": SCHEMA["properties"]
        | {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}}}
    }
    obj = _widget({"size": 2}) | {"metadata": {"name": "w", "namespace": "default", "labels": {"a": "b"}}}
    result = process(obj, restricted)
    assert result.unknown_fields == ()
    assert result.errors == ()
    assert result.obj["metadata"] == {"name": "w", "namespace": "default", "labels": {"a": "b"}}
    too_long = process(obj | {"metadata": {"name": "widget"}}, restricted)
    assert [e.field for e in too_long.errors] == ["metadata.name"]
