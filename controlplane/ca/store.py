"""Persistence of the CA's signing material so a restarted control plane keeps its root.

`FileCAStore` is the local one; a Kubernetes-Secret store (in the kube layer) implements the same Protocol.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from controlplane.ca.errors import CAStoreError

_PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
# RFC 7468 explanatory text before a PEM block; marks the certificates that belong to the trust bundle.
_BUNDLE_LABEL = b"nodemesh trust bundle root"


@dataclass(frozen=True, slots=True, kw_only=True)
class CAMaterial:
    """PEM blobs: the signing certificate, its private key, its issuers up to and including the root (empty
    when the signing certificate is itself the root), and every trusted root (empty: just the issuer's root).
    The bundle is stored so that a restart in the middle of a root rotation keeps trusting both roots."""

    certificate_pem: bytes
    key_pem: bytes
    chain_pem: bytes = b""
    trust_bundle_pem: bytes = b""

    def __repr__(self) -> str:
        # Never print key material, even in a traceback.
        return f"CAMaterial(certificate_pem=<{len(self.certificate_pem)} bytes>, key_pem=<redacted>)"


class CAStore(Protocol):
    async def load(self) -> CAMaterial | None:
        """The stored material, or None when nothing was stored yet."""
        ...

    async def save(self, material: CAMaterial) -> None: ...


class FileCAStore:
    """One file holding certificate, chain and key PEM, mode 0600, replaced atomically.

    Loading refuses a file that group or others can read or write: a leaked CA key signs any identity.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path

    async def load(self) -> CAMaterial | None:
        return await asyncio.to_thread(self._load)

    async def save(self, material: CAMaterial) -> None:
        await asyncio.to_thread(self._save, material)

    def _load(self) -> CAMaterial | None:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CAStoreError(f"cannot open CA file {self._path}: {exc.strerror}") from exc
        # Check the opened file, not the path, so a swap between check and read cannot slip through.
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise CAStoreError(f"CA file {self._path} is not a regular file")
            if mode & 0o077:
                raise CAStoreError(
                    f"refusing to load CA key file {self._path}: mode {stat.S_IMODE(mode):04o} lets group or "
                    "others access it; it must be 0600 (chmod 600 it after checking nobody copied it)"
                )
            data = f.read()
        return _split(data, self._path)

    def _save(self, material: CAMaterial) -> None:
        data = material.certificate_pem.rstrip(b"\n") + b"\n"
        if material.chain_pem.strip():
            data += material.chain_pem.rstrip(b"\n") + b"\n"
        for block in _blocks(material.trust_bundle_pem):
            data += _BUNDLE_LABEL + b"\n" + block
        data += material.key_pem.rstrip(b"\n") + b"\n"
        directory = self._path.parent
        tmp = directory / f".{self._path.name}.tmp-{os.getpid()}"
        try:
            # O_EXCL + mode 0600 at creation: the key is never readable by others, not even briefly.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CAStoreError(f"cannot write CA file {self._path}: {exc.strerror}") from exc


def _blocks(data: bytes) -> list[bytes]:
    return [block for _, block in _labelled_blocks(data, Path("<memory>"))]


def _labelled_blocks(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """Each PEM block with the explanatory text just before it."""
    blocks: list[tuple[bytes, bytes]] = []
    rest = data
    while (begin := rest.find(b"-----BEGIN ")) != -1:
        end_marker = rest.find(b"-----END ", begin)
        end = rest.find(b"-----", end_marker + len(b"-----END ")) if end_marker != -1 else -1
        if end == -1:
            raise CAStoreError(f"CA file {path} has a truncated PEM block")
        blocks.append((rest[:begin].strip(), rest[begin : end + len(b"-----")] + b"\n"))
        rest = rest[end + len(b"-----") :]
    return blocks


def _split(data: bytes, path: Path) -> CAMaterial:
    """Cut the file into its first certificate, its chain, the trust bundle roots, and the key."""
    keys: list[bytes] = []
    certs: list[bytes] = []
    bundle: list[bytes] = []
    for label, block in _labelled_blocks(data, path):
        if _PRIVATE_KEY_MARKER in block.splitlines()[0]:
            keys.append(block)
        elif block.startswith(b"-----BEGIN CERTIFICATE-----"):
            (bundle if label == _BUNDLE_LABEL else certs).append(block)
    if len(keys) != 1 or not certs:
        raise CAStoreError(f"CA file {path} must hold one private key and at least one certificate")
    return CAMaterial(
        certificate_pem=certs[0],
        key_pem=keys[0],
        chain_pem=b"".join(certs[1:]),
        trust_bundle_pem=b"".join(bundle),
    )
