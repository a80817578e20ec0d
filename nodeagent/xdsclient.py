"""A delta ADS client for the agent's own resource types (or any types a test names).

One stream at a time. The node id goes on the first request of each stream; every type is a wildcard
subscription. Each response is applied through a callback before it is ACKed; when the callback raises, the
response is NACKed with the error's message (the control plane shows it in CSDS) and the last applied
resources stay. On a new stream the client waits until every type has answered once, then applies them as
one update, so a reconnect never applies half a plan. What it holds survives reconnects and is announced in
`initial_resource_versions`, so the server resends only what changed meanwhile. Reconnects back off
exponentially with jitter; a stream that delivered a response resets the backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from controlplane.xds import typeurls
from nodeagent.errors import UpdateRejectedError, XdsClientError

log = logging.getLogger(__name__)

# grpc.aio's end-of-stream marker (missing from the stubs).
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
_INVALID_ARGUMENT: Final = grpc.StatusCode.INVALID_ARGUMENT.value[0]
# A NACK's message is for people reading CSDS: keep it readable and bounded.
_MAX_NACK_MESSAGE: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_multiplier: float = 2.0
    # Each delay is drawn from [delay * (1 - jitter), delay], so agents restarted together spread out.
    backoff_jitter: float = 0.5
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    user_agent: str = "nodemesh-agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedResource:
    name: str
    version: str
    resource: any_pb2.Any


Resources = Mapping[str, Mapping[str, ReceivedResource]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """What the client would hold after accepting a response (or, on a new stream, several)."""

    changed_types: frozenset[str]
    # Every subscribed type, by name: the changed types with the response applied, the rest as held.
    resources: Resources
    system_versions: Mapping[str, str]


ApplyUpdate = Callable[[Update], Awaitable[None]]


class TokenSource(Protocol):
    """Where the bearer token the client presents comes from (re-read on every connect: tokens rotate)."""

    def token(self) -> str: ...


class ConnectionObserver(Protocol):
    def connection_changed(self, connected: bool) -> None: ...

    def response_rejected(self, type_url: str, message: str) -> None: ...


class Backoff:
    """Exponential backoff with jitter; `reset()` after a healthy connection."""

    def __init__(self, settings: ClientSettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        s = self._settings
        base = min(s.backoff_max, s.backoff_initial * s.backoff_multiplier**self._attempt)
        self._attempt += 1
        return base * (1.0 - s.backoff_jitter * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0


def channel_options(settings: ClientSettings) -> list[tuple[str, Any]]:
    return [
        ("grpc.keepalive_time_ms", int(settings.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout * 1000)),
        ("grpc.primary_user_agent", settings.user_agent),
        # Our backoff decides when to retry; gRPC's own retries would hide a dead control plane.
        ("grpc.enable_retries", 0),
    ]


@dataclass(slots=True)
class _StreamSync:
    """Responses of a new stream held back until every type has answered once."""

    waiting_for: set[str]
    nonces: list[tuple[str, str]] = field(default_factory=list)  # (type_url, nonce) in arrival order


class XdsClient:
    """`await XdsClient(target=..., node_id=..., apply=...).run()` until cancelled."""

    def __init__(
        self,
        *,
        target: str,
        node_id: str,
        apply: ApplyUpdate,
        type_urls: Iterable[str],
        settings: ClientSettings | None = None,
        node_cluster: str = "nodemesh-agent",
        token: TokenSource | None = None,
        observer: ConnectionObserver | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.target = target
        self.node = base_pb2.Node(
            id=node_id, cluster=node_cluster, user_agent_name=(settings or ClientSettings()).user_agent
        )
        self.type_urls: tuple[str, ...] = tuple(type_urls)
        for type_url in self.type_urls:
            typeurls.message_class(type_url)  # an unknown type fails here, not on the wire
        self.settings = settings or ClientSettings()
        self._apply = apply
        self._token = token
        self._observer = observer
        self._backoff = Backoff(self.settings, rng or random.Random())
        self._sleep = sleep
        self._held: dict[str, dict[str, ReceivedResource]] = {t: {} for t in self.type_urls}
        self._system_versions: dict[str, str] = {}
        # What the server has sent on the current stream, including responses we refused.
        self._received: dict[str, dict[str, ReceivedResource]] = {t: {} for t in self.type_urls}
        self._received_versions: dict[str, str] = {}
        self.connected = False
        self._stream_received = False
        self.connects = 0
        self.received_resources = 0
        self.applied = 0
        self.rejected = 0
        self.last_rejection: str | None = None

    @property
    def resources(self) -> Resources:
        """What the client holds and has applied, per type."""
        return MappingProxyType({t: MappingProxyType(dict(named)) for t, named in self._held.items()})

    def held_versions(self, type_url: str) -> dict[str, str]:
        return {name: r.version for name, r in self._held.get(type_url, {}).items()}

    async def run(self) -> None:
        while True:
            self._stream_received = False
            try:
                await self._connect_once()
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "xds stream to %s ended: %s %s", self.target, exc.code().name, exc.details() or ""
                )
            except asyncio.InvalidStateError:
                # grpc.aio's answer to a write (an ACK) on a call the server ended meanwhile (it shut down
                # while we applied an update): the stream is over, like any other.
                log.warning("xds stream to %s ended while the agent wrote to it", self.target)
            except XdsClientError as exc:
                log.warning("cannot connect to %s: %s", self.target, exc)
            finally:
                self._set_connected(False)
            if self._stream_received:
                self._backoff.reset()
            delay = self._backoff.next()
            log.info("reconnecting to the control plane at %s in %.2fs", self.target, delay)
            await self._sleep(delay)

    async def _connect_once(self) -> None:
        """One stream, until it ends (or raises AioRpcError)."""
        self.connects += 1
        metadata: list[tuple[str, str]] = []
        if self._token is not None:
            metadata.append(("authorization", f"Bearer {self._token.token()}"))
        channel = grpc.aio.insecure_channel(self.target, options=channel_options(self.settings))
        call: Any = None
        try:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.DeltaAggregatedResources(metadata=metadata or None)
            for index, type_url in enumerate(self.type_urls):
                request = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url,
                    resource_names_subscribe=["*"],
                    initial_resource_versions=self.held_versions(type_url),
                )
                if index == 0:
                    request.node.CopyFrom(self.node)
                await call.write(request)
            sync = _StreamSync(waiting_for=set(self.type_urls))
            # The server starts from what we announced: what we hold.
            self._received = {t: dict(n) for t, n in self._held.items()}
            self._received_versions = dict(self._system_versions)
            while True:
                response = await call.read()
                if response is _EOF:
                    log.warning("the control plane at %s ended the xds stream", self.target)
                    return
                if not self._stream_received:
                    self._stream_received = True
                    self._set_connected(True)
                    log.info("connected to the control plane at %s as node %s", self.target, self.node.id)
                await self._on_response(call, response, sync)
        finally:
            if call is not None:
                call.cancel()
            await channel.close(None)

    async def _on_response(self, call: Any, response: Any, sync: _StreamSync) -> None:
        type_url = str(response.type_url)
        if type_url not in self._held:
            # Not something we asked for: refuse it without touching what we hold.
            await self._nack(call, type_url, str(response.nonce), f"type {type_url!r} was not subscribed")
            return
        # What the server believes we have moves on with every response, applied or not (it never resends
        # a NACKed version): the next update builds on it, so a later fix of one resource completes it.
        self.received_resources += len(response.resources)
        _merge(self._received[type_url], response)
        self._received_versions[type_url] = str(response.system_version_info)
        if sync.waiting_for:
            sync.waiting_for.discard(type_url)
            sync.nonces.append((type_url, str(response.nonce)))
            if sync.waiting_for:
                return
            pending = list(sync.nonces)
            sync.nonces.clear()
        else:
            pending = [(type_url, str(response.nonce))]
        candidate = {t: dict(n) for t, n in self._received.items()}
        versions = dict(self._received_versions)
        update = Update(
            changed_types=frozenset(t for t, _ in pending),
            resources=MappingProxyType({t: MappingProxyType(n) for t, n in candidate.items()}),
            system_versions=MappingProxyType(versions),
        )
        try:
            await self._apply(update)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, UpdateRejectedError):
                log.exception("applying the plan failed unexpectedly")
            self.rejected += 1
            self.last_rejection = message
            for pending_type, nonce in pending:
                await self._nack(call, pending_type, nonce, message)
            return
        self._held = candidate
        self._system_versions = versions
        self.applied += 1
        self.last_rejection = None
        for pending_type, nonce in pending:
            await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=pending_type, response_nonce=nonce))

    async def _nack(self, call: Any, type_url: str, nonce: str, message: str) -> None:
        log.warning("xds NACK type=%s nonce=%s: %s", typeurls.short_name(type_url), nonce, message)
        if self._observer is not None:
            self._observer.response_rejected(type_url, message)
        request = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce)
        request.error_detail.code = _INVALID_ARGUMENT
        request.error_detail.message = message[:_MAX_NACK_MESSAGE]
        await call.write(request)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if self._observer is not None:
            self._observer.connection_changed(connected)


def _merge(named: dict[str, ReceivedResource], response: Any) -> None:
    for resource in response.resources:
        named[str(resource.name)] = ReceivedResource(
            name=str(resource.name), version=str(resource.version), resource=resource.resource
        )
    for name in response.removed_resources:
        named.pop(str(name), None)


class FileToken(TokenSource):
    """A token read from a file on every connect (projected service-account tokens are rotated in place)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __repr__(self) -> str:
        return f"FileToken({self._path})"  # never the token itself

    def token(self) -> str:
        try:
            return self._path.read_text().strip()
        except OSError as exc:
            raise XdsClientError(f"cannot read the token file {self._path}: {exc.strerror}") from exc
