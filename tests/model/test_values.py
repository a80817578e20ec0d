"""Value types: durations, RE2 regex checks, L7 protocol detection, object references, FrozenMap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.model.duration import Duration, DurationError
from controlplane.model.frozenmap import FrozenMap
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.regex import regex_problem
from controlplane.model.service import L7Protocol, Protocol, l7_protocol_of


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("0s", 0),
        ("0", 0),
        ("1h2m3s4ms", ((3600 + 120 + 3) * 1000 + 4) * 1_000_000),
        ("500ms", 500_000_000),
        ("1.5s", 1_500_000_000),
        ("2us", 2_000),
        ("3µs", 3_000),
        ("7ns", 7),
        ("1m1m", 120 * 10**9),
        (".5s", 500_000_000),
    ],
)
def test_duration_parse(text: str, nanos: int) -> None:
    assert Duration.parse(text).nanoseconds == nanos


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1h 2m", "-1s", "1.s.", "10 s", "1e3s"])
def test_duration_parse_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        Duration.parse(text)


@pytest.mark.parametrize("text", ["1.5s", "1us", "123456s", "1h1m1s1ms1s", "1S", ""])
def test_gateway_duration_is_stricter(text: str) -> None:
    with pytest.raises(DurationError):
        Duration.parse_gateway(text)


def test_duration_helpers() -> None:
    d = Duration.parse("1h2m3s4ms")
    assert str(d) == "1h2m3s4ms"
    assert d.milliseconds == 3_723_004
    assert d.seconds_and_nanos() == (3723, 4_000_000)
    assert str(Duration(nanoseconds=0)) == "0s" and not Duration(nanoseconds=0)
    assert Duration.of(seconds=1) < Duration.of(milliseconds=1001)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_duration_prints_and_parses_back(nanos: int) -> None:
    d = Duration(nanoseconds=nanos)
    assert Duration.parse(str(d)) == d


@pytest.mark.parametrize(
    ("pattern", "unsupported"),
    [
        ("/api/v[0-9]+/.*", None),
        ("^(?P<name>[a-z]+)$", None),
        (r"[(?=]x", None),  # inside a class these are literals
        (r"a\(?=b", None),  # escaped parenthesis
        (r"[\]]+\d", None),
        ("a(?=b)", True),
        ("a(?!b)", True),
        ("(?<=a)b", True),
        ("(?<!a)b", True),
        (r"(a)\1", True),
        ("(?P<x>a)(?P=x)", True),
        ("(?>ab)", True),
        ("a*+", True),
        (r"abc\Z", True),
        ("a(b", False),
        ("*a", False),
    ],
)
def test_regex_problem(pattern: str, unsupported: bool | None) -> None:
    problem = regex_problem(pattern)
    if unsupported is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] is unsupported


@pytest.mark.parametrize(
    ("name", "app_protocol", "protocol", "expected"),
    [
        ("http", None, Protocol.TCP, L7Protocol.HTTP),
        ("http-web", None, Protocol.TCP, L7Protocol.HTTP),
        ("https-web", None, Protocol.TCP, L7Protocol.TCP),
        ("http2", None, Protocol.TCP, L7Protocol.H2C),
        ("grpc", None, Protocol.TCP, L7Protocol.GRPC),
        ("grpc-api", None, Protocol.TCP, L7Protocol.GRPC),
        ("grpc-web", None, Protocol.TCP, L7Protocol.HTTP),
        ("web", None, Protocol.TCP, L7Protocol.TCP),
        ("", None, Protocol.TCP, L7Protocol.TCP),
        ("tcp", "http", Protocol.TCP, L7Protocol.HTTP),
        ("http", "https", Protocol.TCP, L7Protocol.TCP),  # appProtocol wins over the name
        ("x", "kubernetes.io/h2c", Protocol.TCP, L7Protocol.H2C),
        ("x", "h2c", Protocol.TCP, L7Protocol.H2C),
        ("x", "GRPC", Protocol.TCP, L7Protocol.GRPC),
        ("x", "kubernetes.io/ws", Protocol.TCP, L7Protocol.TCP),
        ("http", None, Protocol.UDP, L7Protocol.TCP),
    ],
)
def test_l7_protocol(name: str, app_protocol: str | None, protocol: Protocol, expected: L7Protocol) -> None:
    assert l7_protocol_of(name=name, app_protocol=app_protocol, protocol=protocol) is expected


def test_object_ref_prints_and_parses() -> None:
    ref = ObjectRef(kind=Kind.HTTP_ROUTE, namespace="shop", name="reviews")
    assert str(ref) == "HTTPRoute/shop/reviews"
    assert ObjectRef.parse(str(ref)) == ref
    node = ObjectRef(kind=Kind.NODE, name="node-a")
    assert str(node) == "Node/node-a" and ObjectRef.parse("Node/node-a") == node
    with pytest.raises(ValueError, match="not an object reference"):
        ObjectRef.parse("a/b/c/d")


def test_frozen_map_is_a_hashable_mapping() -> None:
    a = FrozenMap({"x": "1", "y": "2"})
    b = FrozenMap([("y", "2"), ("x", "1")])
    assert a == b and hash(a) == hash(b) and a == {"x": "1", "y": "2"}
    assert len({a, b}) == 1
