"""The raw Envoy resources of a directory of YAML: parsing, per-file state, and per-node merging.

Layout (all files `*.yaml` or `*.yml`, each multi-document; each document one resource in Envoy's JSON/YAML
form with an `"@type"` key such as `type.googleapis.com/envoy.config.cluster.v3.Cluster`):

    DIR/*.yaml                 resources every node gets (the cache's default snapshot)
    DIR/nodes/<node-id>/*.yaml extra resources for that node; a resource with the type and name of a default
                               one replaces it for that node

Bad input never stops the rest: a document that fails to parse is reported (file, document index, field) and
left out. When an edit breaks a file that loaded cleanly before, the file's previous good state is kept, so a
typo does not withdraw the resources of the whole file from the mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Imported for their side effect: registering the message types that typed_config Anys in raw resources name,
# so json_format can resolve them. Extend this list when a sample needs another extension.
from envoy.extensions.access_loggers.file.v3 import file_pb2 as _file_log  # noqa: F401
from envoy.extensions.access_loggers.stream.v3 import stream_pb2 as _stream_log  # noqa: F401
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as _aggregate  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2 as _router  # noqa: F401
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2 as _http_inspector  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2 as _original_dst  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2 as _tls_inspector  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2 as _hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2 as _tcp_proxy  # noqa: F401
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2 as _raw_buffer  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2 as _tls  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as _http_options  # noqa: F401
from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.xds import typeurls
from controlplane.xds.errors import XdsError
from controlplane.xds.resource import resource_name

log = logging.getLogger(__name__)

TYPE_KEY = "@type"
NODES_DIR = "nodes"
SUFFIXES = (".yaml", ".yml")


class RawSourceError(Exception):
    """Root of the raw source's errors (the directory itself is unusable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    """Why one document (or a whole file, when `document` is None) was left out."""

    file: str
    document: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.document is None else f"{self.file}: document {self.document}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawResource:
    """One parsed resource and where it came from (`file`, document index)."""

    type_url: str
    name: str
    message: Message
    file: str
    document: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.type_url, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFile:
    resources: tuple[RawResource, ...]
    diagnostics: tuple[Diagnostic, ...]


def _first_line(text: str) -> str:
    # json_format appends a long "Available Fields" list after the first line; the first line names the field.
    return text.strip().splitlines()[0] if text.strip() else text


def parse_document(document: object, *, file: str, index: int) -> RawResource:
    """One YAML document -> a resource; raises ValueError with a message naming the offending field."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a mapping with an {TYPE_KEY!r} key, got {type(document).__name__}")
    type_url = document.get(TYPE_KEY)
    if not isinstance(type_url, str):
        raise ValueError(f"missing {TYPE_KEY!r} key (e.g. {typeurls.CLUSTER!r})")
    try:
        message = typeurls.message_class(type_url)()
    except XdsError:
        known = ", ".join(sorted(typeurls.KNOWN_TYPES))
        raise ValueError(f"unknown {TYPE_KEY} {type_url!r}; known: {known}") from None
    body: dict[str, Any] = {k: v for k, v in document.items() if k != TYPE_KEY}
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise ValueError(_first_line(str(exc))) from exc
    name = resource_name(message)
    if not name:
        raise ValueError("resource has no name")
    return RawResource(type_url=type_url, name=name, message=message, file=file, document=index)


def parse_text(text: str, *, file: str) -> ParsedFile:
    """Every document of one YAML file; bad documents become diagnostics, the rest still parse."""
    resources: list[RawResource] = []
    diagnostics: list[Diagnostic] = []
    documents = yaml.safe_load_all(text)
    index = 0
    while True:
        try:
            document = next(documents)
        except StopIteration:
            break
        except yaml.YAMLError as exc:
            # The YAML stream cannot be resumed after a syntax error: the rest of the file is lost.
            diagnostics.append(Diagnostic(file=file, document=index, message=f"invalid YAML: {exc}"))
            break
        if document is not None:  # empty documents (a trailing `---`) are fine
            try:
                resources.append(parse_document(document, file=file, index=index))
            except ValueError as exc:
                diagnostics.append(Diagnostic(file=file, document=index, message=str(exc)))
        index += 1
    return ParsedFile(resources=tuple(resources), diagnostics=tuple(diagnostics))


def parse_file(path: Path) -> ParsedFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        unreadable = Diagnostic(file=str(path), document=None, message=str(exc))
        return ParsedFile(resources=(), diagnostics=(unreadable,))
    return parse_text(text, file=str(path))


Signature = tuple[int, int, int]


@dataclass(slots=True, kw_only=True)
class _FileState:
    signature: Signature
    parsed: ParsedFile
    # The last parse without diagnostics, kept in force while the file is broken.
    good: ParsedFile | None

    @property
    def in_force(self) -> tuple[RawResource, ...]:
        if self.parsed.diagnostics and self.good is not None:
            return self.good.resources
        return self.parsed.resources


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    """What one scan changed: whether the default set changed, and which nodes' own files did."""

    default_changed: bool = False
    nodes_changed: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return self.default_changed or bool(self.nodes_changed)


@dataclass(slots=True)
class RawXdsDirectory:
    """The parsed state of a raw-resources directory, refreshed by `scan()` (stat signatures, so cheap)."""

    root: Path
    _files: dict[Path, _FileState] = field(default_factory=dict)

    def _list(self) -> Iterator[tuple[str | None, Path]]:
        """(node id or None for the default set, file path) of every resource file, sorted."""
        if not self.root.is_dir():
            raise RawSourceError(f"raw xDS source {self.root}: not a directory")
        for path in sorted(self.root.iterdir()):
            if path.suffix in SUFFIXES and path.is_file():
                yield None, path
        nodes = self.root / NODES_DIR
        if nodes.is_dir():
            for node_dir in sorted(nodes.iterdir()):
                if node_dir.is_dir():
                    for path in sorted(node_dir.iterdir()):
                        if path.suffix in SUFFIXES and path.is_file():
                            yield node_dir.name, path

    def _scope(self, path: Path) -> str | None:
        return path.parent.name if path.parent.parent == self.root / NODES_DIR else None

    def scan(self) -> ScanResult:
        default_changed = False
        nodes_changed: set[str] = set()
        seen: set[Path] = set()
        for node, path in self._list():
            seen.add(path)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            state = self._files.get(path)
            if state is not None and state.signature == signature:
                continue
            parsed = parse_file(path)
            good = parsed if not parsed.diagnostics else (state.good if state is not None else None)
            self._files[path] = _FileState(signature=signature, parsed=parsed, good=good)
            self._report(path, parsed, kept_previous=bool(parsed.diagnostics and good is not None))
            if node is None:
                default_changed = True
            else:
                nodes_changed.add(node)
        for gone in set(self._files) - seen:
            del self._files[gone]
            log.info("raw xDS file removed", extra={"file": str(gone)})
            node = self._scope(gone)
            if node is None:
                default_changed = True
            else:
                nodes_changed.add(node)
        return ScanResult(default_changed=default_changed, nodes_changed=frozenset(nodes_changed))

    @staticmethod
    def _report(path: Path, parsed: ParsedFile, *, kept_previous: bool) -> None:
        for diagnostic in parsed.diagnostics:
            log.error(
                "bad raw xDS resource left out: %s",
                diagnostic,
                extra={"file": diagnostic.file, "document": diagnostic.document},
            )
        if kept_previous:
            log.warning(
                "keeping the last good version of %s until it is fixed",
                path,
                extra={"file": str(path)},
            )
        elif not parsed.diagnostics:
            log.info(
                "loaded raw xDS file",
                extra={"file": str(path), "resources": len(parsed.resources)},
            )

    @property
    def nodes(self) -> frozenset[str]:
        """Nodes with a directory of their own resources."""
        return frozenset(n for n in (self._scope(p) for p in self._files) if n is not None)

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Current problems, across all files, in file order."""
        return tuple(d for path in sorted(self._files) for d in self._files[path].parsed.diagnostics)

    def _merge(self, paths: Iterable[Path], into: dict[tuple[str, str], RawResource]) -> list[Diagnostic]:
        problems: list[Diagnostic] = []
        claimed: dict[tuple[str, str], RawResource] = {}
        for path in paths:
            for resource in self._files[path].in_force:
                first = claimed.get(resource.key)
                if first is not None:
                    message = (
                        f"duplicate {typeurls.short_name(resource.type_url)} {resource.name!r}: "
                        f"already defined in {first.file} document {first.document}; left out"
                    )
                    problems.append(
                        Diagnostic(file=resource.file, document=resource.document, message=message)
                    )
                    continue
                claimed[resource.key] = resource
                into[resource.key] = resource
        return problems

    def resources(self, node: str | None = None) -> tuple[list[RawResource], list[Diagnostic]]:
        """The resources in force for `node` (None: the default set), sorted, and merge problems."""
        merged: dict[tuple[str, str], RawResource] = {}
        problems = self._merge((p for p in sorted(self._files) if self._scope(p) is None), merged)
        if node is not None:
            problems += self._merge((p for p in sorted(self._files) if self._scope(p) == node), merged)
        return [merged[k] for k in sorted(merged)], problems
