"""`make demo` runs `python -m demo`: the mesh for real on this machine, and a story told with kubectl.

python -m demo                       run the whole story, then tear everything down
python -m demo up | down             leave the mesh running in the background / stop it (make demo-up/-down)
python -m demo exec POD -- CMD...    run a command in a pod of the running demo (curl, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Sequence

from controlplane.logs import LogFormat, configure_logging
from demo import daemon
from demo.console import Console, Outcome
from demo.lifecycle import NODES, TOTAL_STEPS, DemoError, run_story, workdir_for_run
from demo.podexec import exec_in_pod
from demo.state import StateError, state_dir
from meshctl.output import Color


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="nodemesh's demo: two nodes, a control plane and an application in the isolated fabric.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--verbose", action="store_true", help="show the control plane's log")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the whole story and tear down (the default)")
    for name, text in (
        ("up", "start the mesh in the background and print how to explore it"),
        ("down", "stop the background mesh and remove everything"),
        ("serve", "(internal) the background process `up` starts"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--state-dir",
            help="where the state file lives (default: $NODEMESH_DEMO_DIR or /run/nodemesh-demo)",
        )
    run_in = commands.add_parser("exec", help="run a command in a pod of the running demo")
    run_in.add_argument("--state-dir")
    run_in.add_argument("pod", help="frontend, batch, reviews-v1, ... or NS/NAME")
    run_in.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return parser


def run() -> int:
    console = Console(total=TOTAL_STEPS)
    console.line(
        f"nodemesh demo: a control plane, {NODES} nodes (one Envoy and one node agent each) and an "
        "application, in an isolated fabric of network namespaces on this machine",
        Color.DIM,
    )
    workdir = workdir_for_run()
    started = time.perf_counter()
    try:
        story = asyncio.run(run_story(console, workdir))
    except DemoError as exc:
        console.line()
        console.line(f"demo FAILED: {exc}", Color.RED)
        if any(workdir.iterdir()):
            console.line(f"logs and the applied YAML are kept in {workdir}")
        else:
            workdir.rmdir()
        return 1
    except KeyboardInterrupt:
        console.line(f"\ninterrupted: the mesh was torn down (its logs are in {workdir})", Color.YELLOW)
        return 130
    shutil.rmtree(workdir, ignore_errors=True)
    rows = list(story.outcomes)
    rows.append(
        ("total", Outcome.OK, f"{time.perf_counter() - started:.1f} s, torn down, nothing left behind")
    )
    console.summary(rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(log_format=LogFormat.TEXT, level="INFO" if args.verbose else "WARNING")
    logging.getLogger("controlplane.sources").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        match args.command:
            case None | "run":
                return run()
            case "up":
                return daemon.up(state_dir(args.state_dir))
            case "down":
                return daemon.down(state_dir(args.state_dir))
            case "serve":
                return asyncio.run(daemon.serve(state_dir(args.state_dir)))
            case "exec":
                command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
                return exec_in_pod(state_dir(args.state_dir), args.pod, command)
    except (DemoError, StateError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
