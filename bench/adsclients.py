"""Simulated Envoys: N grpc.aio ADS clients in one process that subscribe and ACK the way Envoy does.

`python -m bench.adsclients --address HOST:PORT --clients N --variant sotw|delta` runs until its stdin closes,
then prints one JSON line of counters (`ClientStats`) to stdout and exits.

Each client has its own channel, so its own TCP connection, as each Envoy has. Like Envoy, a client asks for
clusters and listeners as wildcards, then for endpoints and routes by the names those carry; it ACKs every
response (SotW: echoing version and nonce with its current names; delta: echoing the nonce), and it sends
its node on the first request of each type. ACK before subscribing follows Envoy, which pauses EDS/RDS
requests while it applies a CDS/LDS update and ACKs that first. Endpoint and route payloads are not decoded:
the server, not the client, is under test, and the clients share the machine with it.

`--lean` (large meshes): the names a cluster or listener payload refers to are read once per distinct
payload and remembered for every client of the process (SotW: by type and version_info; delta: by resource
name and version), so a thousand clients receiving the same 10,000 clusters parse them once, not a thousand
times. The clients still receive every byte, and read every response's version, nonce and resource names.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import resource
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
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
# `--lean` (a thousand clients in one process): no BDP probing, so each connection's receive window stays
# small and the server cannot park a whole cold start (tens of MB per client) in this process's buffers
# faster than it reads them.
LEAN_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (*CHANNEL_OPTIONS, ("grpc.http2.bdp_probe", 0))


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


class NameMemo:
    """Child names read from parent payloads, remembered across every client of a process (`--lean`).

    Keys are what identifies a payload's content: (type, SotW version_info) for a whole response, (type,
    name, version) for one delta resource. None: no memo, every payload is parsed (the default).
    """

    def __init__(self) -> None:
        self._responses: dict[tuple[str, str], frozenset[str]] = {}
        self._resources: dict[tuple[str, str, str], frozenset[str]] = {}
        self.parsed = 0

    def of_response(
        self, type_url: str, version: str, values: Callable[[], Iterable[bytes]]
    ) -> frozenset[str]:
        key = (type_url, version)
        names = self._responses.get(key)
        if names is None:
            self.parsed += 1
            names = self._responses[key] = frozenset(_CHILD[type_url][1](values()))
        return names

    def of_resource(
        self, type_url: str, name: str, version: str, value: Callable[[], bytes]
    ) -> frozenset[str]:
        key = (type_url, name, version)
        names = self._resources.get(key)
        if names is None:
            self.parsed += 1
            names = self._resources[key] = frozenset(_CHILD[type_url][1]((value(),)))
        return names


def _payload(item: Any) -> bytes:
    return bytes(item.resource.value)


def _resource_values(data: bytes) -> list[bytes]:
    return [r.value for r in discovery_pb2.DiscoveryResponse.FromString(data).resources]


_SOTW_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_RESPONSE_FIELDS = discovery_pb2.DiscoveryResponse.DESCRIPTOR.fields_by_name
_HEADER_FIELDS = {_RESPONSE_FIELDS[name].number: name for name in ("version_info", "type_url", "nonce")}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def sotw_header(data: bytes) -> dict[str, str]:
    """version_info, type_url and nonce of an encoded DiscoveryResponse, walking its top-level fields only
    until all three are seen (this server writes them before the resources, so the walk is short)."""
    found: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end and len(found) < len(_HEADER_FIELDS):
        tag, pos = _read_varint(data, pos)
        wire = tag & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
            continue
        if wire != 2:
            raise ValueError(f"unexpected wire type {wire} in a DiscoveryResponse")
        length, pos = _read_varint(data, pos)
        name = _HEADER_FIELDS.get(tag >> 3)
        if name is not None:
            found[name] = data[pos : pos + length].decode()
        pos += length
    return found


class SotwEnvoy:
    def __init__(
        self, channel: grpc.aio.Channel, node: Any, stats: ClientStats, memo: NameMemo | None = None
    ) -> None:
        if memo is None:
            self._call: Any = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        else:
            # Lean: responses arrive as bytes; only their header is read, the rest on a memo miss.
            self._call = channel.stream_stream(
                _SOTW_METHOD,
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=None,
            )(None)
        self._node = node
        self._stats = stats
        self._memo = memo
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
        while True:
            response = await self._call.read()
            if response is _EOF:
                return
            await self._handle(response)
            # Not held while waiting for the next one: a thousand clients each keeping a 10 MB response
            # would be the benchmark's memory, not the server's.
            del response

    async def _handle(self, response: Any) -> None:
        if isinstance(response, bytes):
            header = sotw_header(response)
            type_url, version, nonce = header["type_url"], header["version_info"], header["nonce"]
        else:
            type_url, version, nonce = str(response.type_url), str(response.version_info), str(response.nonce)
        self._stats.count_response(type_url)
        self._versions[type_url] = version
        self._nonces[type_url] = nonce
        await self._request(type_url)
        child = _CHILD.get(type_url)
        if child is not None:
            child_type, read_names = child
            if self._memo is None:
                names = sorted(read_names(r.value for r in response.resources))
            else:
                found = self._memo.of_response(
                    type_url, version, functools.partial(_resource_values, response)
                )
                names = sorted(found)
            if names != self._names.get(child_type):
                self._names[child_type] = names
                await self._request(child_type)

    def cancel(self) -> None:
        self._call.cancel()


class DeltaEnvoy:
    def __init__(
        self, channel: grpc.aio.Channel, node: Any, stats: ClientStats, memo: NameMemo | None = None
    ) -> None:
        self._call: Any = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        self._node = node
        self._stats = stats
        self._memo = memo
        self._started: set[str] = set()
        # Per parent type: resource name -> the child names it needs.
        self._refs: dict[str, dict[str, AbstractSet[str]]] = {typeurls.CLUSTER: {}, typeurls.LISTENER: {}}
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
        while True:
            response = await self._call.read()
            if response is _EOF:
                return
            await self._handle(response)
            del response  # as SotwEnvoy.run

    async def _handle(self, response: Any) -> None:
        type_url = str(response.type_url)
        self._stats.count_response(type_url)
        await self._request(type_url, nonce=str(response.nonce))
        child = _CHILD.get(type_url)
        if child is None:
            return
        child_type, read_names = child
        refs = self._refs[type_url]
        memo = self._memo
        for item in response.resources:
            if memo is None:
                refs[str(item.name)] = read_names((item.resource.value,))
            else:
                # The payload is read only if this (name, version) was never seen by this process.
                refs[str(item.name)] = memo.of_resource(
                    type_url, str(item.name), str(item.version), functools.partial(_payload, item)
                )
        for name in response.removed_resources:
            refs.pop(str(name), None)
        wanted: set[str] = set().union(*refs.values()) if refs else set()
        held = self._subscribed[child_type]
        subscribe, unsubscribe = sorted(wanted - held), sorted(held - wanted)
        if subscribe or unsubscribe:
            self._subscribed[child_type] = wanted
            await self._request(child_type, subscribe=subscribe, unsubscribe=unsubscribe)

    def cancel(self) -> None:
        self._call.cancel()


def node_id(prefix: str, index: int, width: int = 5) -> str:
    return f"{prefix}{index:0{width}d}"


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
    address: str,
    count: int,
    variant: Variant,
    *,
    node_prefix: str,
    until: asyncio.Future[None],
    first_index: int = 0,
    index_width: int = 5,
    lean: bool = False,
) -> ClientStats:
    """Run `count` clients against `address` until `until` completes; their counters."""
    stats = ClientStats(clients=count)
    started = time.monotonic()
    cpu_before = _cpu_seconds()
    options = LEAN_CHANNEL_OPTIONS if lean else CHANNEL_OPTIONS
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(count)]
    kind = SotwEnvoy if variant is Variant.SOTW else DeltaEnvoy
    memo = NameMemo() if lean else None
    clients = [
        kind(
            channel,
            base_pb2.Node(id=node_id(node_prefix, first_index + i, index_width), cluster="bench"),
            stats,
            memo,
        )
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
        args.address,
        args.clients,
        Variant(args.variant),
        node_prefix=args.node_prefix,
        until=until,
        first_index=args.first_index,
        index_width=args.index_width,
        lean=args.lean,
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
    parser.add_argument("--first-index", type=int, default=0, help="the first client's node index")
    parser.add_argument("--index-width", type=int, default=5, help="digits of the node index in its id")
    parser.add_argument(
        "--lean",
        action="store_true",
        help="read the names each distinct cluster/listener payload refers to once per process",
    )
    parser.add_argument(
        "--memory-cap", type=int, default=0, help="address-space limit in bytes (0: none): fail, not OOM"
    )
    args = parser.parse_args(argv)
    if args.memory_cap:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_cap, args.memory_cap))
    logging.basicConfig(level=logging.WARNING, format="adsclients %(levelname)s %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
