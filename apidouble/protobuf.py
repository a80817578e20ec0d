"""Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed generators send.

`kubectl create namespace|configmap|secret|serviceaccount` encode their object as protobuf (the `k8s\\0`
envelope around a runtime.Unknown). This decodes those four kinds to the JSON shape; anything else gets
415, with a hint to use `kubectl apply -f`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from apidouble.errors import bad_request, unsupported_media_type
from apidouble.jsonvalue import JsonObject

MAGIC = b"k8s\x00"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

Field = tuple[int, int, Any]  # (number, wire type, value: int or bytes)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise bad_request("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[Field]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise bad_request("truncated protobuf field")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == _FIXED64:
            yield number, wire, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == _FIXED32:
            yield number, wire, int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire}")


def _text(value: Any) -> str:
    return bytes(value).decode()


def _map_entry(value: bytes, *, binary: bool) -> tuple[str, str]:
    key, item = "", b""
    for number, _, raw in _fields(value):
        if number == 1:
            key = _text(raw)
        elif number == 2:
            item = raw
    return key, base64.b64encode(item).decode() if binary else item.decode()


def _time(value: bytes) -> str:
    seconds = 0
    for number, _, raw in _fields(value):
        if number == 1:
            seconds = raw
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _object_meta(data: bytes) -> JsonObject:
    meta: JsonObject = {}
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    for number, _, raw in _fields(data):
        if number in strings:
            if raw:  # gogo-protobuf writes empty strings too; JSON leaves them out
                meta[strings[number]] = _text(raw)
        elif number in (11, 12):
            key, value = _map_entry(raw, binary=False)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = value
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(raw))
        elif number == 8:
            meta["creationTimestamp"] = _time(raw)
    return meta


def _decode_namespace(fields: list[Field], obj: JsonObject) -> None:
    for number, _, raw in fields:
        if number == 2:
            finalizers = [_text(v) for n, _, v in _fields(raw) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}


def _decode_configmap(fields: list[Field], obj: JsonObject) -> None:
    for number, wire, raw in fields:
        if number in (2, 3):
            key, value = _map_entry(raw, binary=number == 3)
            obj.setdefault("data" if number == 2 else "binaryData", {})[key] = value
        elif number == 4 and wire == _VARINT:
            obj["immutable"] = bool(raw)


def _decode_secret(fields: list[Field], obj: JsonObject) -> None:
    for number, wire, raw in fields:
        if number in (2, 4):
            key, value = _map_entry(raw, binary=number == 2)
            obj.setdefault("data" if number == 2 else "stringData", {})[key] = value
        elif number == 3 and raw:
            obj["type"] = _text(raw)
        elif number == 5 and wire == _VARINT:
            obj["immutable"] = bool(raw)


def _decode_service_account(fields: list[Field], obj: JsonObject) -> None:
    for number, wire, raw in fields:
        if number in (2, 3):
            # secrets hold ObjectReferences (name: field 3), imagePullSecrets LocalObjectReferences (1).
            name_field = 3 if number == 2 else 1
            names = [_text(v) for n, _, v in _fields(raw) if n == name_field]
            ref = {"name": names[0]} if names else {}
            obj.setdefault("secrets" if number == 2 else "imagePullSecrets", []).append(ref)
        elif number == 4 and wire == _VARINT:
            obj["automountServiceAccountToken"] = bool(raw)


_DECODERS: dict[tuple[str, str], Callable[[list[Field], JsonObject], None]] = {
    ("v1", "Namespace"): _decode_namespace,
    ("v1", "ConfigMap"): _decode_configmap,
    ("v1", "Secret"): _decode_secret,
    ("v1", "ServiceAccount"): _decode_service_account,
}


def decode(body: bytes) -> JsonObject:
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body without the k8s envelope")
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            for type_number, _, type_value in _fields(value):
                if type_number == 1:
                    api_version = _text(type_value)
                elif type_number == 2:
                    kind = _text(type_value)
        elif number == 2:
            raw = value
    decoder = _DECODERS.get((api_version, kind))
    if decoder is None:
        raise unsupported_media_type(
            f"the API server double decodes protobuf only for {', '.join(k for _, k in _DECODERS)}, not "
            f"{api_version}/{kind}; use `kubectl apply -f` or `kubectl create -f`"
        )
    fields = list(_fields(raw))
    obj: JsonObject = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for number, _, value in fields:
        if number == 1:
            obj["metadata"] = _object_meta(value)
    decoder(fields, obj)
    return obj
