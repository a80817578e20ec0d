"""The state file of a demo left running by `make demo-up`: who holds the mesh (pid and start time, so a
reused pid is never signalled), how to reach it, and where each pod lives."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_DIR: Final = Path("/run/nodemesh-demo")
DIR_ENV: Final = "NODEMESH_DEMO_DIR"
STATE_FILE: Final = "state.json"
TEARDOWN_FILE: Final = "teardown.json"
LOG_FILE: Final = "demo.log"


class StateError(Exception):
    """The state file is missing or unreadable."""


def state_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(DIR_ENV) or DEFAULT_DIR)


@dataclass(frozen=True, slots=True, kw_only=True)
class PodState:
    ref: str
    node: str
    ip: str
    identity: str
    netns: str
    cgroup: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoState:
    pid: int
    start_ticks: int
    run_id: str
    api_server: str
    kubeconfig: str
    controlplane: str
    admin: str
    workdir: str
    manifests: str
    nodes: Mapping[str, str] = field(default_factory=dict)  # name -> IP
    services: Mapping[str, str] = field(default_factory=dict)  # "ns/name" -> "VIP:port"
    pods: Mapping[str, PodState] = field(default_factory=dict)  # short name -> where it lives

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DemoState:
        try:
            raw: dict[str, Any] = json.loads(text)
            pods = {key: PodState(**value) for key, value in raw.pop("pods", {}).items()}
            return cls(**raw, pods=pods)
        except (ValueError, TypeError) as exc:
            raise StateError(f"unreadable demo state: {exc}") from exc

    def pod(self, name: str) -> PodState:
        """A pod by short name (`frontend`), full name (`frontend-5b7c8`) or `ns/name`."""
        for key, pod in self.pods.items():
            if name in (key, pod.ref, pod.ref.partition("/")[2]):
                return pod
        raise StateError(f"no pod {name!r} in the demo: one of {', '.join(sorted(self.pods))}")


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def load(directory: Path) -> DemoState:
    path = directory / STATE_FILE
    try:
        return DemoState.from_json(path.read_text())
    except FileNotFoundError as exc:
        raise StateError(
            f"no demo is running ({path} does not exist; start one with `make demo-up`)"
        ) from exc


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None when it does not exist or is a zombie):
    together with the pid, it names one process for good."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        return int(fields[19])
    return None


def alive(state: DemoState) -> bool:
    return start_ticks(state.pid) == state.start_ticks
