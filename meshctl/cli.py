"""`meshctl`: ask the mesh what is going on, and generate what a node needs to join it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from meshctl.bootstrap import (
    DEFAULT_CONTROLPLANE,
    DEFAULT_ENVOY_CLUSTER,
    BootstrapError,
    ControlPlaneAddress,
    OutputFormat,
    build_bootstrap,
    render,
)

CONTROLPLANE_ENV = "NODEMESH_CONTROLPLANE"

_EPILOG = """\
examples:
  # Envoy bootstrap for node "node-a", ADS (state of the world) at the default control plane
  meshctl bootstrap --node node-a > envoy.yaml && envoy -c envoy.yaml

  # incremental (delta) ADS over a unix socket
  meshctl --controlplane unix:/run/nodemesh/xds.sock bootstrap --node node-a --delta

The control-plane address comes from --controlplane, else $NODEMESH_CONTROLPLANE, else 127.0.0.1:15010.
"""


def _version() -> str:
    try:
        return metadata.version("nodemesh")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshctl",
        description="Command-line client of nodemesh, the sidecarless service mesh: "
        "generate a node Envoy's bootstrap and inspect the mesh.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    controlplane_help = (
        "control plane xDS address, host:port or unix:PATH "
        f"(default: ${CONTROLPLANE_ENV} or {DEFAULT_CONTROLPLANE})"
    )
    parser.add_argument("--controlplane", metavar="ADDR", help=controlplane_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    boot = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap that points a node's Envoy at the control plane",
        description="Print an Envoy v3 bootstrap: node id and metadata, ADS (SotW or delta) at the control "
        "plane, admin interface on loopback. Feed it to `envoy -c`.",
    )
    boot.add_argument("--node", required=True, metavar="NAME", help="node name; becomes Envoy's node id")
    # Also accepted after the subcommand, where newcomers tend to put it.
    boot.add_argument("--controlplane", dest="sub_controlplane", metavar="ADDR", help=controlplane_help)
    boot.add_argument("--delta", action="store_true", help="use incremental (delta) ADS instead of SotW")
    boot.add_argument(
        "--admin-address", default="127.0.0.1", help="Envoy admin address (default: %(default)s)"
    )
    boot.add_argument(
        "--admin-port", type=int, default=15000, help="Envoy admin port, 0 for any (default: %(default)s)"
    )
    boot.add_argument(
        "--cluster", default=DEFAULT_ENVOY_CLUSTER, help="Envoy's node cluster name (default: %(default)s)"
    )
    boot.add_argument(
        "-o",
        "--output",
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.YAML.value,
        help="output format (default: %(default)s)",
    )

    commands.add_parser("version", help="print meshctl's version")
    return parser


def _controlplane(args: argparse.Namespace) -> str:
    chosen: str | None = getattr(args, "sub_controlplane", None) or args.controlplane
    return chosen or os.environ.get(CONTROLPLANE_ENV) or DEFAULT_CONTROLPLANE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"meshctl {_version()}")
        return 0
    try:
        bootstrap = build_bootstrap(
            node=args.node,
            controlplane=ControlPlaneAddress.parse(_controlplane(args)),
            delta=args.delta,
            admin_address=args.admin_address,
            admin_port=args.admin_port,
            cluster=args.cluster,
        )
    except BootstrapError as exc:
        print(f"meshctl: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(bootstrap, OutputFormat(args.output)))
    return 0
