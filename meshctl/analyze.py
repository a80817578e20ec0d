"""`meshctl analyze`: what is wrong with the mesh's config, object by object, with the field and the reason.

Offline (`-f DIR`) it reads the manifests itself and runs the same checks the control plane runs; live it
asks the control plane's `/debug/diagnostics`. Both give diagnostic documents (`Diagnostic.to_document()`),
which this module renders; nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controlplane.inspect import analyze_mesh, merge_diagnostics
from controlplane.model.diagnostics import Severity
from controlplane.model.snapshot import MeshSnapshot
from controlplane.sources.files import ManifestDirectory
from controlplane.translate.settings import TranslateSettings
from meshctl.output import Cell, Color, Painter, render_table

DiagnosticDocument = Mapping[str, Any]

_COLORS = {Severity.ERROR.value: Color.RED, Severity.WARNING.value: Color.YELLOW}


def analyze_offline(
    path: Path, *, trust_domain: str = "cluster.local"
) -> tuple[list[dict[str, object]], int]:
    """The diagnostics of a directory (or file) of manifests, and how many objects it defines. Translation's
    diagnostics get the location of the object they name, as the conversion's already have."""
    directory = ManifestDirectory(path)
    directory.refresh()
    objects, locations = directory.objects(), directory.locations()
    found = analyze_mesh(
        MeshSnapshot.from_objects(objects.values()), TranslateSettings(trust_domain=trust_domain)
    )
    located = [
        dataclasses.replace(d, location=locations[d.ref])
        if d.location is None and d.ref is not None and d.ref in locations
        else d
        for d in found
    ]
    return [d.to_document() for d in merge_diagnostics(directory.diagnostics(), located)], len(objects)


def object_text(document: DiagnosticDocument) -> str:
    obj = document.get("object")
    if not obj:
        return "-"
    kind, namespace, name = obj.get("kind", "?"), obj.get("namespace", ""), obj.get("name", "?")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def location_text(document: DiagnosticDocument) -> str:
    location = document.get("location")
    if not location:
        return ""
    text = str(location.get("file", ""))
    if location.get("line") is not None:
        return f"{text}:{location['line']}"
    if location.get("document") is not None:
        return f"{text} (document {location['document']})"
    return text


def is_error(document: DiagnosticDocument) -> bool:
    return document.get("severity") == Severity.ERROR.value


def has_errors(documents: Sequence[DiagnosticDocument]) -> bool:
    return any(is_error(d) for d in documents)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary(documents: Sequence[DiagnosticDocument], *, objects: int | None = None) -> str:
    """`2 errors, 1 warning in 2 objects` (objects: the distinct objects named; files for unnamed ones)."""
    if not documents:
        scope = f" in {_plural(objects, 'object')}" if objects is not None else ""
        return f"no problems found{scope}"
    errors = sum(is_error(d) for d in documents)
    warnings = len(documents) - errors
    subjects = {object_text(d) if d.get("object") else location_text(d) or "-" for d in documents}
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {_plural(len(subjects), 'object')}"


def render(documents: Sequence[DiagnosticDocument], painter: Painter, *, objects: int | None = None) -> str:
    """A table (SEVERITY OBJECT FIELD REASON MESSAGE, and LOCATION when any diagnostic has one), then the
    summary line."""
    if not documents:
        return summary(documents, objects=objects) + "\n"
    with_location = any(d.get("location") for d in documents)
    headers = ["SEVERITY", "OBJECT", "FIELD", "REASON", "MESSAGE"]
    if with_location:
        headers.insert(4, "LOCATION")
    rows: list[list[Cell | str]] = []
    for d in documents:
        severity = str(d.get("severity", "?"))
        row: list[Cell | str] = [
            Cell(text=severity, color=_COLORS.get(severity)),
            object_text(d),
            str(d.get("field") or "-"),
            str(d.get("reason", "?")),
            # One line per row: multi-line messages (a YAML parser's) would break the table.
            " ".join(str(d.get("message", "")).split()),
        ]
        if with_location:
            row.insert(4, location_text(d) or "-")
        rows.append(row)
    return render_table(headers, rows, painter) + "\n" + summary(documents, objects=objects) + "\n"
