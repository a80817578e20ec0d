"""How meshctl prints: aligned tables for people (coloured only on a terminal, never with NO_COLOR),
JSON and YAML for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import yaml


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class Color(StrEnum):
    GREEN = "32"
    YELLOW = "33"
    RED = "31"
    DIM = "2"


class Terminal(Protocol):
    def isatty(self) -> bool: ...


def use_color(stream: Terminal, environ: Mapping[str, str]) -> bool:
    """Colours only for a terminal, and never when NO_COLOR is set (https://no-color.org) or TERM=dumb."""
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    text: str
    color: Color | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Painter:
    enabled: bool

    def paint(self, text: str, color: Color | None) -> str:
        if not self.enabled or color is None or not text:
            return text
        return f"\x1b[{color.value}m{text}\x1b[0m"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], painter: Painter) -> str:
    """Columns padded to their widest cell, two spaces apart; colours applied after padding so escape
    codes never skew the alignment."""
    cells = [[c if isinstance(c, Cell) else Cell(text=c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.text))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        padded = [
            painter.paint(c.text.ljust(w) if i < len(row) - 1 else c.text, c.color)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def dump(document: object, output: Format) -> str:
    if output is Format.YAML:
        return yaml.safe_dump(document, sort_keys=False)
    return json.dumps(document, indent=2) + "\n"


def age(seconds: float) -> str:
    """`42s`, `5m3s`, `2h7m`, `3d4h`: how long ago, short."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
