from __future__ import annotations

from typing import Any

import pytest

from apidouble.errors import ApiError
from apidouble.patch import json_patch, merge_patch, strategic_merge_patch


def test_merge_patch_sets_replaces_and_deletes() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    patched = merge_patch(target, {"a": None, "b": {"c": 5}, "l": [3], "n": "x"})
    assert patched == {"b": {"c": 5, "d": 3}, "l": [3], "n": "x"}
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}, "the target is not mutated"


def test_strategic_merge_patch_merges_lists_by_key_like_kubectl_apply() -> None:
    service = {
        "spec": {
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "admin", "port": 9000, "protocol": "TCP"},
            ],
            "selector": {"app": "web"},
        }
    }
    # What kubectl sends when one port changes number and another is removed.
    patch = {
        "spec": {
            "$setElementOrder/ports": [{"port": 81}],
            "ports": [{"name": "http", "port": 81, "targetPort": 8080}, {"$patch": "delete", "port": 80}],
        }
    }
    patched = strategic_merge_patch(service, patch)
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 81, "targetPort": 8080},
        {"name": "admin", "port": 9000, "protocol": "TCP"},
    ]


def test_strategic_merge_patch_merges_containers_by_name_and_keeps_unmentioned_fields() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]}]}}
    patch = {"spec": {"containers": [{"name": "a", "image": "x:2"}, {"name": "b", "image": "y"}]}}
    patched = strategic_merge_patch(pod, patch)
    assert patched["spec"]["containers"] == [
        {"name": "a", "image": "x:2", "env": [{"name": "E", "value": "1"}]},
        {"name": "b", "image": "y"},
    ]


def test_strategic_merge_patch_directives() -> None:
    target = {
        "metadata": {"finalizers": ["a", "b"]},
        "spec": {"m": {"x": 1, "y": 2}, "keep": {"p": 1, "q": 2}},
    }
    patch: dict[str, Any] = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {"m": {"$patch": "replace", "z": 3}, "keep": {"$retainKeys": ["p"], "p": 5}},
    }
    patched = strategic_merge_patch(target, patch)
    assert patched == {"metadata": {"finalizers": ["b"]}, "spec": {"m": {"z": 3}, "keep": {"p": 5}}}


def test_strategic_merge_patch_replaces_unknown_lists() -> None:
    assert strategic_merge_patch({"spec": {"x": [1, 2]}}, {"spec": {"x": [3]}}) == {"spec": {"x": [3]}}


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x", "k~/": 1}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "remove", "path": "/k~0~1"},
        {"op": "copy", "from": "/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e"},
        {"op": "test", "path": "/e", "value": "y"},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 1, 2, 3]}, "c": "y", "e": "y"}


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([{"op": "test", "path": "/a", "value": 2}], 422),
        ([{"op": "remove", "path": "/missing"}], 422),
        ([{"op": "frobnicate", "path": "/a"}], 400),
        ({"op": "add"}, 400),
    ],
)
def test_json_patch_errors(ops: Any, code: int) -> None:
    with pytest.raises(ApiError) as info:
        json_patch({"a": 1}, ops)
    assert info.value.code == code
