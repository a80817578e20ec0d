"""A real xDS server on 127.0.0.1:0 and scripted grpc.aio ADS clients that speak real Envoy messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from prometheus_client import CollectorRegistry

from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.status import ProxyStatusRegistry

TIMEOUT = 5.0


class AdsClient:
    """One ADS stream. Sends the node only on the first request, as Envoy does."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str, *, delta: bool) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call: Any = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        self.node = base_pb2.Node(id=node_id, cluster="test-cluster")
        self._sent_node = False

    def _node(self) -> Any:
        if self._sent_node:
            return None
        self._sent_node = True
        return self.node

    async def recv(self, within: float = TIMEOUT) -> Any:
        message = await asyncio.wait_for(self.call.read(), within)
        assert message is not grpc.aio.EOF, "stream ended"  # type: ignore[attr-defined]
        return message

    async def status(self, within: float = TIMEOUT) -> tuple[grpc.StatusCode, str]:
        """Read until the server ends the stream; its status code and details."""
        async with asyncio.timeout(within):
            try:
                while await self.call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return await self.call.code(), await self.call.details()

    def cancel(self) -> None:
        self.call.cancel()

    async def close(self) -> None:
        """Half-close and drain until the server ends the stream, as a polite client does.

        (Cancelling instead leaves a gRPC status task pending for a moment, which the leak check catches.)
        """
        if not self.call.done():
            try:
                await self.call.done_writing()
                async with asyncio.timeout(TIMEOUT):
                    while await self.call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                        pass
            except grpc.aio.AioRpcError:
                pass
        await self.call.code()


class SotwClient(AdsClient):
    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        super().__init__(channel, node_id, delta=False)

    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
        with_node: bool | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce
        )
        node = self._node() if with_node is None else (self.node if with_node else None)
        if node is not None:
            request.node.CopyFrom(node)
        if error is not None:
            request.error_detail.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            request.error_detail.message = error
        await self.call.write(request)

    async def ack(self, response: Any, names: Iterable[str] = ()) -> None:
        await self.request(response.type_url, names, version=response.version_info, nonce=response.nonce)

    async def nack(self, response: Any, message: str, names: Iterable[str] = (), version: str = "") -> None:
        await self.request(response.type_url, names, version=version, nonce=response.nonce, error=message)


class DeltaClient(AdsClient):
    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        super().__init__(channel, node_id, delta=True)
        # What this client holds per type, as a real client tracks it.
        self.held: dict[str, dict[str, str]] = {}

    async def request(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        initial: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=dict(initial or {}),
        )
        node = self._node()
        if node is not None:
            request.node.CopyFrom(node)
        if error is not None:
            request.error_detail.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            request.error_detail.message = error
        await self.call.write(request)

    async def recv_applied(self, within: float = TIMEOUT) -> Any:
        response = await self.recv(within)
        held = self.held.setdefault(response.type_url, {})
        for resource in response.resources:
            held[resource.name] = resource.version
        for name in response.removed_resources:
            held.pop(name, None)
        return response

    async def ack(self, response: Any) -> None:
        await self.request(response.type_url, nonce=response.nonce)


@dataclass
class XdsHarness:
    cache: SnapshotCache
    registry: ProxyStatusRegistry
    server: XdsServer
    target: str
    metrics: CollectorRegistry
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    clients: list[AdsClient] = field(default_factory=list)

    def channel(self, target: str | None = None) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target or self.target)
        self.channels.append(channel)
        return channel

    def sotw(self, node_id: str = "node-1", target: str | None = None) -> SotwClient:
        client = SotwClient(self.channel(target), node_id)
        self.clients.append(client)
        return client

    def delta(self, node_id: str = "node-1", target: str | None = None) -> DeltaClient:
        client = DeltaClient(self.channel(target), node_id)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for channel in self.channels:
            await channel.close(None)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.get_sample_value(name, labels) or 0.0


async def wait_until(predicate: Any, within: float = TIMEOUT) -> None:
    """Poll a condition with a deadline (state the server updates without telling the client)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the registry has no change notification to wait on
            await asyncio.sleep(0.01)


def make_settings(**overrides: Any) -> ServerSettings:
    base: dict[str, Any] = {"stop_grace": 0.5, "max_resource_names": 100}
    base.update(overrides)
    return ServerSettings(**base)
