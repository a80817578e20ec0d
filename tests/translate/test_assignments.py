"""ClusterLoadAssignments from EndpointSlices: ready endpoints, the serving fallback, named target ports,
zones as localities, and an (empty) assignment for every EDS cluster."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.model.endpoints import AddressType, Endpoint, EndpointSlice
from controlplane.model.objects import MeshObject
from controlplane.translate.translator import translate_node
from tests.translate.builders import (
    as_dict,
    endpoint,
    endpoint_slice,
    http_port,
    mesh,
    namespace,
    node,
    service,
)


def _cla(*objects: MeshObject, name: str = "shop/api:80") -> dict[str, Any]:
    m = mesh(
        namespace("shop"),
        node("n", "10.0.0.1"),
        service("shop", "api", "10.96.0.1", http_port(80, target="web")),
        *objects,
    )
    config = translate_node(m, "n")
    assert {c.name for c in config.clusters.values() if c.type == 3} == {
        a.cluster_name for a in config.load_assignments.values()
    }
    return as_dict(config.load_assignments[name])


def _addresses(cla: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [
        (
            group.get("locality", {}).get("zone", ""),
            e["endpoint"]["address"]["socket_address"]["address"],
            e["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for group in cla.get("endpoints", [])
        for e in group["lb_endpoints"]
    ]


def test_no_slices_gives_an_empty_assignment() -> None:
    assert _cla() == {"cluster_name": "shop/api:80"}


def test_ready_endpoints_grouped_by_zone_with_the_named_target_port_resolved() -> None:
    slice_ = endpoint_slice(
        "shop",
        "api",
        endpoint("10.1.0.2", zone="b"),
        endpoint("10.1.0.1", zone="a"),
        endpoint("10.1.0.3", ready=False, serving=False, zone="a"),
        ports=(("http", 8080),),
    )
    assert _addresses(_cla(slice_)) == [("a", "10.1.0.1", 8080), ("b", "10.1.0.2", 8080)]


def test_serving_terminating_endpoints_only_when_none_is_ready() -> None:
    draining = endpoint_slice("shop", "api", endpoint("10.1.0.1", ready=False, serving=True))
    assert _addresses(_cla(draining)) == [("", "10.1.0.1", 8080)]
    mixed = endpoint_slice(
        "shop", "api", endpoint("10.1.0.1", ready=False, serving=True), endpoint("10.1.0.2")
    )
    assert _addresses(_cla(mixed)) == [("", "10.1.0.2", 8080)]


def test_several_slices_merge_and_duplicates_collapse() -> None:
    a = endpoint_slice("shop", "api", endpoint("10.1.0.1"), name="api-a")
    b = endpoint_slice("shop", "api", endpoint("10.1.0.1"), endpoint("10.1.0.9"), name="api-b")
    assert _addresses(_cla(a, b)) == [("", "10.1.0.1", 8080), ("", "10.1.0.9", 8080)]


@pytest.mark.parametrize(
    "slice_",
    [
        pytest.param(
            endpoint_slice("shop", "api", endpoint("10.1.0.1"), ports=(("other", 9),)), id="port-not-in-slice"
        ),
        pytest.param(
            EndpointSlice(
                namespace="shop",
                name="f",
                service="api",
                address_type=AddressType.FQDN,
                endpoints=(Endpoint(addresses=("db.example",)),),
            ),
            id="fqdn",
        ),
    ],
)
def test_unusable_slices_add_nothing(slice_: EndpointSlice) -> None:
    assert _addresses(_cla(slice_)) == []
