from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.agent import pod_netns_resolver
from nodeagent.cli import parse_args, settings_from
from nodeagent.datapath import NetnsError
from nodeagent.plan import NetnsRef, parse_plan
from nodeagent.podnetns import NetnsDirectory, ProcCgroupScan
from nodeagent.reconciler import NetnsCookies
from tests.nodeagent.planbuilders import received, workload

UID = "0f3c9a52-7d1e-4b8a-9c55-2e61d0b7a8f4"


def _fake_proc(root: Path, processes: dict[int, str]) -> Path:
    for pid, cgroup in processes.items():
        (root / str(pid) / "ns").mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(cgroup)
        (root / str(pid) / "ns" / "net").touch()
    (root / "self").mkdir()  # not a pid: skipped
    return root


def test_a_workload_without_a_netns_reference_is_found_by_its_uid() -> None:
    plan = parse_plan(received(workload(UID)))
    ref = plan.workloads[UID].netns
    assert ref == NetnsRef(pod_uid=UID)
    assert str(ref) == f"uid:{UID}"
    with pytest.raises(NetnsError, match="resolved on the node"):
        ref.netns_file()


def test_a_netns_directory_maps_a_uid_to_its_file_or_symlink(tmp_path: Path) -> None:
    target = tmp_path / "netns-a"
    target.touch()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / UID).symlink_to(target)
    resolver = NetnsDirectory(tmp_path / "dir")

    assert resolver.resolve(UID) == tmp_path / "dir" / UID
    with pytest.raises(NetnsError, match="no netns for pod uid"):
        resolver.resolve(UID.replace("0f", "1f"))
    with pytest.raises(NetnsError, match="is not a UID"):
        resolver.resolve("../netns-a")


@pytest.mark.parametrize(
    "cgroup",
    [
        # systemd driver: dashes of the UID become underscores.
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice"
        "/cri-containerd-abc.scope\n",
        # cgroupfs driver.
        f"0::/kubepods/besteffort/pod{UID}/abc\n",
    ],
)
def test_a_cgroup_scan_finds_a_process_of_the_pod(tmp_path: Path, cgroup: str) -> None:
    proc = _fake_proc(tmp_path, {1: "0::/init.scope\n", 4242: cgroup})
    assert ProcCgroupScan(proc).resolve(UID) == proc / "4242" / "ns" / "net"
    assert ProcCgroupScan(proc).resolve(UID.upper()) == proc / "4242" / "ns" / "net"


def test_a_cgroup_scan_without_the_pod_says_so(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {1: "0::/init.scope\n"})
    with pytest.raises(NetnsError, match="no process of pod uid"):
        ProcCgroupScan(proc).resolve(UID)


async def test_cookies_of_a_pod_by_uid_come_from_the_resolved_file(tmp_path: Path) -> None:
    netns = tmp_path / "netns-a"
    netns.touch()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / UID).symlink_to(netns)
    lookups: list[Path] = []

    def lookup(path: Path) -> int:
        lookups.append(path)
        return 77

    cookies = NetnsCookies(lookup, resolver=NetnsDirectory(tmp_path / "dir"))
    assert await cookies.cookie(NetnsRef(pod_uid=UID)) == 77
    assert await cookies.cookie(NetnsRef(path=str(netns))) == 77  # the same namespace: cached
    assert lookups == [tmp_path / "dir" / UID]
    with pytest.raises(NetnsError):
        await cookies.cookie(NetnsRef(pod_uid=UID.replace("0f", "1f")))


def _resolver(*flags: str) -> NetnsDirectory | ProcCgroupScan:
    base = ["--node", "n1", "--controlplane", "unix:/run/xds.sock", "--cgroup", "/cg", "--envoy-cgroup", "/e"]
    resolver = pod_netns_resolver(settings_from(parse_args([*base, *flags])))
    assert isinstance(resolver, NetnsDirectory | ProcCgroupScan)
    return resolver


def test_the_command_line_picks_how_pods_are_found() -> None:
    default = _resolver()
    assert isinstance(default, ProcCgroupScan) and default.proc == Path("/proc")
    host = _resolver("--proc-dir", "/host/proc")
    assert isinstance(host, ProcCgroupScan) and host.proc == Path("/host/proc")
    directory = _resolver("--netns-dir", "/run/nodemesh/netns")
    assert isinstance(directory, NetnsDirectory) and directory.directory == Path("/run/nodemesh/netns")
