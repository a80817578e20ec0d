"""A directory of Kubernetes YAML/JSON manifests as a source of model events (local runs, tests, demo).

Any layout: files are found recursively (`.yaml`, `.yml`, `.json`; names starting with `.` are skipped, which
also skips the `..data` directories of ConfigMap mounts). Changes are found by polling each file's stat
signature, no inotify: a change is seen within `poll_interval` plus the time to re-read the changed files.

What happens to bad input:
- A document that is not valid YAML is reported (file, document index, line); the file's other documents
  still load. While any document of a file fails to parse, objects the file defined before are kept rather
  than deleted: the broken document probably still defines them (an editor saving half a change).
- An object that fails conversion is reported and left out; if this file held a valid version of it
  before, that version is kept (as an API server keeps the last accepted object when it rejects a write).
- The same object in two files: the file first in path order wins; the other is reported and ignored. An
  object moved from one file to another is not deleted (events come from diffing the merged state).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from controlplane.model.diagnostics import Diagnostic, Location, Reason, Severity
from controlplane.model.kube import convert
from controlplane.model.objects import Delete, MeshObject, ModelEvent, Upsert
from controlplane.model.refs import ObjectRef
from controlplane.sources.events import SourceSink, SourceUpdate

log = logging.getLogger(__name__)

SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
_DOC_START: Final = re.compile(r"^---(?:[ \t]+(.*))?$")
_DOC_END: Final = re.compile(r"^\.\.\.[ \t]*$")


@dataclass(frozen=True, slots=True)
class _Signature:
    """Changes whenever the file's content may have (ctime also catches a same-size rewrite in one tick)."""

    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int


@dataclass(slots=True)
class _FileState:
    signature: _Signature | None
    # In document order; each with where it was defined.
    objects: dict[ObjectRef, tuple[MeshObject, Location]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Document:
    index: int
    line: int  # 1-based line of the document's first line
    text: str


def split_documents(text: str) -> Iterator[_Document]:
    """The non-empty documents of a YAML stream, split at `---` / `...` lines, so one broken document does
    not take the others down with it."""
    lines: list[str] = []
    start = 1
    index = 0

    def flush() -> _Document | None:
        body = "\n".join(lines)
        if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            return _Document(index=index, line=start, text=body)
        return None

    for number, line in enumerate(text.splitlines(), start=1):
        start_match = _DOC_START.match(line)
        if start_match is not None or _DOC_END.match(line):
            doc = flush()
            if doc is not None:
                yield doc
                index += 1
            lines = [start_match.group(1)] if start_match is not None and start_match.group(1) else []
            start = number if lines else number + 1
            continue
        lines.append(line)
    doc = flush()
    if doc is not None:
        yield doc


class ManifestDirectory:
    """The objects defined by a tree of manifests (or one file), re-read file by file as files change.

    Blocking (file I/O); `FileSource` runs `refresh()` in a worker thread.
    """

    def __init__(self, root: Path, *, default_namespace: str = "default") -> None:
        self.root = root
        self.default_namespace = default_namespace
        self._files: dict[Path, _FileState] = {}
        self._root_problem: Diagnostic | None = None

    def refresh(self) -> bool:
        """Re-read what changed since the last call; True when any file was added, changed or removed."""
        changed = False
        seen: set[Path] = set()
        for path in self._scan():
            try:
                st = path.stat()
            except OSError:
                continue
            seen.add(path)
            signature = _Signature(st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
            old = self._files.get(path)
            if old is not None and old.signature == signature:
                continue
            self._files[path] = self._read(path, signature, old)
            changed = True
        for gone in set(self._files) - seen:
            del self._files[gone]
            changed = True
        return changed

    def objects(self) -> dict[ObjectRef, MeshObject]:
        return {ref: obj for ref, (obj, _) in self._merged()[0].items()}

    def locations(self) -> dict[ObjectRef, Location]:
        """Where each object was read (`meshctl analyze -f` points translation's diagnostics there)."""
        return {ref: location for ref, (_, location) in self._merged()[0].items()}

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        diagnostics = list(self._merged()[1])
        if self._root_problem is not None:
            diagnostics.append(self._root_problem)
        for state in self._files.values():
            diagnostics.extend(state.diagnostics)
        return tuple(sorted(diagnostics, key=Diagnostic.sort_key))

    def _merged(self) -> tuple[dict[ObjectRef, tuple[MeshObject, Location]], list[Diagnostic]]:
        merged: dict[ObjectRef, tuple[MeshObject, Location]] = {}
        duplicates: list[Diagnostic] = []
        for path in sorted(self._files):
            for ref, (obj, location) in self._files[path].objects.items():
                first = merged.get(ref)
                if first is None:
                    merged[ref] = (obj, location)
                    continue
                duplicates.append(
                    Diagnostic(
                        severity=Severity.WARNING,
                        reason=Reason.DUPLICATE_OBJECT,
                        message=f"ignored: already defined in {first[1]}",
                        ref=ref,
                        location=location,
                    )
                )
        return merged, duplicates

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root)) if self.root.is_dir() else path.name
        except ValueError:
            return str(path)

    def _scan(self) -> Iterator[Path]:
        self._root_problem = None
        if self.root.is_file():
            yield self.root
            return
        if not self.root.is_dir():
            self._root_problem = Diagnostic(
                severity=Severity.WARNING,
                reason=Reason.NOT_AN_OBJECT,
                message=f"manifest directory {self.root} does not exist",
            )
            return
        for directory, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in SUFFIXES:
                    yield Path(directory) / name

    def _read(self, path: Path, signature: _Signature, old: _FileState | None) -> _FileState:
        rel = self._relative(path)
        state = _FileState(signature=signature)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            state.diagnostics.append(_yaml_problem(Location(file=rel), f"cannot read file: {exc}"))
            if old is not None:
                state.objects = dict(old.objects)
            return state
        parse_failed = False
        for doc in self._documents(path, text):
            location = Location(file=rel, document=doc.index, line=doc.line)
            try:
                data = json.loads(doc.text) if path.suffix.lower() == ".json" else yaml.safe_load(doc.text)
            except (yaml.YAMLError, ValueError) as exc:
                parse_failed = True
                state.diagnostics.append(
                    _yaml_problem(_error_location(location, exc), f"invalid YAML: {exc}")
                )
                continue
            if data is None:
                continue
            for item in _expand_list(data):
                self._add(state, old, item, location)
        if parse_failed and old is not None:
            for ref, entry in old.objects.items():
                state.objects.setdefault(ref, entry)
        return state

    @staticmethod
    def _documents(path: Path, text: str) -> Iterator[_Document]:
        if path.suffix.lower() == ".json":
            if text.strip():
                yield _Document(index=0, line=1, text=text)
            return
        yield from split_documents(text)

    def _add(self, state: _FileState, old: _FileState | None, item: object, location: Location) -> None:
        result = convert(item, default_namespace=self.default_namespace)
        state.diagnostics.extend(_located(d, location) for d in result.diagnostics)
        if result.obj is not None:
            ref = result.obj.ref
            if ref in state.objects:
                state.diagnostics.append(
                    Diagnostic(
                        severity=Severity.WARNING,
                        reason=Reason.DUPLICATE_OBJECT,
                        message=f"ignored: already defined in {state.objects[ref][1]}",
                        ref=ref,
                        location=location,
                    )
                )
                return
            state.objects[ref] = (result.obj, location)
        elif result.ref is not None and old is not None and result.ref in old.objects:
            state.objects.setdefault(result.ref, old.objects[result.ref])
            state.diagnostics.append(
                Diagnostic(
                    severity=Severity.WARNING,
                    reason=Reason.KEPT_LAST_VALID,
                    message="the new version is invalid; keeping the last valid one",
                    ref=result.ref,
                    location=location,
                )
            )


def _expand_list(data: object) -> list[object]:
    """`kind: List` (what `kubectl get -o yaml` writes) holds its objects in `items`."""
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        return list(data["items"])
    return [data]


def _error_location(location: Location, exc: Exception) -> Location:
    mark = getattr(exc, "problem_mark", None)
    line = getattr(mark, "line", None)
    if isinstance(line, int) and location.line is not None:
        return Location(file=location.file, document=location.document, line=location.line + line)
    lineno = getattr(exc, "lineno", None)  # json.JSONDecodeError
    if isinstance(lineno, int):
        return Location(file=location.file, document=location.document, line=lineno)
    return location


def _yaml_problem(location: Location, message: str) -> Diagnostic:
    return Diagnostic(severity=Severity.ERROR, reason=Reason.INVALID_YAML, message=message, location=location)


def _located(diagnostic: Diagnostic, location: Location) -> Diagnostic:
    return Diagnostic(
        severity=diagnostic.severity,
        reason=diagnostic.reason,
        message=diagnostic.message,
        ref=diagnostic.ref,
        field=diagnostic.field,
        location=location,
    )


def diff_objects(
    old: dict[ObjectRef, MeshObject], new: dict[ObjectRef, MeshObject]
) -> tuple[ModelEvent, ...]:
    """Events turning `old` into `new`, sorted by reference (deterministic)."""
    events: list[ModelEvent] = []
    for ref in sorted(old.keys() | new.keys()):
        if ref not in new:
            events.append(Delete(ref=ref))
        elif old.get(ref) != new[ref]:
            events.append(Upsert(obj=new[ref]))
    return tuple(events)


def load_manifests(
    path: Path, *, default_namespace: str = "default"
) -> tuple[tuple[MeshObject, ...], tuple[Diagnostic, ...]]:
    """One-shot load (`meshctl analyze` offline): the valid objects, sorted by reference, and diagnostics."""
    directory = ManifestDirectory(path, default_namespace=default_namespace)
    directory.refresh()
    objects = directory.objects()
    return tuple(objects[ref] for ref in sorted(objects)), directory.diagnostics()


class FileSource:
    """Watches a manifest directory and publishes what changed. `async with` is not needed: `run()` until
    cancelled. `synced` is set once the first full load has been published."""

    def __init__(
        self,
        path: Path,
        sink: SourceSink,
        *,
        poll_interval: float = 0.5,
        name: str = "files",
        default_namespace: str = "default",
    ) -> None:
        self.name = name
        self.synced = asyncio.Event()
        self._directory = ManifestDirectory(path, default_namespace=default_namespace)
        self._sink = sink
        self._poll_interval = poll_interval

    async def run(self) -> None:
        current: dict[ObjectRef, MeshObject] = {}
        diagnostics: tuple[Diagnostic, ...] | None = None
        while True:
            changed = await asyncio.to_thread(self._directory.refresh)
            if changed or diagnostics is None:
                objects = self._directory.objects()
                new_diagnostics = self._directory.diagnostics()
                events = diff_objects(current, objects)
                if events or new_diagnostics != diagnostics:
                    log.info(
                        "manifests changed: %s events, %s diagnostics",
                        len(events),
                        len(new_diagnostics),
                        extra={"source": self.name},
                    )
                    await self._sink.publish(
                        SourceUpdate(
                            source=self.name, events=events, diagnostics=new_diagnostics, synced=True
                        )
                    )
                current, diagnostics = objects, new_diagnostics
                self.synced.set()
            await asyncio.sleep(self._poll_interval)
