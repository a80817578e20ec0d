"""The node's local SDS server: the identities' certificates and the trust bundle, for the node's Envoy only.

It is the control plane's xDS transport (controlplane.xds) on a unix socket: every change of the identity
state becomes one snapshot of Secret resources, served to whichever node id connects (the local Envoy is the
only client the socket lets in). Secrets: one tls_certificate per identity named by its SPIFFE ID, and the
validation context TRUST_BUNDLE_SECRET (names in controlplane.ca.sdsnames).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from controlplane.ca.sdsnames import TRUST_BUNDLE_SECRET, certificate_secret_name
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.errors import XdsError
from controlplane.xds.resource import ResourcePool
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatusRegistry
from nodeagent.errors import AgentError
from nodeagent.identity.manager import IdentityListener, IdentityState

log = logging.getLogger(__name__)

SOCKET_MODE = 0o600
DIRECTORY_MODE = 0o700
# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


class SdsError(AgentError):
    """The SDS server cannot start: a bad socket path or an unsafe directory."""


def build_secrets(state: IdentityState) -> list[secret_pb2.Secret]:
    """The Secret resources for `state`: one tls_certificate per identity, plus the trust bundle if known."""
    secrets = [
        secret_pb2.Secret(
            name=certificate_secret_name(spiffe_id),
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=material.chain_pem.encode()),
                private_key=base_pb2.DataSource(inline_bytes=material.key.private_key_pem()),
            ),
        )
        for spiffe_id, material in sorted(state.certificates.items(), key=lambda item: str(item[0]))
    ]
    if state.trust_bundle_pem:
        secrets.append(
            secret_pb2.Secret(
                name=TRUST_BUNDLE_SECRET,
                validation_context=common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(inline_bytes="".join(state.trust_bundle_pem).encode())
                ),
            )
        )
    return secrets


def build_snapshot(secrets: Iterable[secret_pb2.Secret], pool: ResourcePool) -> Snapshot:
    return Snapshot.build(pool.intern(secret) for secret in secrets)


def prepare_socket_directory(directory: Path) -> None:
    """Create `directory` with mode 0700 if missing; an existing one must be a directory, and loses group and
    world write permission (whoever can write there could put their own socket in our place)."""
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True)
    except FileExistsError:
        pass
    else:
        # mkdir's mode is filtered by the umask; make it exactly 0700.
        os.chmod(directory, DIRECTORY_MODE)
        return
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise SdsError(f"{directory} exists and is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        log.warning(
            "narrowing SDS socket directory %s from mode %o: no group or world write", directory, mode
        )
        os.chmod(directory, mode & ~0o022)


class SdsServer(IdentityListener):
    """`async with SdsServer(socket_path) as sds:` serves until the block ends; or `await sds.run()` until
    cancelled. Register it as an IdentityManager listener; `identities_changed` may be called any time."""

    def __init__(self, socket_path: Path, *, settings: ServerSettings | None = None) -> None:
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise SdsError(f"SDS socket path {socket_path} is longer than {_MAX_SOCKET_PATH} bytes")
        self.socket_path = socket_path
        self._settings = dataclasses.replace(
            settings or ServerSettings(),
            unix_socket_mode=SOCKET_MODE,
            serve_secret_discovery=True,
            # A local client: nothing to rebalance.
            max_connection_age=None,
        )
        self.cache = SnapshotCache()
        self.status = ProxyStatusRegistry()
        self._server: XdsServer | None = None
        self.snapshot: Snapshot | None = None

    def identities_changed(self, state: IdentityState) -> None:
        snapshot = build_snapshot(build_secrets(state), self.cache.pool)
        self.snapshot = snapshot
        self.cache.set_default(snapshot)
        log.info(
            "sds snapshot version=%s identities=%d trust_bundle_roots=%d",
            snapshot.version,
            len(state.certificates),
            len(state.trust_bundle_pem),
        )

    async def __aenter__(self) -> Self:
        prepare_socket_directory(self.socket_path.parent)
        server = XdsServer(self.cache, self.status, self._settings)
        try:
            await server.listen([f"unix:{self.socket_path}"])
        except BaseException as exc:
            await server.stop(0)
            if isinstance(exc, XdsError):
                raise SdsError(f"cannot serve SDS on {self.socket_path}: {exc}") from exc
            raise
        self._server = server
        log.info("sds server listening on %s", self.socket_path)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def run(self) -> None:
        async with self:
            await asyncio.Event().wait()
