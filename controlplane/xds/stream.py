"""What SotW and delta streams share: the Push value, nonces, request validation, and the grpc.aio loop that
reads requests, watches the node's snapshot and writes pre-encoded responses."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc

from controlplane.xds import typeurls
from controlplane.xds.budget import PushBudget
from controlplane.xds.cache import SnapshotSource, SnapshotWatch
from controlplane.xds.errors import InvalidRequestError
from controlplane.xds.metrics import XdsMetrics
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ProxyStatusRegistry, StreamStatus, Variant

logger = logging.getLogger(__name__)

S = TypeVar("S")

# The stubs lack grpc.aio.EOF: what context.read() returns once the client half-closes.
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]

_NONCE_SYNTAX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{1,16}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Push:
    """One encoded response, with what it carried for logs, metrics and status."""

    type_url: str
    version: str
    nonce: str
    # The encoded response in pieces: the header, then the body (resource fragments, or a whole set's
    # shared tuple of them, kept by reference: a thousand streams waiting to send the same 10,000
    # resources must not each hold a copy of the list). Joined only once the push holds a share of the
    # budget, so a push to many streams never holds every stream's bytes at once.
    header: bytes
    body: tuple[bytes, ...]
    # Names and versions the client holds for this type once it applies the response.
    holds: Mapping[str, str]
    resource_count: int
    removed: tuple[str, ...] = ()
    # Delta: what this response changed (None: removed). SotW: the resources it carried.
    changes: Mapping[str, str | None] | None = None
    # Delta: the client then holds exactly `changes` (a whole set, shared by reference, never mutated).
    replaces: bool = False

    @property
    def size(self) -> int:
        return len(self.header) + sum(map(len, self.body))

    def encode(self) -> bytes:
        return b"".join((self.header, *self.body))


class Nonces:
    """Nonces of one stream: `<8 hex of stream>-<hex counter>`. Anything else echoed back is malformed."""

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix or secrets.token_hex(4)
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter:x}"


OpenStatus = Callable[[Any], StreamStatus]


class StreamMachine(Protocol):
    """The protocol state of one stream, free of gRPC so it can be driven directly."""

    variant: Variant
    node_id: str | None
    snapshot: Snapshot | None
    status: StreamStatus | None

    def on_request(self, request: Any) -> list[Push]: ...

    def on_snapshot(self, snapshot: Snapshot) -> list[Push]: ...


class StreamBase(Generic[S]):
    """What every ADS stream keeps whatever its variant: the node (named by the first request), the newest
    snapshot it answers from, its status record, and its per-type state `S`."""

    def __init__(
        self,
        snapshots: SnapshotSource,
        *,
        max_names: int = 100_000,
        open_status: OpenStatus | None = None,
        nonces: Nonces | None = None,
        metrics: XdsMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._snapshots = snapshots
        self._max_names = max_names
        self._open_status = open_status
        self._nonces = nonces or Nonces()
        self.node_id: str | None = None
        self.snapshot: Snapshot | None = None
        self.status: StreamStatus | None = None
        self._types: dict[str, S] = {}

    def _refresh(self, request: Any) -> bool:
        """Identify the node on the first request, then move to the node's newest snapshot; True when that
        is news to this stream (every type may have changed)."""
        if self.node_id is None:
            node = first_node(request)
            self.node_id = str(node.id)
            if self._open_status is not None:
                self.status = self._open_status(node)
        latest = self._snapshots.get(self.node_id)
        refreshed = latest is not self.snapshot
        self.snapshot = latest
        return refreshed


def check_type_url(type_url: str) -> None:
    if type_url not in typeurls.KNOWN_TYPES:
        served = ", ".join(sorted(typeurls.KNOWN_TYPES))
        raise InvalidRequestError(f"unknown type_url {type_url!r}; this server serves: {served}")


def check_nonce(nonce: str) -> None:
    if nonce and not _NONCE_SYNTAX.fullmatch(nonce):
        shown = nonce if len(nonce) <= 40 else nonce[:40] + "..."
        raise InvalidRequestError(f"malformed response_nonce {shown!r}: not a nonce this server issued")


def check_count(field_name: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidRequestError(f"{field_name} lists {count} names, more than the limit of {limit}")


def first_node(request: Any) -> Any:
    """The node of a stream's first request: it identifies the stream from then on."""
    if not request.HasField("node") or not request.node.id:
        raise InvalidRequestError("the first request on a stream must carry node.id")
    return request.node


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnv:
    """What the stream loop needs from the server."""

    snapshots: SnapshotSource
    registry: ProxyStatusRegistry
    metrics: XdsMetrics
    push_budget: PushBudget
    # How long a push may hold a permit while its client is slow to read; then it writes without one.
    push_permit_timeout: float
    closing: asyncio.Event
    # The tasks serving streams, so a stopping server can wait for their cleanup.
    active: set[asyncio.Task[Any]] = field(default_factory=set)
    clock: Callable[[], float] = time.monotonic


def open_status_for(env: StreamEnv, variant: Variant, peer: str) -> OpenStatus:
    def open_status(node: Any) -> StreamStatus:
        return env.registry.open_stream(
            node_id=str(node.id),
            cluster=str(node.cluster),
            node_bytes=node.SerializeToString(),
            peer=peer,
            variant=variant,
        )

    return open_status


# Requests read ahead of the one being handled: enough to overlap reading with writing, bounded so a
# flooding client only fills its own small buffer.
_READ_AHEAD = 8


class _Inbox:
    """What woke a stream: requests read so far (in order), a newer snapshot, or the server closing.

    Long-lived reader and watcher tasks feed it, so handling a request or a snapshot costs one wake-up,
    not new tasks and an asyncio.wait over them every time.
    """

    def __init__(self) -> None:
        self.requests: deque[Any] = deque()
        self.snapshot_changed = False
        self.news = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def read(self, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        """Read requests until EOF or an error, each passed on in order (the error as the last item)."""
        while True:
            if len(self.requests) >= _READ_AHEAD:
                self.room.clear()
            await self.room.wait()
            try:
                request = await context.read()
            except Exception as exc:  # handed to the stream loop, which raises it
                self.requests.append(_ReadFailed(exc))
                self.news.set()
                return
            self.requests.append(request)
            self.news.set()
            if request is _EOF:
                return

    async def watch(self, watch: SnapshotWatch) -> None:
        seen: Snapshot | None = None
        while True:
            seen = await watch.next(seen)
            self.snapshot_changed = True
            self.news.set()


@dataclass(frozen=True, slots=True)
class _ReadFailed:
    error: Exception


async def serve_stream(
    machine: StreamMachine, context: grpc.aio.ServicerContext[Any, bytes], env: StreamEnv
) -> None:
    """Run one ADS stream until the client goes away, the request is malformed, or the server closes."""
    variant = machine.variant.value
    env.metrics.connected.labels(variant).inc()
    current = asyncio.current_task()
    if current is not None and current not in env.active:
        # Tracked until the task itself ends, which for gRPC is after this handler returns.
        env.active.add(current)
        current.add_done_callback(env.active.discard)
    inbox = _Inbox()
    closing_task = asyncio.create_task(env.closing.wait())
    closing_task.add_done_callback(lambda _: inbox.news.set())
    tasks: list[asyncio.Task[Any]] = [closing_task, asyncio.create_task(inbox.read(context))]
    watching = False
    try:
        while True:
            await inbox.news.wait()
            inbox.news.clear()
            started = env.clock()
            if closing_task.done():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "xDS server shutting down")
            pushes: list[Push] = []
            while inbox.requests:
                request = inbox.requests.popleft()
                if request is _EOF:
                    return
                if isinstance(request, _ReadFailed):
                    raise request.error
                try:
                    pushes.extend(machine.on_request(request))
                except InvalidRequestError as exc:
                    env.metrics.rejected_streams.inc()
                    logger.warning(
                        "ending xDS stream: node=%s peer=%s: %s", machine.node_id, context.peer(), exc
                    )
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            inbox.room.set()
            if machine.node_id is not None and not watching:
                watching = True
                tasks.append(asyncio.create_task(inbox.watch(env.snapshots.watch(machine.node_id))))
            if inbox.snapshot_changed:
                inbox.snapshot_changed = False
                # The newest snapshot, which may be newer than the one that woke the watcher: never go back.
                snapshot = env.snapshots.get(machine.node_id or "")
                if snapshot is not None and snapshot is not machine.snapshot:
                    pushes.extend(machine.on_snapshot(snapshot))
            if pushes:
                # No reading while our responses wait for the budget: the client's next requests (after a
                # cold start's first responses, subscriptions of ~10,000 names each) stay compact in the
                # transport rather than parsed, 3-4 times larger, in every waiting stream at once.
                inbox.room.clear()
            for push in pushes:
                size = await _write(push, machine, context, env)
                env.metrics.observe_push(push.type_url, variant, size, env.clock() - started)
            # Only now, with its responses written (and so recorded as awaiting ACKs): the stream is in
            # sync with this snapshot once they are ACKed. An identity check when nothing changed.
            if machine.status is not None and machine.snapshot is not None:
                machine.status.record_evaluated(machine.snapshot)
            if len(inbox.requests) < _READ_AHEAD:
                inbox.room.set()
    finally:
        # Bookkeeping first: the awaits below may be interrupted by a second cancellation.
        env.metrics.connected.labels(variant).dec()
        if machine.status is not None:
            machine.status.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _write(
    push: Push, machine: StreamMachine, context: grpc.aio.ServicerContext[Any, bytes], env: StreamEnv
) -> int:
    """Write one push; the bytes written."""
    budget = env.push_budget
    size = push.size
    await budget.acquire(size)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            budget.release(size)

    # A client that does not read keeps its permit only this long, so it cannot starve the others; the
    # write itself goes on without one.
    timer = asyncio.get_running_loop().call_later(env.push_permit_timeout, release)
    try:
        # Encoded only now, holding a share of the budget: the responses built at once are bounded in
        # number and in bytes (ServerSettings.max_concurrent_pushes, max_push_bytes).
        data = push.encode()
        await context.write(data)
    finally:
        timer.cancel()
        release()
    if machine.status is not None:
        machine.status.record_sent(
            push.type_url,
            version=push.version,
            nonce=push.nonce,
            resources=push.holds,
            size=size,
            delta_changes=push.changes,
            delta_replaces=push.replaces,
        )
    # One line per stream and push is too many at INFO on a large mesh: the publisher logs each push once.
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "xds push node=%s type=%s version=%s resources=%d removed=%d bytes=%d nonce=%s variant=%s",
            machine.node_id,
            typeurls.short_name(push.type_url),
            push.version,
            push.resource_count,
            len(push.removed),
            size,
            push.nonce,
            machine.variant.value,
        )
    return size
