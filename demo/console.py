"""How the demo prints: a progress line per step (`[3/7] header route ... ok (0.8 s)`), indented details,
a summary at the end; colours only on a terminal (and never with NO_COLOR or TERM=dumb)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TextIO

from meshctl.output import Color, Painter, use_color


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAILED = "FAILED"
    INTERRUPTED = "interrupted"


_COLORS = {
    Outcome.OK: Color.GREEN,
    Outcome.WARN: Color.YELLOW,
    Outcome.FAILED: Color.RED,
    Outcome.INTERRUPTED: Color.YELLOW,
}


@dataclass(slots=True)
class Console:
    total: int
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    color: bool | None = None
    _index: int = 0
    _painter: Painter = field(init=False)

    def __post_init__(self) -> None:
        enabled = use_color(self.stream, os.environ) if self.color is None else self.color
        self._painter = Painter(enabled=enabled)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def paint(self, text: str, color: Color | None) -> str:
        return self._painter.paint(text, color)

    def begin(self, title: str, *, index: int | None = None) -> None:
        """`[i/n] title ... ` (the outcome follows on the line); `index` jumps ahead (to the teardown)."""
        self._index = self._index + 1 if index is None else index
        self._write(f"[{self._index}/{self.total}] {title} ... ")

    def end(self, outcome: Outcome, seconds: float) -> None:
        self._write(f"{self.paint(outcome.value, _COLORS[outcome])} ({seconds:.1f} s)\n")

    def detail(self, lines: Sequence[str], color: Color | None = None) -> None:
        for line in lines:
            self._write(f"      {self.paint(line, color)}\n")

    def line(self, text: str = "", color: Color | None = None) -> None:
        self._write(f"{self.paint(text, color)}\n")

    def summary(self, rows: Sequence[tuple[str, Outcome, str]]) -> None:
        self.line()
        self.line("summary", Color.DIM)
        width = max((len(name) for name, _, _ in rows), default=0)
        for name, outcome, text in rows:
            mark = self.paint(f"{outcome.value:<6}", _COLORS[outcome])
            self._write(f"  {mark} {name:<{width}}  {text}\n")
