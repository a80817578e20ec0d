"""`nodemesh-agent envoy`: the Envoy supervisor in the foreground (the DaemonSet's Envoy container runs it).

Signals: SIGHUP hot restarts Envoy (epoch + 1), SIGUSR1 is forwarded (Envoy reopens its access logs), SIGTERM
and SIGINT drain Envoy (up to --shutdown-drain-time), then stop every epoch and exit; a second one cuts the
drain short.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from nodeagent.envoy.command import DEFAULT_BASE_ID, DEFAULT_SHUTDOWN_DRAIN_TIME, DrainStrategy, EnvoySettings
from nodeagent.envoy.supervisor import EnvoySupervisor
from nodeagent.errors import SettingsError

log = logging.getLogger(__name__)

ENVOY_HELP = """\
Run the node Envoy under a supervisor that restarts it with Envoy's hot restart: on SIGHUP, when the Envoy
binary or the bootstrap file changes (an upgrade; validated first with `envoy --mode validate`), and when it
crashes (with backoff). A hot restart starts epoch N + 1, which takes over the listen sockets; epoch N drains
for --drain-time seconds and exits after --parent-shutdown-time: no connection is refused, and established
ones keep working until the old epoch exits. On SIGTERM, Envoy fails its health checks and stops accepting,
and requests in flight get up to --shutdown-drain-time seconds to finish before it is stopped. Run it in
Envoy's cgroup (every epoch stays there)."""

ENVOY_EPILOG = """\
examples:
  nodemesh-agent envoy --bootstrap /etc/nodemesh/envoy.yaml --concurrency 2
  kill -HUP <supervisor pid>      # hot restart onto the current binary and bootstrap"""


def _default_binary() -> Path:
    beside = Path(sys.executable).parent / "envoy"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("envoy")
    return Path(found) if found else Path("/usr/local/bin/envoy")


def _whole_seconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected whole seconds, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def add_envoy_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "envoy",
        help="run the node Envoy under its hot-restart supervisor",
        description=ENVOY_HELP,
        epilog=ENVOY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bootstrap", type=Path, required=True, help="Envoy's bootstrap file (`meshctl bootstrap`)"
    )
    parser.add_argument(
        "--envoy-binary",
        type=Path,
        default=None,
        help="the Envoy binary (default: envoy beside Python, or on PATH)",
    )
    parser.add_argument(
        "--base-id",
        type=int,
        default=DEFAULT_BASE_ID,
        help=f"Envoy's hot-restart base id, unique per Envoy on the host (default {DEFAULT_BASE_ID})",
    )
    parser.add_argument("--drain-time", type=_whole_seconds, default=45, help="seconds (default %(default)s)")
    parser.add_argument(
        "--parent-shutdown-time", type=_whole_seconds, default=60, help="seconds (default %(default)s)"
    )
    parser.add_argument(
        "--shutdown-drain-time",
        type=_seconds,
        default=DEFAULT_SHUTDOWN_DRAIN_TIME,
        help="on SIGTERM: seconds requests in flight get to finish after Envoy stops accepting, before it "
        "is stopped (sooner once no connection is open; 0: stop at once; default %(default)s)",
    )
    parser.add_argument(
        "--drain-strategy", type=DrainStrategy, choices=list(DrainStrategy), default=DrainStrategy.GRADUAL
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=None, help="Envoy worker threads (default: Envoy's)"
    )
    parser.add_argument("--log-path", type=Path, default=None, help="Envoy's log file (default: stderr)")
    parser.add_argument("--envoy-log-level", default=None, help="Envoy's -l (default: Envoy's)")
    parser.add_argument(
        "--admin-address-path", type=Path, default=None, help="file where each epoch writes its admin address"
    )
    parser.add_argument(
        "--watch-interval",
        type=float,
        default=2.0,
        help="seconds between checks of the binary and bootstrap for an upgrade; 0 disables (default 2)",
    )
    parser.add_argument(
        "--cgroup",
        type=Path,
        default=None,
        help="cgroup v2 directory to move the supervisor into (created if missing) before Envoy starts, so "
        "every epoch runs there: the agent's --envoy-cgroup (default: stay in the current cgroup)",
    )
    parser.add_argument("extra", nargs="*", help="more Envoy arguments, after `--`")
    return parser


def envoy_settings_from(args: argparse.Namespace) -> EnvoySettings:
    return EnvoySettings(
        binary=args.envoy_binary or _default_binary(),
        bootstrap=args.bootstrap,
        base_id=args.base_id,
        concurrency=args.concurrency,
        drain_time=args.drain_time,
        parent_shutdown_time=args.parent_shutdown_time,
        drain_strategy=args.drain_strategy,
        shutdown_drain_time=args.shutdown_drain_time,
        log_path=args.log_path,
        log_level=args.envoy_log_level,
        admin_address_path=args.admin_address_path,
        extra_args=tuple(args.extra),
        watch_interval=args.watch_interval or None,
    )


def join_cgroup(cgroup: Path) -> None:
    """Moves this process into `cgroup` (cgroup v2), before any Envoy starts: accepted sockets belong to the
    listener's cgroup, where the agent attaches the getsockopt program that answers SO_ORIGINAL_DST."""
    try:
        cgroup.mkdir(parents=True, exist_ok=True)
        (cgroup / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise SettingsError(f"cannot join cgroup {cgroup}: {exc}") from exc
    log.info("joined cgroup %s", cgroup)


async def run_supervisor(settings: EnvoySettings) -> None:
    """The supervisor until SIGTERM or SIGINT; SIGHUP restarts Envoy, SIGUSR1 is forwarded."""
    supervisor = EnvoySupervisor(settings)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    handlers: dict[signal.Signals, Callable[[], object]] = {
        signal.SIGTERM: task.cancel,
        signal.SIGINT: task.cancel,
        signal.SIGHUP: supervisor.restart,
        signal.SIGUSR1: supervisor.reopen_logs,
    }
    for signum, handler in handlers.items():
        loop.add_signal_handler(signum, handler)
    try:
        await supervisor.run()
    except asyncio.CancelledError:
        log.info("stopped on signal")
    finally:
        for signum in handlers:
            loop.remove_signal_handler(signum)
