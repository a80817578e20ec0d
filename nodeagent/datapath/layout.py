"""What clang makes of bpf/lib/*.h: struct sizes, field offsets and constant values, read back through bcc.

Each number is compiled into the `max_entries` of a throwaway array map (value + 1, since 0 is not a valid
size), so the answer is clang's own layout, not a re-derivation. Used by tests to hold the ctypes mirrors in
maps.py to the C structs; no program is loaded and nothing is pinned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.datapath.errors import DatapathUnavailableError, ProgramError
from nodeagent.datapath.programs import BPF_SOURCE_DIR


@dataclass(frozen=True, slots=True, kw_only=True)
class CLayout:
    sizes: Mapping[str, int]
    offsets: Mapping[tuple[str, str], int]
    constants: Mapping[str, int]


def probe_c_layout(
    structs: Mapping[str, Iterable[str]], constants: Iterable[str], *, source_dir: Path = BPF_SOURCE_DIR
) -> CLayout:
    """Sizes of `structs` (C name -> field names), offsets of their fields, and values of `constants`."""
    lines = ["#define NODEMESH_STRUCTS_ONLY"]
    lines += [f'#include "lib/{header.name}"' for header in sorted((source_dir / "lib").glob("*.h"))]
    size_maps: dict[str, str] = {}
    offset_maps: dict[tuple[str, str], str] = {}
    constant_maps: dict[str, str] = {}
    for index, (struct, fields) in enumerate(structs.items()):
        size_maps[struct] = f"s{index}"
        lines.append(f"BPF_ARRAY(s{index}, u8, sizeof(struct {struct}) + 1);")
        for field_index, field in enumerate(fields):
            name = f"o{index}_{field_index}"
            offset_maps[(struct, field)] = name
            lines.append(f"BPF_ARRAY({name}, u8, __builtin_offsetof(struct {struct}, {field}) + 1);")
    for index, constant in enumerate(constants):
        constant_maps[constant] = f"c{index}"
        lines.append(f"BPF_ARRAY(c{index}, u8, ({constant}) + 1);")

    with _module("\n".join(lines) + "\n", [f"-I{source_dir}"]) as module:

        def read(name: str) -> int:
            return int(module.get_table(name.encode()).max_entries) - 1

        return CLayout(
            sizes={struct: read(name) for struct, name in size_maps.items()},
            offsets={key: read(name) for key, name in offset_maps.items()},
            constants={constant: read(name) for constant, name in constant_maps.items()},
        )


@contextlib.contextmanager
def _module(text: str, cflags: list[str]) -> Any:
    try:
        from bcc import BPF
    except ImportError as exc:
        raise DatapathUnavailableError(f"bcc is not importable: {exc}") from exc
    if os.geteuid() != 0:
        raise DatapathUnavailableError("creating BPF maps needs root")
    try:
        module = BPF(text=text.encode(), cflags=cflags)
    except Exception as exc:
        raise ProgramError(f"bcc cannot compile the layout probe: {exc}") from exc
    try:
        yield module
    finally:
        module.cleanup()
