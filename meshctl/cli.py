"""`meshctl`: ask the mesh what is going on, and generate what a node needs to join it.

Exit codes: 0 all good, 1 problems found (a NACK, a failed check, an unknown node), 2 usage error,
3 the control plane cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from controlplane.ca.sdsnames import DEFAULT_SOCKET_PATH
from meshctl import analyze, describe, meshcheck, precheck, proxyconfig, proxystatus, verdict
from meshctl.bootstrap import (
    DEFAULT_CONTROLPLANE,
    DEFAULT_ENVOY_CLUSTER,
    BootstrapError,
    ControlPlaneAddress,
    OutputFormat,
    build_bootstrap,
    render,
)
from meshctl.client import ControlPlaneClient
from meshctl.errors import ExitCode, MeshctlError, UsageError
from meshctl.output import Format, Painter, dump, use_color

CONTROLPLANE_ENV = "NODEMESH_CONTROLPLANE"
ADMIN_ENV = "NODEMESH_ADMIN"
DEFAULT_ADMIN = "127.0.0.1:15014"

_EPILOG = """\
examples:
  # Envoy bootstrap for node "node-a", ADS (state of the world) at the default control plane
  meshctl bootstrap --node node-a > envoy.yaml && envoy -c envoy.yaml

  # incremental (delta) ADS over a unix socket
  meshctl --controlplane unix:/run/nodemesh/xds.sock bootstrap --node node-a --delta

  # is this machine ready to run a node? is the running mesh healthy?
  meshctl check --pre
  meshctl check

  # who is connected and in sync; what the control plane holds for node-a
  meshctl proxy-status
  meshctl proxy-config clusters node-a -o yaml

  # what is wrong with the config: live, or offline over a directory of manifests (exit 1 on errors)
  meshctl analyze
  meshctl analyze -f manifests/

  # one pod: meshed or not and why, identity, services, routes, policies, mTLS, sync, certificates
  meshctl describe pod shop/reviews-v1-5d8f

The xDS address comes from --controlplane, else $NODEMESH_CONTROLPLANE, else 127.0.0.1:15010; the admin
address from --admin, else $NODEMESH_ADMIN, else 127.0.0.1:15014.
exit codes: 0 ok, 1 problems found, 2 usage error, 3 control plane unreachable.
"""

_CONTROLPLANE_HELP = (
    f"control plane xDS address, host:port or unix:PATH (default: ${CONTROLPLANE_ENV} or "
    f"{DEFAULT_CONTROLPLANE})"
)
_ADMIN_HELP = (
    f"control plane admin HTTP address, host:port or unix:PATH (default: ${ADMIN_ENV} or {DEFAULT_ADMIN})"
)


def _version() -> str:
    try:
        return metadata.version("nodemesh")
    except metadata.PackageNotFoundError:
        return "unknown"


def _connection_options(parser: argparse.ArgumentParser, *, admin: bool = True) -> None:
    # Also accepted after the subcommand, where newcomers tend to put them.
    parser.add_argument("--controlplane", dest="sub_controlplane", metavar="ADDR", help=_CONTROLPLANE_HELP)
    if admin:
        parser.add_argument("--admin", dest="sub_admin", metavar="ADDR", help=_ADMIN_HELP)


def _output_option(parser: argparse.ArgumentParser, formats: Sequence[Format]) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=[f.value for f in formats],
        default=Format.TABLE.value,
        help="output format (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshctl",
        description="Command-line client of nodemesh, the sidecarless service mesh: "
        "generate a node Envoy's bootstrap and inspect the mesh.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--controlplane", metavar="ADDR", help=_CONTROLPLANE_HELP)
    parser.add_argument("--admin", metavar="ADDR", help=_ADMIN_HELP)
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the control plane (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    boot = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap that points a node's Envoy at the control plane",
        description="Print an Envoy v3 bootstrap: node id and metadata, ADS (SotW or delta) at the control "
        "plane, admin interface on loopback. Feed it to `envoy -c`.",
    )
    boot.add_argument("--node", required=True, metavar="NAME", help="node name; becomes Envoy's node id")
    _connection_options(boot, admin=False)
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
        "--stats-port",
        type=int,
        metavar="PORT",
        help="also serve Envoy's Prometheus stats at :PORT/stats/prometheus on every address, proxied to "
        "the admin interface (which stays on --admin-address); the DaemonSet uses 15090",
    )
    boot.add_argument(
        "--sds-socket",
        default=DEFAULT_SOCKET_PATH,
        metavar="PATH",
        help="the node agent's SDS socket, where Envoy gets workload certificates (default: %(default)s)",
    )
    boot.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="write the bootstrap to PATH (atomically: written beside it, then renamed) instead of stdout",
    )
    boot.add_argument(
        "-o",
        "--output",
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.YAML.value,
        help="output format (default: %(default)s)",
    )

    status = commands.add_parser(
        "proxy-status",
        help="every connected proxy (node Envoy or agent) and whether each type is in sync",
        description="One row per connected xDS stream, from the control plane's CSDS: node, kind (envoy or "
        "agent), variant (sotw or delta), control-plane replica, per type SYNCED / NOT SENT / STALE / ERROR "
        "with the version sent, and how long it has been connected. NACK messages are listed below the "
        "table. Exit 1 when a proxy rejected config.",
    )
    status.add_argument("node", nargs="?", default="", metavar="NODE", help="only this node's streams")
    _connection_options(status)
    _output_option(status, list(Format))

    config = commands.add_parser(
        "proxy-config",
        help="the config the control plane holds for a node",
        description="The resources of one kind the control plane holds for NODE, as a table, or as Envoy "
        "JSON with -o json|yaml. Secrets show identity, serial and expiry; keys never leave the control "
        "plane.",
    )
    config.add_argument(
        "kind", choices=[k.value for k in proxyconfig.ConfigKind], metavar="KIND", help="one of: %(choices)s"
    )
    config.add_argument("node", metavar="NODE", help="node name (Envoy's node id)")
    _connection_options(config)
    _output_option(config, list(Format))

    check = commands.add_parser(
        "check",
        help="check the running mesh, or with --pre this machine's readiness to run a node",
        description="Without --pre: the control plane is ready, every connected proxy is in sync (a NACK "
        "fails), the certificates its CA issued are not expired or about to (WARN in the last quarter of "
        "their lifetime), and no route or policy has an error. With --pre: kernel, cgroup v2, BTF, bpffs, "
        "bcc and kernel headers, Envoy, privileges. Exit 1 if any check fails.",
    )
    check.add_argument("--pre", action="store_true", help="check this machine before installing a node")
    _connection_options(check)
    _output_option(check, [Format.TABLE, Format.JSON, Format.YAML])

    analyzer = commands.add_parser(
        "analyze",
        help="problems in the mesh's config, object by object (exit 1 on errors)",
        description="Every diagnostic: the object (kind/namespace/name), the field path, the reason and "
        "what to do. Without -f, from the running control plane; with -f, offline over a directory (or "
        "file) of Kubernetes YAML, no control plane needed. Exit 1 when any error, 0 otherwise "
        "(warnings are printed).",
    )
    analyzer.add_argument(
        "-f", "--filename", metavar="DIR", help="analyze these manifests offline (a directory or a file)"
    )
    analyzer.add_argument(
        "--trust-domain", default="cluster.local", help="SPIFFE trust domain, offline (default: %(default)s)"
    )
    _connection_options(analyzer)
    _output_option(analyzer, list(Format))

    describer = commands.add_parser(
        "describe",
        help="one object as the mesh sees it (pods)",
        description="A pod as the control plane sees it: mesh membership and why, SPIFFE identity, node, "
        "the Services that select it, the routes and policies that apply to its traffic, its mTLS mode per "
        "port, its node's agent and Envoy sync state, its certificate, and the diagnostics about any of "
        "those objects. Exit 1 when the pod does not exist.",
    )
    describer.add_argument("kind", choices=["pod"], metavar="KIND", help="one of: %(choices)s")
    describer.add_argument("target", metavar="NS/NAME", help="the pod's namespace and name")
    _connection_options(describer)
    _output_option(describer, list(Format))

    commands.add_parser("version", help="print meshctl's version")
    return parser


def _address(args: argparse.Namespace, name: str, env: str, default: str) -> ControlPlaneAddress:
    chosen: str | None = getattr(args, f"sub_{name}", None) or getattr(args, name, None)
    text = chosen or os.environ.get(env) or default
    try:
        return ControlPlaneAddress.parse(text)
    except BootstrapError as exc:
        raise UsageError(f"--{name}: {exc}") from exc


def _client(args: argparse.Namespace) -> ControlPlaneClient:
    return ControlPlaneClient(
        controlplane=_address(args, "controlplane", CONTROLPLANE_ENV, DEFAULT_CONTROLPLANE),
        admin=_address(args, "admin", ADMIN_ENV, DEFAULT_ADMIN),
        timeout=args.timeout,
    )


def _painter() -> Painter:
    return Painter(enabled=use_color(sys.stdout, os.environ))


def _bootstrap(args: argparse.Namespace) -> int:
    try:
        bootstrap = build_bootstrap(
            node=args.node,
            controlplane=_address(args, "controlplane", CONTROLPLANE_ENV, DEFAULT_CONTROLPLANE),
            delta=args.delta,
            admin_address=args.admin_address,
            admin_port=args.admin_port,
            cluster=args.cluster,
            sds_socket=args.sds_socket,
            stats_port=args.stats_port,
        )
    except BootstrapError as exc:
        raise UsageError(str(exc)) from exc
    text = render(bootstrap, OutputFormat(args.output))
    if args.out is None:
        sys.stdout.write(text)
        return ExitCode.OK
    out: Path = args.out
    # Renamed into place: Envoy's supervisor, watching the file for upgrades, never reads half of it.
    staged = out.with_name(f".{out.name}.tmp")
    try:
        staged.write_text(text)
        staged.replace(out)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise MeshctlError(f"cannot write the bootstrap to {out}: {exc}") from exc
    return ExitCode.OK


def _proxy_status(args: argparse.Namespace) -> int:
    rows = proxystatus.rows_from_csds(_client(args).client_status(args.node))
    output = Format(args.output)
    if output is Format.TABLE:
        if not rows:
            which = f"for node {args.node!r} " if args.node else ""
            print(f"no proxies connected {which}to this control plane", file=sys.stderr)
            return ExitCode.PROBLEMS if args.node else ExitCode.OK
        sys.stdout.write(proxystatus.render(rows, painter=_painter(), now=time.time()))
    else:
        sys.stdout.write(dump(proxystatus.to_document(rows), output))
    nacked = any(t.state is proxystatus.SyncState.ERROR for r in rows for t in r.types)
    return ExitCode.PROBLEMS if nacked else ExitCode.OK


def _proxy_config(args: argparse.Namespace) -> int:
    kind = proxyconfig.ConfigKind(args.kind)
    response = _client(args).admin_get("/debug/config", {"node": args.node, "type": kind.value})
    document: Any = response.json()
    if response.status != 200:
        error = document.get("error", response.body) if isinstance(document, dict) else response.body
        raise MeshctlError(f"proxy-config {kind.value} {args.node}: {error}")
    output = Format(args.output)
    if output is Format.TABLE:
        if document.get("snapshot") == "default":
            print(f"note: node {args.node!r} has no config of its own; showing the default", file=sys.stderr)
        sys.stdout.write(proxyconfig.render(kind, document, _painter()))
    else:
        sys.stdout.write(dump(document, output))
    return ExitCode.OK


def _check(args: argparse.Namespace) -> int:
    if args.pre:
        results = precheck.run_pre_checks(precheck.SystemHost())
    else:
        client = _client(args)
        ready = client.admin_get("/readyz")
        readiness = meshcheck.Readiness(
            ready=ready.status == 200, detail=ready.body, url=client.admin_url("/readyz")
        )
        rows = proxystatus.rows_from_csds(client.client_status())
        certificates = client.admin_get("/debug/certificates")
        diagnostics = client.admin_get("/debug/diagnostics")
        results = meshcheck.judge_mesh(
            readiness,
            rows,
            now=time.time(),
            # 404: a control plane without a mesh model (raw Envoy config): those checks are skipped.
            certificates=certificates.json() if certificates.status == 200 else None,
            diagnostics=diagnostics.json() if diagnostics.status == 200 else None,
        )
    output = Format(args.output)
    if output is Format.TABLE:
        sys.stdout.write(verdict.render(results, _painter()))
    else:
        sys.stdout.write(dump([r.to_dict() for r in results], output))
    return ExitCode.PROBLEMS if verdict.failed(results) else ExitCode.OK


def _analyze(args: argparse.Namespace) -> int:
    objects: int | None = None
    if args.filename:
        path = Path(args.filename)
        if not path.exists():
            raise UsageError(f"-f {args.filename}: no such file or directory")
        documents, objects = analyze.analyze_offline(path, trust_domain=args.trust_domain)
    else:
        client = _client(args)
        response = client.admin_get("/debug/diagnostics")
        if response.status == 404:
            raise MeshctlError(
                f"{client.admin_url('/debug/diagnostics')} not found: this control plane has no mesh model "
                "(it serves raw Envoy config); analyze manifests offline with -f DIR"
            )
        if response.status != 200:
            raise MeshctlError(f"analyze: admin endpoint answered HTTP {response.status}: {response.body}")
        documents = response.json()
    output = Format(args.output)
    if output is Format.TABLE:
        sys.stdout.write(analyze.render(documents, _painter(), objects=objects))
    else:
        sys.stdout.write(dump(documents, output))
    return ExitCode.PROBLEMS if analyze.has_errors(documents) else ExitCode.OK


def _describe(args: argparse.Namespace) -> int:
    namespace, sep, name = args.target.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise UsageError(f"describe {args.kind}: expected NAMESPACE/NAME, got {args.target!r}")
    client = _client(args)
    response = client.admin_get("/debug/describe", {"kind": args.kind, "namespace": namespace, "name": name})
    if response.status == 404 and response.body.lstrip().startswith("{"):
        raise MeshctlError(f"{args.kind} {namespace}/{name} not found in the mesh model")
    if response.status == 404:
        raise MeshctlError(
            f"{client.admin_url('/debug/describe')} not found: this control plane has no mesh model "
            "(it serves raw Envoy config)"
        )
    document: Any = response.json()
    if response.status != 200:
        error = document.get("error", response.body) if isinstance(document, dict) else response.body
        raise MeshctlError(f"describe {args.kind} {args.target}: {error}")
    output = Format(args.output)
    if output is Format.TABLE:
        sys.stdout.write(describe.render(document, _painter(), now=time.time()))
    else:
        sys.stdout.write(dump(document, output))
    return ExitCode.OK


_COMMANDS = {
    "bootstrap": _bootstrap,
    "proxy-status": _proxy_status,
    "proxy-config": _proxy_config,
    "check": _check,
    "analyze": _analyze,
    "describe": _describe,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 for --help
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    if args.command == "version":
        print(f"meshctl {_version()}")
        return ExitCode.OK
    try:
        return int(_COMMANDS[args.command](args))
    except MeshctlError as exc:
        print(f"meshctl: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:  # `meshctl ... | head`
        return ExitCode.OK
