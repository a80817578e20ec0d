"""The control plane's settings: one value, parsed from the command line by `cli`, consumed by `app`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from controlplane.logs import LogFormat

DEFAULT_XDS_LISTEN = "127.0.0.1:15010"
DEFAULT_ADMIN_LISTEN = "127.0.0.1:15014"


class SettingsError(ValueError):
    """A setting that cannot work (bad address, unknown source kind)."""


class SourceKind(StrEnum):
    KUBE = "kube"  # a Kubernetes API server: kube (in-cluster) or kube:KUBECONFIG
    FILES = "files"  # a directory of Kubernetes YAML, watched (controlplane.sources.files)
    DIR = "dir"  # a directory of raw Envoy resources in YAML (controlplane.sources.rawxds)


_SOURCE_FORMS = "kube, kube:KUBECONFIG, files:PATH or dir:PATH"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """Where the mesh's configuration comes from: `kube[:KUBECONFIG]`, `files:PATH` or `dir:PATH`."""

    kind: SourceKind
    # None only for `kube` without a kubeconfig (in-cluster configuration).
    path: Path | None

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        kind_text, sep, rest = text.partition(":")
        try:
            kind = SourceKind(kind_text)
        except ValueError:
            msg = f"source {text!r}: unknown kind {kind_text!r}; expected {_SOURCE_FORMS}"
            raise SettingsError(msg) from None
        if kind is SourceKind.KUBE:
            return cls(kind=kind, path=Path(rest) if rest else None)
        if not sep or not rest:
            raise SettingsError(f"source {text!r}: {kind.value} needs a path; expected {_SOURCE_FORMS}")
        return cls(kind=kind, path=Path(rest))

    def directory(self) -> Path:
        """The directory of a files: or dir: source."""
        if self.path is None or self.kind is SourceKind.KUBE:
            raise SettingsError(f"source {self}: not a directory source")
        return self.path

    def __str__(self) -> str:
        return self.kind.value if self.path is None else f"{self.kind.value}:{self.path}"


def check_listen_address(text: str) -> str:
    """`host:port`, `[v6]:port` or `unix:PATH`, as grpc and the admin server take them."""
    if text.startswith("unix:"):
        if text == "unix:":
            raise SettingsError(f"listen address {text!r}: unix: needs a socket path")
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"listen address {text!r}: expected host:port (port 0 for any) or unix:PATH")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretName:
    """`NAMESPACE/NAME` of a Kubernetes Secret (the CA's root in a cluster)."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> SecretName:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise SettingsError(f"secret {text!r}: expected NAMESPACE/NAME")
        return cls(namespace=namespace, name=name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


DEFAULT_TOKEN_AUDIENCE = "nodemesh-ca"
DEFAULT_NODE_SERVICE_ACCOUNT = "system:serviceaccount:nodemesh-system:nodemesh-node"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    source: SourceSpec
    xds_listen: tuple[str, ...] = (DEFAULT_XDS_LISTEN,)
    admin_listen: str = DEFAULT_ADMIN_LISTEN
    debounce_quiet: float = 0.1
    debounce_max: float = 1.0
    # How long a push is tracked for every proxy's ACK before it counts as a convergence timeout.
    convergence_timeout: float = 60.0
    poll_interval: float = 0.3
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    max_connection_age: float = 1800.0
    max_connection_age_grace: float = 60.0
    shutdown_grace: float = 5.0
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "INFO"
    trust_domain: str = "cluster.local"
    # Where the CA keeps its root (a file, mode 0600); None: no certificate service.
    ca_file: Path | None = None
    # Where the CA keeps its root in a cluster (a Secret; kube source only); None: no certificate service
    # unless ca_file is set.
    ca_secret: SecretName | None = None
    # Per-node bootstrap tokens the certificate service accepts (`<node> <token> [expiry]` lines).
    node_tokens: Path | None = None
    # Without node_tokens, a kube source checks node agents' tokens by TokenReview: the audience their
    # projected tokens are issued for, and the service account they must belong to.
    token_audience: str = DEFAULT_TOKEN_AUDIENCE
    node_service_account: str = DEFAULT_NODE_SERVICE_ACCOUNT

    @property
    def runs_ca(self) -> bool:
        return self.ca_file is not None or self.ca_secret is not None
