"""The gRPC server: ADS (SotW and delta), CSDS and the app's servicers, on TCP and unix sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.status.v3 import csds_pb2_grpc
from prometheus_client import CollectorRegistry

from controlplane.xds.budget import PushBudget
from controlplane.xds.cache import SnapshotSource
from controlplane.xds.csds import CsdsServicer
from controlplane.xds.delta import DeltaHandler
from controlplane.xds.errors import XdsError
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.sotw import SotwHandler
from controlplane.xds.status import ProxyStatusRegistry
from controlplane.xds.stream import StreamEnv

logger = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
# Envoy fetches secrets named by an `sds_config` api_config_source on this service, not over ADS.
SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"

AddServicers = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    # Server pings an idle connection this often, and drops it when no ack arrives within the timeout.
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    # Clients may ping this often without data (Envoy's connection_keepalive), no more.
    min_client_ping_interval: float = 10.0
    # Connections are closed after this age (GOAWAY), so clients rebalance across replicas; None: never.
    max_connection_age: float | None = 1800.0
    max_connection_age_grace: float = 10.0
    max_concurrent_pushes: int = 64
    # Bytes of the responses being written at once: each is joined into one buffer and gRPC holds a copy
    # until written, so this bounds the memory a cold start of a large mesh needs (about twice this).
    max_push_bytes: int = 128 * 2**20
    # How long one push may hold a concurrency permit while its client is slow to read.
    push_permit_timeout: float = 1.0
    # Names one request may list. Envoy subscribes to every EDS cluster and RDS route of its node by name:
    # 10,000 Services already make 10,200 route names (issue 7's scale), so leave room; the request's
    # bytes are bounded by max_request_bytes anyway.
    max_resource_names: int = 100_000
    max_request_bytes: int = 16 * 1024 * 1024
    unix_socket_mode: int = 0o660
    stop_grace: float = 5.0
    # Also serve SDS's own service (the node agent's local SDS server for its Envoy).
    serve_secret_discovery: bool = False


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def grpc_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_time)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(settings.min_client_ping_interval)),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        # Two control planes must not silently share a port.
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age is not None:
        options.append(("grpc.max_connection_age_ms", _ms(settings.max_connection_age)))
        options.append(("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace)))
    return options


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    """`async with XdsServer(cache, registry, settings) as server: ports = await server.listen([...])`."""

    def __init__(
        self,
        snapshots: SnapshotSource,
        registry: ProxyStatusRegistry,
        settings: ServerSettings | None = None,
        *,
        metrics: XdsMetrics | None = None,
        extra_servicers: Sequence[AddServicers] = (),
        replica: str = "",
    ) -> None:
        self.settings = settings or ServerSettings()
        self.registry = registry
        self.metrics = metrics or XdsMetrics(CollectorRegistry())
        self._snapshots = snapshots
        self._extra = tuple(extra_servicers)
        self._replica = replica
        self._server: grpc.aio.Server | None = None
        self._closing: asyncio.Event | None = None
        self._env: StreamEnv | None = None
        self._started = False
        self._unix_paths: list[str] = []

    def _build(self) -> grpc.aio.Server:
        self._closing = asyncio.Event()
        env = self._env = StreamEnv(
            snapshots=self._snapshots,
            registry=self.registry,
            metrics=self.metrics,
            push_budget=PushBudget(
                pushes=self.settings.max_concurrent_pushes, max_bytes=self.settings.max_push_bytes
            ),
            push_permit_timeout=self.settings.push_permit_timeout,
            closing=self._closing,
        )
        server = grpc.aio.server(options=grpc_options(self.settings))
        limit = self.settings.max_resource_names
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                SotwHandler(env, max_names=limit).serve,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=_identity,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                DeltaHandler(env, max_names=limit).serve,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=_identity,
            ),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ADS_SERVICE, handlers)])
        if self.settings.serve_secret_discovery:
            # Same stream protocol; each request names its type URL, so the ADS handlers serve it as is.
            secrets = {
                "StreamSecrets": handlers["StreamAggregatedResources"],
                "DeltaSecrets": handlers["DeltaAggregatedResources"],
            }
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SDS_SERVICE, secrets)])
        csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(
            CsdsServicer(self.registry, replica=self._replica), server
        )
        for add in self._extra:
            add(server)
        return server

    async def listen(self, addresses: Sequence[str]) -> list[int]:
        """Bind every address ("host:port" or "unix:/path") and start serving.

        Returns one port per address: the bound TCP port (useful with port 0), or 0 for a unix socket.
        """
        if self._started:
            raise XdsError("XdsServer.listen may be called once")
        if self._server is None:
            self._server = self._build()
        ports: list[int] = []
        for address in addresses:
            path = address.removeprefix("unix:") if address.startswith("unix:") else None
            if path is not None:
                _remove_stale_socket(path)
            try:
                port = self._server.add_insecure_port(address)
            except RuntimeError as exc:
                raise XdsError(f"cannot listen on {address}: {exc}") from exc
            if path is not None:
                os.chmod(path, self.settings.unix_socket_mode)
                self._unix_paths.append(path)
                port = 0
            elif port == 0:
                raise XdsError(f"cannot listen on {address}")
            ports.append(port)
            logger.info("xds server listening on %s (port %d)", address, port)
        await self._server.start()
        self._started = True
        return ports

    async def start(self, addresses: Sequence[str]) -> list[int]:
        return await self.listen(addresses)

    async def stop(self, grace: float | None = None) -> None:
        """End every ADS stream (clients reconnect elsewhere), then stop within `grace` seconds."""
        if self._closing is not None:
            self._closing.set()
        grace = self.settings.stop_grace if grace is None else grace
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if self._env is not None and self._env.active:
            # gRPC counts a stream done once its status is sent; wait for the handlers' own cleanup too.
            await asyncio.wait(set(self._env.active), timeout=grace)
        for path in self._unix_paths:
            _remove_stale_socket(path)
        self._unix_paths.clear()

    async def __aenter__(self) -> XdsServer:
        self._server = self._build()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise XdsError(f"refusing to replace {path}: it exists and is not a socket")
    os.unlink(path)
