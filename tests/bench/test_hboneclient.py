"""The HBONE client's HTTP/2 framing: what it sends is the preface, SETTINGS, and a CONNECT HEADERS frame."""

from __future__ import annotations

import pytest

from bench.hboneclient import END_HEADERS, HEADERS, PREFACE, SETTINGS, connect_request, frame


def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out = []
    while data:
        length = int.from_bytes(data[:3], "big")
        kind, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big")
        out.append((kind, flags, stream, data[9 : 9 + length]))
        data = data[9 + length :]
    return out


def test_connect_request_is_preface_settings_and_headers_on_stream_1() -> None:
    data = connect_request("198.18.2.1:8080")
    assert data.startswith(PREFACE)
    (settings, headers) = _frames(data[len(PREFACE) :])
    assert settings == (SETTINGS, 0, 0, b"")
    kind, flags, stream, block = headers
    assert (kind, flags, stream) == (HEADERS, END_HEADERS, 1)
    # HPACK literals without indexing: :method (static 2) CONNECT, :authority (static 1) the target.
    assert block == b"\x02\x07CONNECT\x01\x0f198.18.2.1:8080"


def test_frame_header_carries_length_type_flags_and_stream() -> None:
    assert frame(SETTINGS, 1, 0) == b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
    assert frame(HEADERS, END_HEADERS, 3, b"ab")[:9] == b"\x00\x00\x02\x01\x04\x00\x00\x00\x03"


def test_long_values_are_refused_by_the_minimal_encoder() -> None:
    with pytest.raises(ValueError, match="too long"):
        connect_request("x" * 200)
