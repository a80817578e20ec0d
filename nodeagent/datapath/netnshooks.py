"""Per-pod attachments of the inbound (sk_lookup) program: one BPF link per meshed pod's network namespace.

sk_lookup attaches to a network namespace, not a cgroup, so unlike the other hooks it has one link per pod.
Each link is pinned as `links/inbound-netns-<netns cookie>`: a restarted agent finds them and keeps them
(adoption), a pod that leaves the mesh has its pin removed (which detaches it). A netns cookie is never
reused, so a pin names exactly one namespace; when the namespace dies the kernel detaches the link itself
and the pin lingers, defunct, until the next sync removes it.

The program is loaded and pinned by `Datapath.install` (`progs/inbound-<digest>`); an upgrade swaps the new
program into every existing link (`replace_program`), so no pod sees a moment without the hook.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from nodeagent.datapath.errors import ProgramError
from nodeagent.datapath.libbpf import BPF_LINK_TYPE_NETNS, Libbpf
from nodeagent.datapath.programs import AttachType, Hook

log = logging.getLogger(__name__)

LINK_PREFIX: Final = f"{Hook.INBOUND}-netns-"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsSyncReport:
    attached: frozenset[int] = frozenset()
    detached: frozenset[int] = frozenset()
    # Netns cookie -> why it could not be attached (the namespace vanished, ...); retried on the next sync.
    failed: Mapping[int, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.attached or self.detached)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsLink:
    cookie: int
    link_id: int
    prog_id: int
    # The namespace's inode; 0 once it is gone (the link is defunct).
    netns_ino: int


class NetnsHooks:
    """The inbound program's links of one pin directory."""

    def __init__(self, *, pin_dir: Path, lib: Libbpf) -> None:
        self.pin_dir = pin_dir
        self._lib = lib

    @property
    def _links(self) -> Path:
        return self.pin_dir / "links"

    def _link_pin(self, cookie: int) -> Path:
        return self._links / f"{LINK_PREFIX}{cookie}"

    def attached(self) -> frozenset[int]:
        """The netns cookies with a pinned link."""
        if not self._links.is_dir():
            return frozenset()
        return frozenset(
            int(pin.name.removeprefix(LINK_PREFIX))
            for pin in self._links.glob(f"{LINK_PREFIX}*")
            if pin.name.removeprefix(LINK_PREFIX).isdigit()
        )

    def links(self) -> dict[int, NetnsLink]:
        """The pinned links, as the kernel reports them."""
        result: dict[int, NetnsLink] = {}
        for cookie in sorted(self.attached()):
            fd = self._lib.get_pinned(self._link_pin(cookie))
            if fd is None:
                continue
            try:
                info = self._lib.netns_link_info(fd)
            finally:
                os.close(fd)
            result[cookie] = NetnsLink(
                cookie=cookie, link_id=int(info.id), prog_id=int(info.prog_id), netns_ino=int(info.netns_ino)
            )
        return result

    def sync(self, wanted: Mapping[int, Path]) -> NetnsSyncReport:
        """Attaches the program to each wanted namespace (cookie -> netns file) that has no link yet, and
        detaches it from every other. Blocking but quick (a few syscalls a pod)."""
        current = self.attached()
        attached: set[int] = set()
        failed: dict[int, str] = {}
        missing = sorted(set(wanted) - current)
        if missing:
            prog_fd = self._program_fd()
            try:
                for cookie in missing:
                    try:
                        self._attach(prog_fd, cookie, wanted[cookie])
                    except (OSError, ProgramError) as exc:
                        failed[cookie] = str(exc)
                        log.warning("cannot attach the inbound hook to netns %s: %s", cookie, exc)
                    else:
                        attached.add(cookie)
            finally:
                os.close(prog_fd)
        detached = current - set(wanted)
        for cookie in detached:
            # The pin is the link's only reference: removing it detaches the program from that namespace.
            self._link_pin(cookie).unlink(missing_ok=True)
        report = NetnsSyncReport(attached=frozenset(attached), detached=frozenset(detached), failed=failed)
        if report.changed:
            log.info(
                "inbound hook: attached to %s, detached from %s", sorted(report.attached), sorted(detached)
            )
        return report

    def replace_program(self, prog_fd: int) -> int:
        """Swaps `prog_fd` into every pinned link (an upgrade); returns how many links it updated."""
        updated = 0
        for cookie in sorted(self.attached()):
            link_fd = self._lib.get_pinned(self._link_pin(cookie))
            if link_fd is None:
                continue
            try:
                self._lib.link_update(link_fd, prog_fd)
                updated += 1
            except ProgramError as exc:
                # A defunct link (its namespace is gone) may refuse; the next sync removes it anyway.
                log.warning("cannot update the inbound hook of netns %s: %s", cookie, exc)
            finally:
                os.close(link_fd)
        return updated

    def _program_fd(self) -> int:
        pins = sorted((self.pin_dir / "progs").glob(f"{Hook.INBOUND}-*"))
        if len(pins) != 1:
            raise ProgramError(
                f"expected one pinned {Hook.INBOUND} program, found {len(pins)}: install first"
            )
        fd = self._lib.get_pinned(pins[0])
        if fd is None:
            raise ProgramError(f"{pins[0]} vanished")
        return fd

    def _attach(self, prog_fd: int, cookie: int, netns: Path) -> None:
        netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            link_fd = self._lib.link_create(prog_fd, netns_fd, int(AttachType.SK_LOOKUP))
        finally:
            os.close(netns_fd)
        try:
            info = self._lib.netns_link_info(link_fd)
            if info.type != BPF_LINK_TYPE_NETNS:
                raise ProgramError(f"link to {netns} has type {info.type}, not a netns link")
            self._lib.pin(link_fd, self._link_pin(cookie))
        finally:
            # Unpinned, closing the only fd detaches it: a failed pin leaves nothing attached.
            os.close(link_fd)
