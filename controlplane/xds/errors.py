"""Exceptions of the xDS transport: one root, `XdsError`, so callers can catch the package as a whole."""

from __future__ import annotations


class XdsError(Exception):
    """Root of every error raised by controlplane.xds."""


class UnknownTypeUrlError(XdsError):
    """A type URL that this server does not serve."""

    def __init__(self, type_url: str) -> None:
        super().__init__(f"unknown resource type URL {type_url!r}")
        self.type_url = type_url


class InconsistentSnapshotError(XdsError):
    """A snapshot references resources it does not contain; `missing` lists each dangling reference."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("inconsistent snapshot: " + "; ".join(missing))
        self.missing = tuple(missing)


class DuplicateResourceError(XdsError):
    """Two different resources of one type share a name in one snapshot."""


class InvalidRequestError(XdsError):
    """A client's discovery request breaks the protocol; the stream is ended with INVALID_ARGUMENT."""
