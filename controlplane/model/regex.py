"""Regular expressions as Envoy runs them: Google RE2, which has no lookaround, backreferences or
possessive/atomic constructs. Python's `re` accepts those, so a pattern must pass both checks here."""

from __future__ import annotations

import re


def regex_problem(pattern: str) -> tuple[bool, str] | None:
    """None when RE2 (and Python) accept the pattern; else (supported_elsewhere, message).

    supported_elsewhere is True when the pattern is valid but uses a construct RE2 lacks.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        return (False, f"invalid regular expression {pattern!r}: {exc}")
    construct = _unsupported_construct(pattern)
    if construct is not None:
        return (
            True,
            f"regular expression {pattern!r} uses {construct}, which Envoy's RE2 engine does not support",
        )
    return None


_GROUP_PREFIXES = (
    ("(?=", "a lookahead"),
    ("(?!", "a negative lookahead"),
    ("(?<=", "a lookbehind"),
    ("(?<!", "a negative lookbehind"),
    ("(?>", "an atomic group"),
    ("(?(", "a conditional"),
    ("(?P=", "a named backreference"),
    ("(?#", "a comment group"),
)


def _unsupported_construct(pattern: str) -> str | None:
    """Scan outside character classes for constructs RE2 rejects (the pattern already compiled in `re`)."""
    i = 0
    in_class = False
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if not in_class:
                if nxt in "123456789":
                    return "a backreference"
                if nxt == "Z":
                    return r"\Z (RE2 spells it \z)"
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            i += 1
            continue
        if c == "[":
            in_class = True
            # A `]` (or `^]`) right after the opening bracket is a literal, not the end.
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            continue
        if c == "(":
            for prefix, name in _GROUP_PREFIXES:
                if pattern.startswith(prefix, i):
                    return name
        if c in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            return "a possessive quantifier"
        i += 1
    return None
