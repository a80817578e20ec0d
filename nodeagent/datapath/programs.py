"""The redirect's BPF programs: which source, which kernel program and attach type, which cgroup."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Final

# bpf/ at the repository root, next to this package's top-level package.
BPF_SOURCE_DIR: Final = Path(__file__).resolve().parents[2] / "bpf"


class ProgType(IntEnum):
    """`enum bpf_prog_type` values from uapi/linux/bpf.h (bcc 0.26 lacks some names)."""

    SOCK_OPS = 13
    CGROUP_SOCK_ADDR = 18
    CGROUP_SOCKOPT = 25
    SK_LOOKUP = 30


class AttachType(IntEnum):
    """`enum bpf_attach_type` values from uapi/linux/bpf.h that the data path uses."""

    CGROUP_SOCK_OPS = 3
    CGROUP_INET4_CONNECT = 10
    CGROUP_GETSOCKOPT = 21
    CGROUP_INET4_GETPEERNAME = 29
    SK_LOOKUP = 36


class Hook(StrEnum):
    CONNECT4 = "connect4"
    SOCKOPS = "sockops"
    GETSOCKOPT = "getsockopt"
    GETPEERNAME4 = "getpeername4"
    INBOUND = "inbound"


class Target(StrEnum):
    """Which cgroup a program attaches to."""

    PODS = "pods"  # the cgroup holding the node's pods (in a cluster the cgroup v2 root)
    ENVOY = "envoy"  # the node Envoy's cgroup: only Envoy's sockets answer SO_ORIGINAL_DST
    # Each meshed pod's network namespace (sk_lookup attaches per netns): loaded and pinned at install,
    # attached per pod by the reconciler (nodeagent.datapath.netnshooks).
    POD_NETNS = "pod-netns"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramSpec:
    hook: Hook
    function: str
    prog_type: ProgType
    attach_type: AttachType
    target: Target

    def source(self, source_dir: Path) -> Path:
        return source_dir / f"{self.hook}.c"


PROGRAMS: Final[tuple[ProgramSpec, ...]] = (
    ProgramSpec(
        hook=Hook.CONNECT4,
        function="nodemesh_connect4",
        prog_type=ProgType.CGROUP_SOCK_ADDR,
        attach_type=AttachType.CGROUP_INET4_CONNECT,
        target=Target.PODS,
    ),
    ProgramSpec(
        hook=Hook.SOCKOPS,
        function="nodemesh_sockops",
        prog_type=ProgType.SOCK_OPS,
        attach_type=AttachType.CGROUP_SOCK_OPS,
        target=Target.PODS,
    ),
    ProgramSpec(
        hook=Hook.GETSOCKOPT,
        function="nodemesh_getsockopt",
        prog_type=ProgType.CGROUP_SOCKOPT,
        attach_type=AttachType.CGROUP_GETSOCKOPT,
        target=Target.ENVOY,
    ),
    ProgramSpec(
        hook=Hook.GETPEERNAME4,
        function="nodemesh_getpeername4",
        prog_type=ProgType.CGROUP_SOCK_ADDR,
        attach_type=AttachType.CGROUP_INET4_GETPEERNAME,
        target=Target.PODS,
    ),
    ProgramSpec(
        hook=Hook.INBOUND,
        function="nodemesh_inbound",
        prog_type=ProgType.SK_LOOKUP,
        attach_type=AttachType.SK_LOOKUP,
        target=Target.POD_NETNS,
    ),
)


def source_digest(spec: ProgramSpec, source_dir: Path) -> str:
    """A short digest of everything a program is compiled from: an unchanged digest means the pinned program
    can be adopted as is, a changed one that it must be replaced."""
    digest = hashlib.sha256(spec.function.encode())
    for path in (spec.source(source_dir), *sorted((source_dir / "lib").glob("*.h"))):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
