"""Finding a pod's network namespace on this node from its UID, for plan workloads without a netns reference.

The control plane knows a pod's UID but not where its sandbox lives on the node, so the translator leaves
the reference empty and the agent looks it up here:
- `ProcCgroupScan` (the default, as in a cluster): the kubelet puts every container of a pod in a cgroup
  whose path holds `pod<uid>` (cgroupfs driver) or `pod<uid with _ for ->` (systemd driver); any process
  there is inside the pod's netns, so `/proc/<pid>/ns/net` is the answer.
- `NetnsDirectory` (`--netns-dir DIR`): `DIR/<uid>` is the netns file, or a symlink to one (e.g. to
  `/run/netns/<name>`). For runtimes that publish sandboxes that way, and for the test fabric, whose pods
  are bare network namespaces with no kubelet cgroup naming.
A pod not found yet raises NetnsError: the reconciler keeps it pending and retries with backoff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final, Protocol

from nodeagent.datapath import NetnsError

# Kubernetes UIDs are RFC 4122 text; anything else must never reach a path or a pattern.
_UID: Final = re.compile(r"^[0-9a-fA-F-]{1,64}$")


def _checked_uid(uid: str) -> str:
    if not _UID.match(uid):
        raise NetnsError(f"pod uid {uid!r} is not a UID")
    return uid


class PodNetnsResolver(Protocol):
    """The netns file of the pod with this UID on this node; NetnsError when it cannot be found (yet)."""

    def resolve(self, uid: str) -> Path: ...


class NetnsDirectory(PodNetnsResolver):
    """`<directory>/<uid>`: a netns file or a symlink to one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def resolve(self, uid: str) -> Path:
        path = self.directory / _checked_uid(uid)
        if not path.exists():
            raise NetnsError(f"no netns for pod uid {uid} in {self.directory}")
        return path

    def __str__(self) -> str:
        return f"netns-dir:{self.directory}"


class ProcCgroupScan(PodNetnsResolver):
    """Any process whose cgroup path names the pod (`pod<uid>`, dashes or underscores)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc

    def resolve(self, uid: str) -> Path:
        uid = _checked_uid(uid).lower()
        needles = (f"pod{uid}", f"pod{uid.replace('-', '_')}")
        for entry in os.scandir(self.proc):
            if not entry.name.isdigit():
                continue
            try:
                cgroups = Path(entry.path, "cgroup").read_text()
            except OSError:
                continue  # gone meanwhile, or not ours to read
            if any(needle in cgroups for needle in needles):
                return Path(entry.path, "ns", "net")
        raise NetnsError(f"no process of pod uid {uid} on this node (cgroup scan of {self.proc})")

    def __str__(self) -> str:
        return f"cgroup-scan:{self.proc}"
