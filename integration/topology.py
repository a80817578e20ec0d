"""An isolated test fabric of nodes and pods (DESIGN.md §6): network namespaces, veths, cgroups, processes.

    fabric netns (bridge br0) ── veth ── node netns 198.19.0.<n>/24 ── veth ── pod netns 198.18.<n>/<k>/32

- Nothing connects the fabric to the root netns. While a topology exists, a `blackhole` route for
  198.18.0.0/15 in the root netns (with a metric unique to the run) makes any mistake fail locally.
- Service VIPs (198.19.128.0/24) have no owner: nodes answer them `unreachable`, so they only mean something
  to a connection the data path redirects.
- Every pod and node process runs in its own cgroup under `<cgroup2>/nodemesh-<run id>/`: the process moves
  into its cgroup first, then enters the netns (`nsenter --net`, which unlike `ip netns exec` does not remount
  /sys), so accepted and connected sockets carry that cgroup.
- Names carry a short random run id, so concurrent runs never collide. `close()` removes everything even after
  a failure, and `leak_check()` lists whatever of the run is still there.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import IO, Final, Self

from nodeagent.datapath.netns import netns_cookie, socket_in_netns

log = logging.getLogger(__name__)

FABRIC_SUPERNET: Final = IPv4Network("198.18.0.0/15")
NODE_NETWORK: Final = IPv4Network("198.19.0.0/24")
VIP_NETWORK: Final = IPv4Network("198.19.128.0/24")
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
NETNS_DIR: Final = Path("/run/netns")


class TopologyError(Exception):
    """The fabric could not be built or torn down."""


def cgroup2_root() -> Path | None:
    """The cgroup v2 mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def unavailable_reason() -> str | None:
    """Why this machine cannot run a topology, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, cgroups, eBPF)"
    if cgroup2_root() is None:
        return "no cgroup v2 mount"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _quiet_run(argv: Sequence[str]) -> None:
    _run(argv)


def _write_sysctl(netns: Path, name: str, value: str) -> None:
    path = Path("/proc/sys") / name.replace(".", "/")

    def write() -> None:
        # /proc/sys/net resolves against the writing thread's netns.
        path.write_text(value)

    from nodeagent.datapath.netns import run_in_netns

    run_in_netns(netns, write)


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    index: int
    ip: IPv4Address
    netns: str
    cgroup: Path

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def pod_cidr(self) -> IPv4Network:
        return IPv4Network(f"198.18.{self.index}.0/24")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    name: str
    node: Node
    index: int
    ip: IPv4Address
    netns: str
    cgroup: Path

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns


Member = Node | Pod


@dataclass(slots=True)
class Process:
    """A process the topology started; stopped by pid at teardown."""

    name: str
    popen: subprocess.Popen[str]
    stdout_lines: list[str] = field(default_factory=list)
    _pending: bytes = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def read_line(self, timeout: float) -> str:
        """The next stdout line, or TopologyError after `timeout` seconds (or when the process exits)."""
        stream = self.popen.stdout
        if stream is None:
            raise TopologyError(f"{self.name}: stdout not captured")
        # Raw reads with our own buffer: a TextIOWrapper could hold a second line the selector cannot see.
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stream.fileno(), selectors.EVENT_READ)
            while b"\n" not in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TopologyError(f"{self.name}: no output within {timeout}s")
                if selector.select(remaining):
                    chunk = os.read(stream.fileno(), 65536)
                    if not chunk:
                        self.popen.wait(timeout=5)
                        raise TopologyError(
                            f"{self.name} exited ({self.popen.returncode}): {self.stderr_tail()}"
                        )
                    self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        text = line.decode()
        self.stdout_lines.append(text)
        return text

    def read_json(self, timeout: float = 10.0) -> dict[str, object]:
        line = self.read_line(timeout)
        value = json.loads(line)
        if not isinstance(value, dict):
            raise TopologyError(f"{self.name}: not a JSON object: {line!r}")
        return value

    def send_line(self, line: str) -> None:
        if self.popen.stdin is None:
            raise TopologyError(f"{self.name}: stdin not captured")
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stderr_tail(self) -> str:
        stream = self.popen.stderr
        if stream is None or self.popen.poll() is None:
            return ""
        return stream.read()[-2000:]


class Topology:
    """Nodes and pods of one test run. Build with `Topology.create()`; always `close()` (or use `with`)."""

    def __init__(self, run_id: str, cgroup_root: Path) -> None:
        self.run_id = run_id
        self.prefix = f"nm{run_id}"
        self.cgroup = cgroup_root / f"nodemesh-{run_id}"
        self.fabric_netns = f"{self.prefix}-fab"
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.processes: list[Process] = []
        self._netns: list[str] = []
        self._cgroups: list[Path] = []
        self._pin_dirs: list[Path] = []
        self._cleanups: list[Callable[[], None]] = []
        self._blackhole_metric: int | None = None
        self._closed = False

    # Construction.

    @classmethod
    def create(cls) -> Topology:
        reason = unavailable_reason()
        if reason is not None:
            raise TopologyError(reason)
        root = cgroup2_root()
        assert root is not None
        topology = cls(secrets.token_hex(3), root)
        try:
            topology._build_fabric()
        except BaseException:
            topology.close()
            raise
        return topology

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_netns(self, name: str) -> Path:
        _run(["ip", "netns", "add", name])
        self._netns.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return NETNS_DIR / name

    def _add_cgroup(self, path: Path) -> Path:
        path.mkdir()
        self._cgroups.append(path)
        return path

    def _build_fabric(self) -> None:
        self._add_blackhole()
        self._add_cgroup(self.cgroup)
        self._add_netns(self.fabric_netns)
        _run(["ip", "-n", self.fabric_netns, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.fabric_netns, "link", "set", "br0", "up"])

    def _add_blackhole(self) -> None:
        # Concurrent runs each add their own route; a distinct metric keeps them from colliding.
        for _ in range(20):
            metric = 1000 + secrets.randbelow(60000)
            result = _run(
                ["ip", "route", "add", "blackhole", str(FABRIC_SUPERNET), "metric", str(metric)], check=False
            )
            if result.returncode == 0:
                self._blackhole_metric = metric
                return
            if "File exists" not in result.stderr:
                raise TopologyError(f"cannot add the blackhole route: {result.stderr.strip()}")
        raise TopologyError("no free metric for the blackhole route")

    def add_node(self) -> Node:
        index = len(self.nodes) + 1
        name = f"node{index}"
        node = Node(
            name=name,
            index=index,
            ip=NODE_NETWORK.network_address + index,
            netns=f"{self.prefix}-n{index}",
            cgroup=self.cgroup / name,
        )
        netns = self._add_netns(node.netns)
        self._add_cgroup(node.cgroup)
        _write_sysctl(netns, "net.ipv4.ip_forward", "1")
        fab = ["ip", "-n", self.fabric_netns]
        into = ["ip", "-n", node.netns]
        _run([*fab, "link", "add", f"n{index}", "type", "veth", "peer", "name", "eth0", "netns", node.netns])
        _run([*fab, "link", "set", f"n{index}", "master", "br0", "up"])
        _run([*into, "addr", "add", f"{node.ip}/{NODE_NETWORK.prefixlen}", "dev", "eth0"])
        _run([*into, "link", "set", "eth0", "up"])
        # A VIP has no owner: unredirected traffic to one fails fast instead of wandering.
        _run([*into, "route", "add", "unreachable", str(VIP_NETWORK)])
        for other in self.nodes:
            _run([*into, "route", "add", str(other.pod_cidr), "via", str(other.ip)])
            _run(["ip", "-n", other.netns, "route", "add", str(node.pod_cidr), "via", str(node.ip)])
        self.nodes.append(node)
        return node

    def add_pod(self, node: Node, name: str | None = None) -> Pod:
        index = sum(1 for pod in self.pods if pod.node == node) + 1
        pod = Pod(
            name=name or f"{node.name}-pod{index}",
            node=node,
            index=index,
            ip=node.pod_cidr.network_address + index,
            netns=f"{self.prefix}-n{node.index}p{index}",
            cgroup=node.cgroup / f"pod{index}",
        )
        self._add_netns(pod.netns)
        self._add_cgroup(pod.cgroup)
        on_node = ["ip", "-n", node.netns]
        in_pod = ["ip", "-n", pod.netns]
        veth = f"p{index}"
        _run([*on_node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns])
        _write_sysctl(node.netns_path, f"net.ipv4.conf.{veth}.proxy_arp", "1")
        _run([*on_node, "link", "set", veth, "up"])
        # `src`: the node's connections to its pods come from the node IP, whatever else sits on `lo`.
        _run([*on_node, "route", "add", f"{pod.ip}/32", "dev", veth, "src", str(node.ip)])
        _run([*in_pod, "addr", "add", f"{pod.ip}/32", "dev", "eth0"])
        _run([*in_pod, "link", "set", "eth0", "up"])
        # Everything leaves through the node (which answers ARP for it by proxy).
        _run([*in_pod, "route", "add", "default", "dev", "eth0", "scope", "link"])
        self.pods.append(pod)
        return pod

    def add_address(self, member: Member, ip: IPv4Address) -> None:
        """An extra /32 on `member`'s loopback (no dummy links on this kernel); same-node pods reach it."""
        _run(["ip", "-n", member.netns, "addr", "add", f"{ip}/32", "dev", "lo"])

    def add_cgroup(self, node: Node, name: str) -> Path:
        """An extra cgroup under a node (e.g. the node Envoy's, where getsockopt attaches)."""
        return self._add_cgroup(node.cgroup / name)

    def register_pin_dir(self, path: Path) -> None:
        """A bpffs directory the run pins into: removed at teardown, checked by leak_check."""
        self._pin_dirs.append(path)

    def pin_dir(self, node: Node) -> Path:
        path = Path("/sys/fs/bpf") / f"nodemesh-{self.run_id}-{node.name}"
        if path not in self._pin_dirs:
            self.register_pin_dir(path)
        return path

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Runs at teardown (last added, first run), before processes are stopped."""
        self._cleanups.append(cleanup)

    # Using it.

    def netns_cookie(self, member: Member) -> int:
        return netns_cookie(member.netns_path)

    def spawn(
        self,
        member: Member,
        argv: Sequence[str],
        *,
        cgroup: Path | None = None,
        name: str | None = None,
        stdin: bool = False,
        stdout: IO[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Process:
        """Starts `argv` in `member`'s netns and cgroup (or `cgroup`). Joins the cgroup first, then the netns.
        stdout is a pipe unless a file is given; stderr is always a pipe."""
        target = cgroup or member.cgroup
        wrapper = [
            "sh",
            "-c",
            'echo $$ > "$1/cgroup.procs" && ns="$2" && shift 2 && exec nsenter --net="$ns" -- "$@"',
            "spawn",
            str(target),
            str(member.netns_path),
            *argv,
        ]
        full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        popen = subprocess.Popen(
            wrapper,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        process = Process(name=name or f"{member.name}:{argv[0]}", popen=popen)
        self.processes.append(process)
        return process

    def run(
        self, member: Member, argv: Sequence[str], *, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Runs `argv` to completion inside `member` (its netns and cgroup)."""
        process = self.spawn(member, argv)
        try:
            out, err = process.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self._stop(process)
            raise TopologyError(f"{' '.join(argv)} in {member.name} timed out after {timeout}s") from exc
        finally:
            self.processes.remove(process)
        return subprocess.CompletedProcess(list(argv), process.popen.returncode, out, err)

    def start_server(self, pod: Pod, kind: str, port: int) -> Process:
        """An echo server (`tcp` or `http`) in `pod`, returned once it listens."""
        argv = [
            sys.executable,
            "-m",
            "integration.echo",
            f"{kind}-server",
            "--pod",
            pod.name,
            "--port",
            str(port),
        ]
        process = self.spawn(pod, argv, name=f"{pod.name}:{kind}-server:{port}")
        ready = process.read_json(timeout=10.0)
        if ready.get("event") != "READY":
            raise TopologyError(f"{process.name}: unexpected first line {ready}")
        return process

    def tcp_call(
        self, pod: Pod, host: IPv4Address | str, port: int, message: str = "hello"
    ) -> dict[str, object]:
        """An unmodified python client in `pod` connects, sends one line and reports the reply it got."""
        result = self.run(
            pod,
            [
                sys.executable,
                "-m",
                "integration.echo",
                "tcp-client",
                str(host),
                str(port),
                "--message",
                message,
            ],
        )
        if result.returncode != 0:
            raise TopologyError(f"tcp client in {pod.name} to {host}:{port} failed: {result.stderr.strip()}")
        value = json.loads(result.stdout)
        assert isinstance(value, dict)
        return value

    def http_call(self, pod: Pod, url: str) -> dict[str, object]:
        """curl in `pod`; returns the echo server's JSON body."""
        result = self.run(pod, ["curl", "-sS", "--fail", "--max-time", "5", url])
        if result.returncode != 0:
            raise TopologyError(f"curl {url} in {pod.name} failed: {result.stderr.strip()}")
        value = json.loads(result.stdout)
        assert isinstance(value, dict)
        return value

    def http_get_in(self, member: Member, host: str, port: int, path: str, *, timeout: float = 5.0) -> str:
        """GET from the test process itself through a socket created inside `member`'s netns (e.g. an Envoy
        admin on the node's loopback). The socket belongs to the test's cgroup, so no hook touches it."""
        with socket_in_netns(member.netns_path) as sock:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise TopologyError(f"GET {path} on {member.name}: {status.decode()}")
        return body.decode()

    # Teardown.

    def _stop(self, process: Process, grace: float = 2.0) -> None:
        if process.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        for stream in (process.popen.stdin, process.popen.stdout, process.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self, process: Process) -> None:
        self._stop(process)
        if process in self.processes:
            self.processes.remove(process)

    def _cgroup_pids(self) -> list[int]:
        pids: list[int] = []
        for path in self._cgroups:
            procs = path / "cgroup.procs"
            with contextlib.suppress(FileNotFoundError):
                pids.extend(int(line) for line in procs.read_text().split())
        return pids

    def close(self) -> None:
        """Removes everything the run created, in dependency order, continuing past failures."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []

        def attempt(what: str, action: Callable[[], None]) -> None:
            try:
                action()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        for cleanup in reversed(self._cleanups):
            attempt("cleanup", cleanup)
        for process in reversed(self.processes):
            attempt(f"stop {process.name}", functools.partial(self._stop, process))
        # Anything else still in our cgroups was started from our processes: stop it by pid too.
        for _ in range(50):
            pids = self._cgroup_pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        for pin_dir in self._pin_dirs:
            attempt(f"remove {pin_dir}", functools.partial(_remove_pin_dir, pin_dir))
        for name in reversed(self._netns):
            attempt(f"delete netns {name}", functools.partial(_quiet_run, ["ip", "netns", "delete", name]))
        for path in reversed(self._cgroups):
            attempt(f"remove cgroup {path}", functools.partial(_rmdir_cgroup, path))
        if self._blackhole_metric is not None:
            route = [
                "ip",
                "route",
                "del",
                "blackhole",
                str(FABRIC_SUPERNET),
                "metric",
                str(self._blackhole_metric),
            ]
            attempt("remove blackhole route", functools.partial(_quiet_run, route))
        if errors:
            raise TopologyError("teardown incomplete: " + "; ".join(errors))

    def leak_check(self) -> list[str]:
        """What of this run still exists: namespaces, cgroups, pins, processes, routes. Empty means clean."""
        leaks: list[str] = []
        listed = _run(["ip", "netns", "list"]).stdout.split()
        leaks += [f"netns {name}" for name in listed if name.startswith(self.prefix)]
        leaks += (
            [f"netns file {path}" for path in NETNS_DIR.glob(f"{self.prefix}-*")]
            if NETNS_DIR.exists()
            else []
        )
        leaks += [f"cgroup {path}" for path in self._cgroups if path.exists()]
        leaks += [f"pin dir {path}" for path in self._pin_dirs if path.exists()]
        leaks += [f"pin dir {path}" for path in Path("/sys/fs/bpf").glob(f"nodemesh-{self.run_id}*")]
        for process in self.processes:
            if _alive(process.pid):
                leaks.append(f"process {process.name} (pid {process.pid})")
        if self._blackhole_metric is not None:
            routes = _run(["ip", "route", "show", "type", "blackhole"]).stdout
            if f"metric {self._blackhole_metric}" in routes:
                leaks.append(f"blackhole route metric {self._blackhole_metric}")
        links = _run(["ip", "-o", "link", "show"]).stdout
        leaks += [
            f"root netns link {line.split(':')[1].strip()}"
            for line in links.splitlines()
            if self.prefix in line
        ]
        return sorted(set(leaks))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; Popen reaps ours on wait().
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


def _remove_pin_dir(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


def _rmdir_cgroup(path: Path) -> None:
    # Removal can fail with EBUSY for a moment after the last process exited.
    for _ in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.02)
    path.rmdir()


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """A topology that is closed and leak-checked on exit, even when the body fails."""
    built = Topology.create()
    try:
        yield built
    finally:
        built.close()
        leaks = built.leak_check()
        if leaks:
            raise TopologyError(f"the topology leaked: {leaks}")


def parse_endpoint(text: object) -> tuple[IPv4Address, int]:
    """`"ip:port"` as the echo programs print it."""
    if not isinstance(text, str):
        raise TopologyError(f"not an endpoint: {text!r}")
    host, _, port = text.rpartition(":")
    return ipaddress.IPv4Address(host), int(port)
