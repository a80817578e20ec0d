"""`nodemesh-controlplane`: command line -> Settings, then logging, then the app until a signal stops it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from controlplane.admin import AdminError
from controlplane.logs import LogFormat, configure_logging
from controlplane.settings import (
    DEFAULT_ADMIN_LISTEN,
    DEFAULT_XDS_LISTEN,
    SecretName,
    Settings,
    SettingsError,
    SourceKind,
    SourceSpec,
    check_listen_address,
)
from controlplane.xds.errors import XdsError

log = logging.getLogger(__name__)

_DESCRIPTION = """\
The nodemesh control plane. It reads the mesh's configuration from a source and serves it to every node's
Envoy over xDS (aggregated discovery, state-of-the-world and incremental/delta), with status per proxy
over CSDS. Health, readiness and Prometheus metrics are on the admin address.

Sources (--source):
  kube                 the Kubernetes API, in-cluster service account
  kube:KUBECONFIG      the Kubernetes API named by a kubeconfig file
  files:DIR            a directory of Kubernetes YAML (Namespaces, Nodes, Pods, Services, EndpointSlices,
                       HTTPRoutes, GRPCRoutes, nodemesh.io policies), watched: edits apply within a second
  dir:DIR              raw Envoy resources in YAML, one per document with an "@type" key, served as they
                       are (DIR/*.yaml to every node, DIR/nodes/<node-id>/*.yaml to one node)

With --ca-file (or, in a cluster, --ca-secret) the control plane also runs the CA that signs workload
certificates for node agents that prove their node: by a bootstrap token (--node-tokens: lines
"<node> <token> [<expiry>]") or, with the kube source, by their pod-bound service-account token
(TokenReview; --token-audience, --node-service-account)."""

_EPILOG = """\
examples:
  nodemesh-controlplane --source files:manifests/samples/mesh --ca-file /var/lib/nodemesh/ca.pem
  nodemesh-controlplane --source kube:$HOME/.kube/config
  nodemesh-controlplane --source dir:manifests/samples/raw-envoy
  meshctl bootstrap --node node-a > /tmp/envoy.yaml && envoy -c /tmp/envoy.yaml
  curl -s localhost:15014/readyz; curl -s localhost:15014/metrics | grep nodemesh_xds

admin endpoints: /healthz, /readyz (200 once the first snapshot is built), /metrics, /debug"""


def _listen(text: str) -> str:
    try:
        return check_listen_address(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _source(text: str) -> SourceSpec:
    try:
        return SourceSpec.parse(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _secret(text: str) -> SecretName:
    try:
        return SecretName.parse(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings(source=SourceSpec.parse("dir:."))
    parser = argparse.ArgumentParser(
        prog="nodemesh-controlplane",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        type=_source,
        required=True,
        metavar="SOURCE",
        help="where the mesh's configuration comes from: kube, kube:KUBECONFIG, files:DIR or dir:DIR",
    )
    parser.add_argument(
        "--trust-domain",
        default=defaults.trust_domain,
        help="SPIFFE trust domain of workload identities (default: %(default)s)",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="PATH",
        help="run the CA, keeping its root key and certificate in PATH (mode 0600; created on first start)",
    )
    parser.add_argument(
        "--ca-secret",
        type=_secret,
        metavar="NAMESPACE/NAME",
        help="run the CA, keeping its root in this Kubernetes Secret (kube source only; created on first "
        "start, shared by every replica)",
    )
    parser.add_argument(
        "--node-tokens",
        type=Path,
        metavar="PATH",
        help="bootstrap tokens node agents authenticate with, one '<node> <token> [<expiry>]' per line",
    )
    parser.add_argument(
        "--token-audience",
        default=defaults.token_audience,
        metavar="AUDIENCE",
        help="kube source without --node-tokens: the audience of node agents' projected tokens, checked by "
        "TokenReview (default: %(default)s)",
    )
    parser.add_argument(
        "--node-service-account",
        default=defaults.node_service_account,
        metavar="USERNAME",
        help="the service account node agents' tokens must belong to (default: %(default)s)",
    )
    parser.add_argument(
        "--xds-listen",
        type=_listen,
        action="append",
        metavar="ADDR",
        help=f"xDS gRPC address, host:port or unix:PATH; repeat for several (default: {DEFAULT_XDS_LISTEN})",
    )
    parser.add_argument(
        "--admin-listen",
        type=_listen,
        default=DEFAULT_ADMIN_LISTEN,
        metavar="ADDR",
        help="admin HTTP address for /healthz, /readyz, /metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        default=LogFormat.TEXT.value,
        help="text: key=value lines; json: one JSON object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="(default: %(default)s)",
    )
    tuning = parser.add_argument_group("tuning (seconds)")
    tuning.add_argument(
        "--debounce-quiet",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.debounce_quiet,
        help="push once changes have been quiet this long (default: %(default)s)",
    )
    tuning.add_argument(
        "--debounce-max",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.debounce_max,
        help="but never delay a push longer than this (default: %(default)s)",
    )
    tuning.add_argument(
        "--convergence-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.convergence_timeout,
        help="stop waiting for a push to be ACKed by every proxy after this (default: %(default)s)",
    )
    tuning.add_argument(
        "--keepalive",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.keepalive_time,
        help="gRPC keepalive ping interval to proxies (default: %(default)s)",
    )
    tuning.add_argument(
        "--keepalive-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.keepalive_timeout,
        help="drop a proxy that does not answer a ping within this (default: %(default)s)",
    )
    tuning.add_argument(
        "--max-connection-age",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.max_connection_age,
        help="close xDS connections this old, so proxies rebalance across replicas (default: %(default)s)",
    )
    tuning.add_argument(
        "--shutdown-grace",
        type=_seconds,
        metavar="SECONDS",
        default=defaults.shutdown_grace,
        help="on SIGTERM, let streams finish for this long (default: %(default)s)",
    )
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debounce_max < args.debounce_quiet:
        parser.error("--debounce-max must be at least --debounce-quiet")
    if args.convergence_timeout <= 0:
        parser.error("--convergence-timeout must be positive")
    if args.ca_secret is not None and args.ca_file is not None:
        parser.error("--ca-secret and --ca-file are alternatives: the CA keeps one root")
    if args.ca_secret is not None and args.source.kind is not SourceKind.KUBE:
        parser.error("--ca-secret needs the kube source")
    if not args.token_audience:
        parser.error("--token-audience must not be empty")
    return Settings(
        source=args.source,
        xds_listen=tuple(args.xds_listen or (DEFAULT_XDS_LISTEN,)),
        admin_listen=args.admin_listen,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        convergence_timeout=args.convergence_timeout,
        keepalive_time=args.keepalive,
        keepalive_timeout=args.keepalive_timeout,
        max_connection_age=args.max_connection_age,
        shutdown_grace=args.shutdown_grace,
        log_format=LogFormat(args.log_format),
        log_level=args.log_level.upper(),
        trust_domain=args.trust_domain,
        ca_file=args.ca_file,
        ca_secret=args.ca_secret,
        node_tokens=args.node_tokens,
        token_audience=args.token_audience,
        node_service_account=args.node_service_account,
    )


async def serve(settings: Settings) -> None:
    """Run the control plane until SIGINT or SIGTERM, then shut down gracefully."""
    source = settings.source
    if source.kind is not SourceKind.KUBE and not source.directory().is_dir():
        raise SettingsError(f"source {source}: {source.directory()} is not a directory")
    # Imported here so `--help` and flag errors stay fast (grpc and the Envoy protos load slowly).
    from controlplane.app import ControlPlane

    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    stop_signal: list[str] = []

    def request_stop(sig: signal.Signals) -> None:
        stop_signal.append(sig.name)
        current.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, sig)
    try:
        await ControlPlane(settings).run()
    except asyncio.CancelledError:
        if not stop_signal:
            raise
        log.info("stopped", extra={"signal": stop_signal[0]})
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(serve(settings))
    except SettingsError as exc:
        print(f"nodemesh-controlplane: error: {exc}", file=sys.stderr)
        return 2
    except (AdminError, XdsError, OSError) as exc:
        # Startup failures (a port in use, an unusable socket path) are the operator's to fix: no traceback.
        log.error("control plane failed: %s", exc)
        return 1
    return 0
