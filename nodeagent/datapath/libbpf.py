"""Typed access to the few libbpf calls bcc 0.26's Python does not wrap: pinning, links, raw map operations.

libbpf.so.1 is the library libbcc itself links; it is loaded once per `Libbpf` (built in the composition root
and passed in). libbpf 1.x returns negative errno values; each wrapper maps failures to our errors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path
from typing import Final

from nodeagent.datapath.errors import DatapathUnavailableError, MapError, ProgramError

BPF_ANY: Final = 0
BPF_LINK_TYPE_CGROUP: Final = 3
BPF_LINK_TYPE_NETNS: Final = 5
_LINK_INFO_SIZE: Final = 128
_MAP_INFO_SIZE: Final = 128


class MapInfo(ctypes.Structure):
    """Mirrors the head of `struct bpf_map_info` (uapi/linux/bpf.h)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


class LinkInfo(ctypes.Structure):
    """Mirrors the head of `struct bpf_link_info` with its `cgroup` union member (uapi/linux/bpf.h)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),
        ("attach_type", ctypes.c_uint32),
    ]


class NetnsLinkInfo(ctypes.Structure):
    """Mirrors the head of `struct bpf_link_info` with its `netns` union member (uapi/linux/bpf.h)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("netns_ino", ctypes.c_uint32),  # 0 once the namespace is gone (the link is then defunct)
        ("attach_type", ctypes.c_uint32),
    ]


def _fail(what: str, rc: int) -> str:
    code = -rc
    return f"{what}: {os.strerror(code)} (errno {code})"


class Libbpf:
    """The libbpf entry points the data path uses, with checked results."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        lib.bpf_obj_pin.argtypes = [ctypes.c_int, ctypes.c_char_p]
        lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
        lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        lib.bpf_link_update.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
        lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
        lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for name in (
            "bpf_obj_pin",
            "bpf_obj_get",
            "bpf_link_create",
            "bpf_link_update",
            "bpf_obj_get_info_by_fd",
            "bpf_map_update_elem",
            "bpf_map_lookup_elem",
            "bpf_map_delete_elem",
            "bpf_map_get_next_key",
        ):
            getattr(lib, name).restype = ctypes.c_int

    @classmethod
    def load(cls) -> Libbpf:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            return cls(ctypes.CDLL(name, use_errno=True))
        except OSError as exc:
            raise DatapathUnavailableError(f"cannot load libbpf ({name}): {exc}") from exc

    # Objects and pins.

    def pin(self, fd: int, path: Path) -> None:
        rc = self._lib.bpf_obj_pin(fd, os.fsencode(path))
        if rc < 0:
            raise ProgramError(_fail(f"pin {path}", rc))

    def get_pinned(self, path: Path) -> int | None:
        """The fd of the object pinned at `path`, or None when nothing is pinned there."""
        fd = self._lib.bpf_obj_get(os.fsencode(path))
        if fd < 0:
            code = -fd
            if code == errno.ENOENT:
                return None
            raise ProgramError(_fail(f"open pinned {path}", fd))
        return int(fd)

    def link_create(self, prog_fd: int, target_fd: int, attach_type: int) -> int:
        fd = self._lib.bpf_link_create(prog_fd, target_fd, attach_type, None)
        if fd < 0:
            raise ProgramError(_fail(f"attach program (attach type {attach_type})", fd))
        return int(fd)

    def link_update(self, link_fd: int, prog_fd: int) -> None:
        rc = self._lib.bpf_link_update(link_fd, prog_fd, None)
        if rc < 0:
            raise ProgramError(_fail("replace the program of a link", rc))

    def link_info(self, link_fd: int) -> LinkInfo:
        return LinkInfo.from_buffer_copy(self._link_info(link_fd)[: ctypes.sizeof(LinkInfo)])

    def netns_link_info(self, link_fd: int) -> NetnsLinkInfo:
        return NetnsLinkInfo.from_buffer_copy(self._link_info(link_fd)[: ctypes.sizeof(NetnsLinkInfo)])

    def _link_info(self, link_fd: int) -> bytes:
        buf = ctypes.create_string_buffer(_LINK_INFO_SIZE)
        size = ctypes.c_uint32(_LINK_INFO_SIZE)
        rc = self._lib.bpf_obj_get_info_by_fd(link_fd, buf, ctypes.byref(size))
        if rc < 0:
            raise ProgramError(_fail("link info", rc))
        return buf.raw

    def map_info(self, map_fd: int) -> MapInfo:
        buf = ctypes.create_string_buffer(_MAP_INFO_SIZE)
        size = ctypes.c_uint32(_MAP_INFO_SIZE)
        rc = self._lib.bpf_obj_get_info_by_fd(map_fd, buf, ctypes.byref(size))
        if rc < 0:
            raise MapError(_fail("map info", rc))
        return MapInfo.from_buffer_copy(buf.raw[: ctypes.sizeof(MapInfo)])

    # Maps.

    def update(self, fd: int, key: ctypes._CData, value: ctypes._CData) -> None:
        rc = self._lib.bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), BPF_ANY)
        if rc < 0:
            raise MapError(_fail("map update", rc))

    def lookup(self, fd: int, key: ctypes._CData, value: ctypes._CData) -> bool:
        rc = self._lib.bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
        if rc < 0:
            code = -rc
            if code == errno.ENOENT:
                return False
            raise MapError(_fail("map lookup", rc))
        return True

    def delete(self, fd: int, key: ctypes._CData) -> bool:
        rc = self._lib.bpf_map_delete_elem(fd, ctypes.byref(key))
        if rc < 0:
            code = -rc
            if code == errno.ENOENT:
                return False
            raise MapError(_fail("map delete", rc))
        return True

    def next_key(self, fd: int, key: ctypes._CData | None, next_key: ctypes._CData) -> bool:
        """Writes the key after `key` (the first key when None) into `next_key`; False at the end."""
        previous = None if key is None else ctypes.byref(key)
        rc = self._lib.bpf_map_get_next_key(fd, previous, ctypes.byref(next_key))
        if rc < 0:
            code = -rc
            if code == errno.ENOENT:
                return False
            raise MapError(_fail("map iteration", rc))
        return True
