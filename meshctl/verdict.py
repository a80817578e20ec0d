"""The outcome of one check (`meshctl check`, `check --pre`) and how a list of them prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from meshctl.output import Color, Painter


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


_COLORS = {
    Verdict.OK: Color.GREEN,
    Verdict.WARN: Color.YELLOW,
    Verdict.FAIL: Color.RED,
    Verdict.SKIP: Color.DIM,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str  # stable, for scripts: "kernel", "cgroup-v2", "proxy-synced"...
    verdict: Verdict
    detail: str  # what was found
    fix: str = ""  # one line: what to do about a FAIL or WARN

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "verdict": self.verdict.value, "detail": self.detail, "fix": self.fix}


def failed(results: Sequence[CheckResult]) -> bool:
    return any(r.verdict is Verdict.FAIL for r in results)


def render(results: Sequence[CheckResult], painter: Painter) -> str:
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        verdict = painter.paint(r.verdict.value.ljust(4), _COLORS[r.verdict])
        indent = " " * (width + 8)
        # Envoy's NACK messages span lines (a proto dump, then the reason): keep them inside the column.
        detail = "\n".join(line.rstrip() for line in r.detail.strip().splitlines()).replace(
            "\n", "\n" + indent
        )
        lines.append(f"{verdict}  {r.name.ljust(width)}  {detail}")
        if r.fix and r.verdict in (Verdict.FAIL, Verdict.WARN):
            lines.append(f"{indent}fix: {r.fix}")
    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    summary = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    lines.append(f"\n{summary}" if summary else "no checks")
    return "\n".join(lines) + "\n"
