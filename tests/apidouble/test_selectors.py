from __future__ import annotations

import pytest

from apidouble.errors import ApiError
from apidouble.selectors import parse_field_selector, parse_label_selector


def _obj(labels: dict[str, str], **meta: str) -> dict[str, object]:
    return {"metadata": {"labels": labels, **meta}, "spec": {"nodeName": "n1"}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (front, back)", {"tier": "back"}, True),
        ("tier in (front,back)", {"tier": "mid"}, False),
        ("tier notin (front,back)", {"tier": "mid"}, True),
        ("tier notin (front,back)", {}, True),
        ("tier notin (front,back)", {"tier": "front"}, False),
        ("app", {"app": "x"}, True),
        ("app", {}, False),
        ("!app", {}, True),
        ("!app", {"app": "x"}, False),
        ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "a"}, True),
        ("app=web,tier in (a,b),!legacy", {"app": "web", "tier": "a", "legacy": "1"}, False),
        ("nodemesh.io/mesh=enabled", {"nodemesh.io/mesh": "enabled"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(_obj(labels)) is expected


@pytest.mark.parametrize("selector", ["app=(", "a in b", "=x"])
def test_bad_label_selector_is_bad_request(selector: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(selector)
    assert info.value.code == 400


def test_field_selector_by_name_namespace_and_kind_field() -> None:
    obj = _obj({}, name="a", namespace="ns1")
    assert parse_field_selector("metadata.name=a", "Pod").matches(obj)
    assert not parse_field_selector("metadata.name=b", "Pod").matches(obj)
    assert parse_field_selector("metadata.namespace!=ns2,metadata.name==a", "Pod").matches(obj)
    assert parse_field_selector("spec.nodeName=n1", "Pod").matches(obj)


def test_field_selector_rejects_unknown_field() -> None:
    with pytest.raises(ApiError) as info:
        parse_field_selector("spec.nodeName=n1", "ConfigMap")
    assert info.value.code == 400
