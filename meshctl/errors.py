"""meshctl's errors and exit codes: every failure maps to one exit code a script can act on."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PROBLEMS = 1  # the command worked and found something wrong (a NACK, a failed check, an unknown node)
    USAGE = 2  # bad arguments
    UNREACHABLE = 3  # the control plane did not answer


class MeshctlError(Exception):
    """Root of meshctl's errors; `exit_code` is what `main` returns for it."""

    exit_code: ExitCode = ExitCode.PROBLEMS


class UsageError(MeshctlError):
    exit_code = ExitCode.USAGE


class UnreachableError(MeshctlError):
    """The control plane's xDS (CSDS) or admin endpoint cannot be reached."""

    exit_code = ExitCode.UNREACHABLE
