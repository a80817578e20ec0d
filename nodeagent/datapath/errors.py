"""Errors of the data path: one root, with bcc, libbpf and OS errors mapped onto it at the boundary."""

from __future__ import annotations


class DatapathError(Exception):
    """Root of every data path error."""


class DatapathUnavailableError(DatapathError):
    """The machine cannot run the data path: not root, no bcc, no bpffs, no cgroup v2."""


class ProgramError(DatapathError):
    """A BPF program failed to compile, load, attach or pin."""


class MapError(DatapathError):
    """A BPF map operation failed, or a pinned map does not match the structs this agent was built with."""


class NetnsError(DatapathError):
    """A network namespace could not be entered or its cookie read."""
