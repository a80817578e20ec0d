"""Compiles bpf/*.c with bcc, attaches the programs to cgroups through pinned BPF links, and adopts what an
earlier agent pinned.

Pin layout under the pin directory (on bpffs):
    maps/<map name>          created by the first compile (BPF_TABLE_PINNED), reused by every later one
    progs/<hook>-<digest>    the loaded program; the digest covers its sources
    links/<hook>             the cgroup attachment; while pinned, the program stays attached with no process
    links/inbound-netns-<c>  the inbound (sk_lookup) program's attachment to the pod netns with cookie <c>,
                             made per pod by `NetnsHooks` (nodeagent.datapath.netnshooks)

An agent that finds `links/<hook>` with a program of the same digest adopts it (no compile, no second attach);
with another digest it compiles the new program and swaps it into the link atomically (`BPF_LINK_UPDATE`), so
no connection sees a moment without the hook. `uninstall` removes the pins, which detaches everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent.datapath.errors import DatapathUnavailableError, ProgramError
from nodeagent.datapath.libbpf import BPF_LINK_TYPE_CGROUP, Libbpf
from nodeagent.datapath.maps import DatapathMaps, maps_dir
from nodeagent.datapath.netnshooks import NetnsHooks
from nodeagent.datapath.programs import BPF_SOURCE_DIR, PROGRAMS, Hook, ProgramSpec, Target, source_digest

log = logging.getLogger(__name__)

_BPFFS = "bpf"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallReport:
    attached: frozenset[Hook]
    adopted: frozenset[Hook]
    replaced: frozenset[Hook]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatus:
    hook: Hook
    link_id: int
    prog_id: int
    cgroup_id: int
    attach_type: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _Loaded:
    spec: ProgramSpec
    digest: str
    prog_fd: int


def cgroup_id(path: Path) -> int:
    """A cgroup v2 directory's id is its inode number (what the kernel reports as a link's cgroup_id)."""
    return os.stat(path).st_ino


def _mount_fstype(path: Path) -> str | None:
    """The filesystem type of the mount holding `path`, from /proc/self/mountinfo."""
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        mount_point = fields.split()[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), rest.split()[0])
    return None if best is None else best[1]


def ensure_bpffs(pin_dir: Path) -> None:
    """Makes sure `pin_dir` is on a bpffs, mounting bpffs at /sys/fs/bpf when that is where it belongs."""
    bpf_root = Path("/sys/fs/bpf")
    anchor = pin_dir if pin_dir.exists() else pin_dir.parent
    if _mount_fstype(anchor) == _BPFFS:
        return
    if bpf_root in (pin_dir, *pin_dir.parents) and _mount_fstype(bpf_root) != _BPFFS:
        import subprocess

        result = subprocess.run(
            ["mount", "-t", "bpf", "bpf", str(bpf_root)], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            log.info("mounted bpffs at %s", bpf_root)
            return
        raise DatapathUnavailableError(f"cannot mount bpffs at {bpf_root}: {result.stderr.strip()}")
    raise DatapathUnavailableError(f"{pin_dir} is not on a bpffs mount")


class Datapath:
    """Installs, adopts and uninstalls the redirect programs of one pin directory."""

    def __init__(self, *, pin_dir: Path, lib: Libbpf, source_dir: Path = BPF_SOURCE_DIR) -> None:
        self.pin_dir = pin_dir
        self._lib = lib
        self._source_dir = source_dir

    @property
    def _links(self) -> Path:
        return self.pin_dir / "links"

    @property
    def _progs(self) -> Path:
        return self.pin_dir / "progs"

    def open_maps(self) -> DatapathMaps:
        return DatapathMaps.open(self._lib, self.pin_dir)

    def netns_hooks(self) -> NetnsHooks:
        """The per-pod links of the inbound program (attach after `install`)."""
        return NetnsHooks(pin_dir=self.pin_dir, lib=self._lib)

    def install(self, *, pods_cgroup: Path, envoy_cgroup: Path) -> InstallReport:
        """Attaches every program (connect4, sockops, getpeername4 to `pods_cgroup`; getsockopt to
        `envoy_cgroup`), adopting pinned attachments; loads and pins the inbound program, which
        `netns_hooks()` attaches per pod (an upgrade swaps it into the existing per-pod links).
        Idempotent. Blocking (bcc compiles ~0.5 s a program): call it from a thread in async code."""
        ensure_bpffs(self.pin_dir)
        for directory in (self.pin_dir, self._links, self._progs):
            directory.mkdir(parents=True, exist_ok=True)
        targets = {Target.PODS: pods_cgroup, Target.ENVOY: envoy_cgroup}
        for path in targets.values():
            if not (path / "cgroup.procs").exists():
                raise DatapathUnavailableError(f"{path} is not a cgroup v2 directory")

        # Decide per hook, then compile everything needed before attaching anything: a compile error
        # leaves the running data path as it was.
        adopted: set[Hook] = set()
        to_load: list[tuple[ProgramSpec, str, int | None]] = []  # (spec, digest, existing link fd)
        try:
            for spec in PROGRAMS:
                digest = source_digest(spec, self._source_dir)
                if spec.target is Target.POD_NETNS:
                    if (self._progs / f"{spec.hook}-{digest}").exists():
                        adopted.add(spec.hook)
                    else:
                        to_load.append((spec, digest, None))
                    continue
                link_fd = self._lib.get_pinned(self._links / spec.hook)
                if link_fd is not None:
                    self._check_link(spec, link_fd, targets[spec.target])
                    if (self._progs / f"{spec.hook}-{digest}").exists():
                        os.close(link_fd)
                        adopted.add(spec.hook)
                        continue
                to_load.append((spec, digest, link_fd))
            loaded = [(self._compile(spec, digest), link_fd) for spec, digest, link_fd in to_load]
        except BaseException:
            for _, _, link_fd in to_load:
                if link_fd is not None:
                    os.close(link_fd)
            raise

        attached: set[Hook] = set()
        replaced: set[Hook] = set()
        try:
            for program, link_fd in loaded:
                self._pin_program(program)
                if program.spec.target is Target.POD_NETNS:
                    # Loaded, attached per pod later; existing per-pod links get the new program now.
                    current = f"{program.spec.hook}-{program.digest}"
                    previous = any(pin.name != current for pin in self._progs.glob(f"{program.spec.hook}-*"))
                    self.netns_hooks().replace_program(program.prog_fd)
                    (replaced if previous else attached).add(program.spec.hook)
                elif link_fd is None:
                    self._attach(program, targets[program.spec.target])
                    attached.add(program.spec.hook)
                else:
                    self._lib.link_update(link_fd, program.prog_fd)
                    replaced.add(program.spec.hook)
                self._unpin_stale_programs(program.spec.hook, keep=program.digest)
        finally:
            for program, link_fd in loaded:
                os.close(program.prog_fd)
                if link_fd is not None:
                    os.close(link_fd)
        report = InstallReport(
            attached=frozenset(attached), adopted=frozenset(adopted), replaced=frozenset(replaced)
        )
        log.info(
            "datapath installed at %s: attached=%s adopted=%s replaced=%s",
            self.pin_dir,
            sorted(report.attached),
            sorted(report.adopted),
            sorted(report.replaced),
        )
        return report

    def status(self) -> Mapping[Hook, LinkStatus]:
        """The pinned attachments, as the kernel reports them."""
        result: dict[Hook, LinkStatus] = {}
        for spec in PROGRAMS:
            link_fd = self._lib.get_pinned(self._links / spec.hook)
            if link_fd is None:
                continue
            try:
                info = self._lib.link_info(link_fd)
            finally:
                os.close(link_fd)
            result[spec.hook] = LinkStatus(
                hook=spec.hook,
                link_id=int(info.id),
                prog_id=int(info.prog_id),
                cgroup_id=int(info.cgroup_id),
                attach_type=int(info.attach_type),
            )
        return result

    def uninstall(self) -> None:
        """Removes every pin (links first, so the programs detach before their maps go). Idempotent."""
        if not self.pin_dir.exists():
            return
        for directory in (self._links, self._progs, maps_dir(self.pin_dir)):
            if directory.is_dir():
                for pin in directory.iterdir():
                    pin.unlink()
                directory.rmdir()
        self.pin_dir.rmdir()
        log.info("datapath uninstalled from %s", self.pin_dir)

    def _check_link(self, spec: ProgramSpec, link_fd: int, cgroup: Path) -> None:
        info = self._lib.link_info(link_fd)
        expected = cgroup_id(cgroup)
        if (
            info.type != BPF_LINK_TYPE_CGROUP
            or info.cgroup_id != expected
            or info.attach_type != spec.attach_type
        ):
            os.close(link_fd)
            raise ProgramError(
                f"pinned link {self._links / spec.hook} is attached elsewhere (cgroup id {info.cgroup_id}, "
                f"attach type {info.attach_type}; want {expected}, {int(spec.attach_type)}): uninstall first"
            )

    def _compile(self, spec: ProgramSpec, digest: str) -> _Loaded:
        cflags = [
            f'-DNODEMESH_PIN_DIR="{self.pin_dir}"',
            f"-I{self._source_dir}",
        ]
        with _bcc_module(spec.source(self._source_dir), cflags) as module:
            try:
                function = module.load_func(
                    spec.function.encode(), int(spec.prog_type), None, int(spec.attach_type)
                )
            except Exception as exc:
                source = spec.source(self._source_dir)
                raise ProgramError(f"cannot load {spec.function} from {source}: {exc}") from exc
            # The module closes its fds on cleanup; keep our own reference to the program.
            return _Loaded(spec=spec, digest=digest, prog_fd=os.dup(int(function.fd)))

    def _pin_program(self, program: _Loaded) -> None:
        path = self._progs / f"{program.spec.hook}-{program.digest}"
        if not path.exists():
            self._lib.pin(program.prog_fd, path)

    def _attach(self, program: _Loaded, cgroup: Path) -> None:
        cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            # A cgroup link attaches with multi-attach semantics (like BPF_F_ALLOW_MULTI): other programs
            # on the same cgroup, ours or not, keep running.
            link_fd = self._lib.link_create(program.prog_fd, cgroup_fd, int(program.spec.attach_type))
        finally:
            os.close(cgroup_fd)
        try:
            self._lib.pin(link_fd, self._links / program.spec.hook)
        finally:
            # Closing the only fd of an unpinned link detaches it: a failed pin leaves nothing attached.
            os.close(link_fd)

    def _unpin_stale_programs(self, hook: Hook, *, keep: str) -> None:
        for pin in self._progs.glob(f"{hook}-*"):
            if pin.name != f"{hook}-{keep}":
                pin.unlink()


@contextlib.contextmanager
def _bcc_module(source: Path, cflags: list[str]) -> Iterator[Any]:
    """A bcc module compiled from `source`, destroyed on exit (pinned maps and programs outlive it)."""
    try:
        from bcc import BPF
    except ImportError as exc:
        raise DatapathUnavailableError(f"bcc is not importable: {exc}") from exc
    try:
        module = BPF(src_file=os.fsencode(source), cflags=cflags)
    except Exception as exc:
        raise ProgramError(f"bcc cannot compile {source}: {exc}") from exc
    try:
        yield module
    finally:
        module.cleanup()
