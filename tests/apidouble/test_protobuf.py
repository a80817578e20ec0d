from __future__ import annotations

import pytest

from apidouble import protobuf
from apidouble.errors import ApiError


def _field(number: int, payload: bytes) -> bytes:
    # Length-delimited fields only, with lengths < 128: enough for these small messages.
    return bytes([number << 3 | 2, len(payload)]) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw)


def test_decodes_a_configmap() -> None:
    meta = (
        _field(1, b"c1")
        + _field(2, b"")
        + _field(3, b"ns")
        + _field(11, _field(1, b"app") + _field(2, b"web"))
    )
    raw = _field(1, meta) + _field(2, _field(1, b"k") + _field(2, b"v"))
    assert protobuf.decode(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c1", "namespace": "ns", "labels": {"app": "web"}},
        "data": {"k": "v"},
    }


def test_unknown_kind_is_415_and_garbage_is_400() -> None:
    with pytest.raises(ApiError) as unknown:
        protobuf.decode(_envelope("v1", "Pod", _field(1, _field(1, b"p"))))
    assert unknown.value.code == 415
    with pytest.raises(ApiError) as garbage:
        protobuf.decode(b"not protobuf")
    assert garbage.value.code == 400
