"""`nodemesh-agent`: command line -> AgentSettings, then logging, then the agent until a signal stops it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nodeagent.agent import run_node_agent
from nodeagent.datapath import Datapath, DatapathError, Libbpf
from nodeagent.envoy.cli import add_envoy_command, envoy_settings_from, join_cgroup, run_supervisor
from nodeagent.errors import SettingsError
from nodeagent.logs import LogFormat, configure_logging
from nodeagent.settings import (
    DEFAULT_BPFFS,
    DEFAULT_HEALTH_LISTEN,
    AgentSettings,
    check_controlplane,
    parse_host_port,
)
from nodeagent.xdsclient import ClientSettings

log = logging.getLogger(__name__)

_DESCRIPTION = """\
The nodemesh node agent: one per node, beside the node's Envoy. It receives this node's plan from the
control plane (which pods are in the mesh, the service VIPs, where Envoy listens) and programs eBPF so that
the outbound TCP connections of meshed pods reach the node Envoy, which still learns where each connection
was going. Pods join and leave the mesh live: no restart, and established connections are never touched.

The BPF programs and maps are pinned under --bpffs. Stopping the agent leaves them in place on purpose, so
traffic keeps flowing while it restarts or upgrades; a new agent adopts them. `uninstall` removes them."""

_EPILOG = """\
commands (`nodemesh-agent run --help` lists the flags):
  run         (default) run the agent until SIGTERM/SIGINT
  uninstall   detach the programs and remove every pin under --bpffs (run it after stopping the agent)
  envoy       run the node Envoy under its hot-restart supervisor (`nodemesh-agent envoy --help`)

examples:
  nodemesh-agent --node node-a --controlplane controlplane.nodemesh:15010 \\
      --cgroup /sys/fs/cgroup --envoy-cgroup /sys/fs/cgroup/nodemesh-envoy
  nodemesh-agent --node node-a --controlplane unix:/run/nodemesh/xds.sock --cgroup /sys/fs/cgroup/kubepods \\
      --envoy-cgroup /sys/fs/cgroup/nodemesh-envoy --log-format json
  curl -s 127.0.0.1:15021/readyz; curl -s 127.0.0.1:15021/metrics | grep nodemesh_
  nodemesh-agent uninstall --bpffs /sys/fs/bpf/nodemesh

health: /healthz (the process serves), /readyz (200 once the programs are attached and the first plan is
applied), /metrics (Prometheus: plan version, meshed and pending pods, map entries, redirects, original-
destination hits and misses, xDS connection)."""


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            check(text)
            return text
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bpffs",
        type=Path,
        default=DEFAULT_BPFFS,
        help=f"directory on a bpffs where programs, links and maps are pinned (default {DEFAULT_BPFFS})",
    )
    parser.add_argument("--log-format", type=LogFormat, choices=list(LogFormat), default=LogFormat.TEXT)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodemesh-agent",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{run,uninstall,envoy}")
    run = commands.add_parser(
        "run",
        help="run the agent (the default command)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--node",
        default=os.environ.get("NODE_NAME", ""),
        help="this node's name, as the control plane knows it (default: $NODE_NAME)",
    )
    run.add_argument(
        "--controlplane",
        required=True,
        type=_checked(check_controlplane),
        help="the control plane's xDS address: host:port or unix:/absolute/path",
    )
    run.add_argument(
        "--cgroup",
        type=Path,
        required=True,
        help="cgroup v2 directory the pod programs attach to: every pod process must be below it "
        "(in a cluster the cgroup v2 root, e.g. /sys/fs/cgroup)",
    )
    run.add_argument(
        "--envoy-cgroup",
        type=Path,
        required=True,
        help="cgroup v2 directory of the node Envoy: its sockets answer SO_ORIGINAL_DST from the maps. "
        "Put Envoy there before it starts (accepted sockets inherit the listener's cgroup)",
    )
    run.add_argument(
        "--sds-socket",
        type=Path,
        help="unix socket where the agent serves workload certificates to Envoy (SDS)",
    )
    run.add_argument(
        "--token-file",
        type=Path,
        help="file with the token the agent presents to the control plane (re-read on every connect)",
    )
    run.add_argument(
        "--netns-dir",
        type=Path,
        help="directory where DIR/<pod uid> is each pod's netns file (or a symlink to it); by default a "
        "pod is found by scanning --proc-dir for a process in its cgroup (`pod<uid>`)",
    )
    run.add_argument(
        "--proc-dir",
        type=Path,
        default=Path("/proc"),
        help="the host's /proc, where pods' processes are looked for (default /proc; in the DaemonSet "
        "/host/proc)",
    )
    run.add_argument(
        "--health-listen",
        type=_checked(parse_host_port),
        default=DEFAULT_HEALTH_LISTEN,
        help=f"host:port of /healthz, /readyz and /metrics (default {DEFAULT_HEALTH_LISTEN})",
    )
    run.add_argument(
        "--xds-retry-max",
        type=_seconds,
        default=ClientSettings().backoff_max,
        help="longest wait between reconnects to the control plane, in seconds (jittered exponential "
        "backoff; default %(default)s)",
    )
    _add_common(run)
    uninstall = commands.add_parser(
        "uninstall",
        help="remove the pinned programs, links and maps",
        description="Detach the nodemesh BPF programs and remove every pin under --bpffs. Run it after the "
        "agent has stopped: meshed pods' new connections then go straight to their destination again.",
    )
    _add_common(uninstall)
    envoy = add_envoy_command(commands)
    envoy.add_argument("--log-format", type=LogFormat, choices=list(LogFormat), default=LogFormat.TEXT)
    envoy.add_argument("--log-level", default="INFO", help="the supervisor's: DEBUG, INFO, WARNING, ERROR")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = list(argv)
    if not args or args[0] not in ("run", "uninstall", "envoy", "-h", "--help"):
        args.insert(0, "run")
    return build_parser().parse_args(args)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(
        node=args.node,
        controlplane=args.controlplane,
        pods_cgroup=args.cgroup,
        envoy_cgroup=args.envoy_cgroup,
        bpffs=args.bpffs,
        health_listen=args.health_listen,
        sds_socket=args.sds_socket,
        token_file=args.token_file,
        netns_dir=args.netns_dir,
        proc_dir=args.proc_dir,
        xds=ClientSettings(backoff_max=args.xds_retry_max, backoff_initial=min(0.5, args.xds_retry_max)),
    )


async def run_agent(settings: AgentSettings) -> None:
    """The agent until SIGTERM or SIGINT, which cancel it (the pinned data path stays)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await run_node_agent(settings)
    except asyncio.CancelledError:
        log.info("stopped on signal")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_format, args.log_level)
    if args.command == "uninstall":
        try:
            Datapath(pin_dir=args.bpffs, lib=Libbpf.load()).uninstall()
        except (DatapathError, OSError) as exc:
            print(f"nodemesh-agent uninstall: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "envoy":
        try:
            envoy_settings = envoy_settings_from(args)
        except SettingsError as exc:
            parser.error(str(exc))
        if args.cgroup is not None:
            try:
                join_cgroup(args.cgroup)
            except SettingsError as exc:
                log.error("%s", exc)
                return 2
        asyncio.run(run_supervisor(envoy_settings))
        return 0
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(run_agent(settings))
    except DatapathError as exc:
        log.error("the data path cannot run: %s", exc)
        return 2
    return 0
