"""The agent's settings: what the command line gives, as one frozen value built in the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from nodeagent.errors import SettingsError
from nodeagent.xdsclient import ClientSettings

DEFAULT_BPFFS: Final = Path("/sys/fs/bpf/nodemesh")
DEFAULT_HEALTH_LISTEN: Final = "127.0.0.1:15021"


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` (port 0 picks a free one), for the local health listener."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def check_controlplane(text: str) -> str:
    """The control plane's address as grpc dials it: `host:port` or `unix:/absolute/path`."""
    if text.startswith("unix:"):
        if not text.removeprefix("unix:").startswith("/"):
            raise SettingsError(f"a unix socket address needs an absolute path: {text!r}")
        return text
    parse_host_port(text)
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    node: str
    controlplane: str
    pods_cgroup: Path
    envoy_cgroup: Path
    bpffs: Path = DEFAULT_BPFFS
    health_listen: str = DEFAULT_HEALTH_LISTEN
    sds_socket: Path | None = None
    token_file: Path | None = None
    # Where pods named only by UID are found: `<netns_dir>/<uid>`; None: scan `proc_dir` for the pod's
    # cgroup (the host's /proc, mounted e.g. at /host/proc in the DaemonSet).
    netns_dir: Path | None = None
    proc_dir: Path = Path("/proc")
    xds: ClientSettings = field(default_factory=ClientSettings)
    # How long a pod whose netns cannot be opened yet waits before the next try (doubling up to the max).
    netns_retry_initial: float = 0.2
    netns_retry_max: float = 10.0

    def __post_init__(self) -> None:
        if not self.node:
            raise SettingsError("--node is required")
        check_controlplane(self.controlplane)
        parse_host_port(self.health_listen)
        if self.sds_socket is not None and self.token_file is None:
            raise SettingsError(
                "--sds-socket needs --token-file: the CA signs only for an authenticated node"
            )
