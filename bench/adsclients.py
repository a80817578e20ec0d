"""Simulated Envoys: N grpc.aio ADS clients in one process that subscribe and ACK the way Envoy does.

`python -m bench.adsclients --address HOST:PORT --clients N --variant sotw|delta` runs until its stdin closes,
then prints one JSON line of counters (`ClientStats`) to stdout and exits.

Each client has its own channel, so its own TCP connection, as each Envoy has. Like Envoy, a client asks for
clusters and listeners as wildcards, then for endpoints and routes by the names those carry; it ACKs every
response (SotW: echoing version and nonce with its current names; delta: echoing the nonce), and it sends
its node on the first request of each type. ACK before subscribing follows Envoy, which pauses EDS/RDS
requests while it applies a CDS/LDS update and ACKs that first. Endpoint and route payloads are not decoded:
the server, not the client, is under test, and the clients share the machine with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.xds import typeurls
from controlplane.xds.resource import resource_refs

logger = logging.getLogger(__name__)

# The stubs lack grpc.aio.EOF.
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # One connection per client: without this, channels to the same target share one subchannel.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", -1),
)


class Variant(StrEnum):
    SOTW = "sotw"
    DELTA = "delta"


@dataclass(slots=True, kw_only=True)
class ClientStats:
    """Counters over every client of the process, plus its CPU time."""

    clients: int = 0
    responses: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    streams_failed: int = 0
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def count_response(self, type_url: str) -> None:
        label = typeurls.short_name(type_url)
        self.responses[label] = self.responses.get(label, 0) + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> ClientStats:
        data = json.loads(line)
        return cls(
            clients=int(data["clients"]),
            responses={str(k): int(v) for k, v in data["responses"].items()},
            requests=int(data["requests"]),
            streams_failed=int(data["streams_failed"]),
            errors=[str(e) for e in data["errors"]],
            cpu_s=float(data["cpu_s"]),
            wall_s=float(data["wall_s"]),
        )


def eds_names(clusters: Iterable[bytes]) -> set[str]:
    """The EDS service names the given serialized Clusters need."""
    names: set[str] = set()
    for value in clusters:
        names |= resource_refs(cluster_pb2.Cluster.FromString(value))
    return names


def rds_names(listeners: Iterable[bytes]) -> set[str]:
    """The RDS route names the given serialized Listeners need."""
    names: set[str] = set()
    for value in listeners:
        names |= resource_refs(listener_pb2.Listener.FromString(value))
    return names


# The type a parent type's resources name, and how to read those names.
_CHILD = {typeurls.CLUSTER: (typeurls.ENDPOINT, eds_names), typeurls.LISTENER: (typeurls.ROUTE, rds_names)}


class SotwEnvoy:
    def __init__(self, channel: grpc.aio.Channel, node: Any, stats: ClientStats) -> None:
        self._call: Any = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        self._node = node
        self._stats = stats
        self._started: set[str] = set()
        self._names: dict[str, list[str]] = {}
        self._versions: dict[str, str] = {}
        self._nonces: dict[str, str] = {}

    async def _request(self, type_url: str) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=self._names.get(type_url, ()),
            version_info=self._versions.get(type_url, ""),
            response_nonce=self._nonces.get(type_url, ""),
        )
        if type_url not in self._started:
            self._started.add(type_url)
            request.node.CopyFrom(self._node)
        self._stats.requests += 1
        await self._call.write(request)

    async def run(self) -> None:
        for type_url in (typeurls.CLUSTER, typeurls.LISTENER):
            await self._request(type_url)
        while (response := await self._call.read()) is not _EOF:
            type_url = str(response.type_url)
            self._stats.count_response(type_url)
            self._versions[type_url] = str(response.version_info)
            self._nonces[type_url] = str(response.nonce)
            await self._request(type_url)
            child = _CHILD.get(type_url)
            if child is not None:
                child_type, read_names = child
                names = sorted(read_names(r.value for r in response.resources))
                if names != self._names.get(child_type):
                    self._names[child_type] = names
                    await self._request(child_type)

    def cancel(self) -> None:
        self._call.cancel()


class DeltaEnvoy:
    def __init__(self, channel: grpc.aio.Channel, node: Any, stats: ClientStats) -> None:
        self._call: Any = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        self._node = node
        self._stats = stats
        self._started: set[str] = set()
        # Per parent type: resource name -> the child names it needs.
        self._refs: dict[str, dict[str, set[str]]] = {typeurls.CLUSTER: {}, typeurls.LISTENER: {}}
        self._subscribed: dict[str, set[str]] = {typeurls.ENDPOINT: set(), typeurls.ROUTE: set()}

    async def _request(
        self,
        type_url: str,
        *,
        nonce: str = "",
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            response_nonce=nonce,
            resource_names_subscribe=subscribe,
            resource_names_unsubscribe=unsubscribe,
        )
        if type_url not in self._started:
            self._started.add(type_url)
            request.node.CopyFrom(self._node)
        self._stats.requests += 1
        await self._call.write(request)

    async def run(self) -> None:
        for type_url in (typeurls.CLUSTER, typeurls.LISTENER):
            await self._request(type_url)
        while (response := await self._call.read()) is not _EOF:
            type_url = str(response.type_url)
            self._stats.count_response(type_url)
            await self._request(type_url, nonce=str(response.nonce))
            child = _CHILD.get(type_url)
            if child is None:
                continue
            child_type, read_names = child
            refs = self._refs[type_url]
            for item in response.resources:
                refs[str(item.name)] = read_names((item.resource.value,))
            for name in response.removed_resources:
                refs.pop(str(name), None)
            wanted = set().union(*refs.values()) if refs else set()
            held = self._subscribed[child_type]
            subscribe, unsubscribe = sorted(wanted - held), sorted(held - wanted)
            if subscribe or unsubscribe:
                self._subscribed[child_type] = wanted
                await self._request(child_type, subscribe=subscribe, unsubscribe=unsubscribe)

    def cancel(self) -> None:
        self._call.cancel()


def node_id(prefix: str, index: int) -> str:
    return f"{prefix}{index:05d}"


async def _run_one(client: SotwEnvoy | DeltaEnvoy, stats: ClientStats) -> None:
    try:
        await client.run()
    except asyncio.CancelledError:
        raise
    except grpc.aio.AioRpcError as exc:
        stats.streams_failed += 1
        if len(stats.errors) < 10:
            stats.errors.append(f"{exc.code().name}: {exc.details()}")


async def run_clients(
    address: str, count: int, variant: Variant, *, node_prefix: str, until: asyncio.Future[None]
) -> ClientStats:
    """Run `count` clients against `address` until `until` completes; their counters."""
    stats = ClientStats(clients=count)
    started = time.monotonic()
    cpu_before = _cpu_seconds()
    channels = [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for _ in range(count)]
    kind = SotwEnvoy if variant is Variant.SOTW else DeltaEnvoy
    clients = [
        kind(channel, base_pb2.Node(id=node_id(node_prefix, i), cluster="bench"), stats)
        for i, channel in enumerate(channels)
    ]
    tasks = [asyncio.create_task(_run_one(client, stats)) for client in clients]
    try:
        await until
    finally:
        for client in clients:
            client.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(channel.close(None) for channel in channels), return_exceptions=True)
    stats.cpu_s = _cpu_seconds() - cpu_before
    stats.wall_s = time.monotonic() - started
    return stats


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    # The parent ends the run by closing our stdin (also when it dies), so no client outlives it.
    stdin_closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.buffer.read))
    until: asyncio.Future[None] = loop.create_future()

    def finish(_: object) -> None:
        if not until.done():
            until.set_result(None)

    stdin_closed.add_done_callback(finish)
    stats = await run_clients(
        args.address, args.clients, Variant(args.variant), node_prefix=args.node_prefix, until=until
    )
    sys.stdout.write(stats.to_json() + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.adsclients",
        description="Simulated Envoys: ADS clients that subscribe and ACK like Envoy, until stdin closes.",
    )
    parser.add_argument("--address", required=True, help="the xDS server, host:port")
    parser.add_argument("--clients", type=int, required=True, help="how many Envoys (one connection each)")
    parser.add_argument("--variant", choices=[v.value for v in Variant], default=Variant.SOTW.value)
    parser.add_argument("--node-prefix", default="node-", help="node ids are PREFIX00000, PREFIX00001, ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="adsclients %(levelname)s %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
