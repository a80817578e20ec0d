from __future__ import annotations

import io
import re

import pytest

from meshctl.output import Cell, Color, Format, Painter, age, dump, render_table, use_color


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "environ", "expected"),
    [
        (Tty(), {}, True),
        (Tty(), {"NO_COLOR": ""}, False),  # set at all, even empty, means no colour
        (Tty(), {"TERM": "dumb"}, False),
        (io.StringIO(), {}, False),
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    stream: io.StringIO, environ: dict[str, str], expected: bool
) -> None:
    assert use_color(stream, environ) is expected


def test_table_aligns_columns_and_colours_do_not_skew_them() -> None:
    rows: list[list[Cell | str]] = [
        ["node-a", Cell(text="SYNCED", color=Color.GREEN), "x"],
        ["n", "ERROR long", "y"],
    ]
    plain = render_table(["NODE", "CDS", "Z"], rows, Painter(enabled=False))
    assert plain.splitlines() == ["NODE    CDS         Z", "node-a  SYNCED      x", "n       ERROR long  y"]
    coloured = render_table(["NODE", "CDS", "Z"], rows, Painter(enabled=True))
    assert "\x1b[32mSYNCED    \x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_dump_and_age() -> None:
    assert dump({"a": [1]}, Format.JSON) == '{\n  "a": [\n    1\n  ]\n}\n'
    assert dump({"a": [1]}, Format.YAML) == "a:\n- 1\n"
    assert [age(s) for s in (0, 59, 61, 3601, 90000, -5)] == ["0s", "59s", "1m1s", "1h0m", "1d1h", "0s"]
