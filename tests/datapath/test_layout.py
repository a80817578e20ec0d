"""The ctypes mirrors in maps.py match the C structs and constants of bpf/lib/*.h, as clang lays them out."""

from __future__ import annotations

import ctypes
import os

import pytest

from nodeagent.datapath import maps
from nodeagent.datapath.errors import DatapathUnavailableError
from nodeagent.datapath.layout import CLayout, probe_c_layout


def _fields(mirror: type[ctypes.Structure]) -> list[str]:
    return [field[0] for field in mirror._fields_]


@pytest.fixture(scope="module")
def layout() -> CLayout:
    if os.geteuid() != 0:
        pytest.skip("probing the C layout creates BPF maps: needs root")
    constants = [
        "NODEMESH_MAX_POD_EXCLUDED_PORTS",
        "NODEMESH_MAX_ENVOY_ADDRS",
        "NODEMESH_MAX_OUTBOUND_PORTS",
        "NODEMESH_POD_REDIRECT_ALL",
        "NODEMESH_CTR_MAX",
        *(f"NODEMESH_CTR_{counter.name}" for counter in maps.Counter),
        "NODEMESH_IN_MAX",
        *(f"NODEMESH_IN_{counter.name}" for counter in maps.InboundCounter),
        *(f"NODEMESH_INBOUND_{mode.name}" for mode in maps.InboundMode),
    ]
    try:
        return probe_c_layout({name: _fields(mirror) for name, mirror in maps.MIRRORS.items()}, constants)
    except DatapathUnavailableError as exc:
        pytest.skip(f"bcc unavailable: {exc}")


@pytest.mark.privileged
@pytest.mark.parametrize("struct", sorted(maps.MIRRORS))
def test_mirror_size_and_offsets_match_c(layout: CLayout, struct: str) -> None:
    mirror = maps.MIRRORS[struct]
    assert ctypes.sizeof(mirror) == layout.sizes[struct], f"sizeof(struct {struct})"
    for name in _fields(mirror):
        assert getattr(mirror, name).offset == layout.offsets[(struct, name)], f"offsetof({struct}, {name})"


@pytest.mark.privileged
def test_constants_match_c(layout: CLayout) -> None:
    assert layout.constants["NODEMESH_MAX_POD_EXCLUDED_PORTS"] == maps.MAX_POD_EXCLUDED_PORTS
    assert layout.constants["NODEMESH_MAX_ENVOY_ADDRS"] == maps.MAX_ENVOY_ADDRS
    assert layout.constants["NODEMESH_MAX_OUTBOUND_PORTS"] == maps.MAX_OUTBOUND_PORTS
    assert layout.constants["NODEMESH_POD_REDIRECT_ALL"] == maps.POD_REDIRECT_ALL


@pytest.mark.privileged
def test_counter_indexes_match_c_enum(layout: CLayout) -> None:
    assert layout.constants["NODEMESH_CTR_MAX"] == len(maps.Counter)
    for counter, index in maps.COUNTER_INDEX.items():
        assert layout.constants[f"NODEMESH_CTR_{counter.name}"] == index, counter


@pytest.mark.privileged
def test_inbound_counter_indexes_and_modes_match_c(layout: CLayout) -> None:
    assert layout.constants["NODEMESH_IN_MAX"] == len(maps.InboundCounter)
    for counter, index in maps.INBOUND_COUNTER_INDEX.items():
        assert layout.constants[f"NODEMESH_IN_{counter.name}"] == index, counter
    for mode in maps.InboundMode:
        assert layout.constants[f"NODEMESH_INBOUND_{mode.name}"] == mode.value, mode


@pytest.mark.privileged
def test_map_layout_sizes_follow_the_mirrors(layout: CLayout) -> None:
    # The sizes DatapathMaps.open checks pinned maps against are the mirrors' sizes.
    key, value = maps.MAP_LAYOUT[maps.MapName.ORIGDST_BY_TUPLE]
    assert (ctypes.sizeof(key), ctypes.sizeof(value)) == (
        layout.sizes["nodemesh_tuple"],
        layout.sizes["nodemesh_origdst"],
    )
