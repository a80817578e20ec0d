"""The agent's delta ADS client against a real XdsServer on 127.0.0.1:0 (or a unix socket)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from controlplane.xds import typeurls
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.server import ServerSettings, XdsServer
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.status import ConfigStatus, ProxyStatusRegistry, TypeStatus
from nodeagent.errors import PlanError
from nodeagent.plan import PLAN_TYPES, parse_plan
from nodeagent.xdsclient import Backoff, ClientSettings, TokenSource, Update, XdsClient
from tests.nodeagent.planbuilders import node_settings, service, snapshot, workload
from tests.running import running

NODE = "node-a"
TIMEOUT = 5.0
FAST = ClientSettings(backoff_initial=0.01, backoff_max=0.05)

Sleep = Callable[[float], Awaitable[None]]


async def wait_until(predicate: Callable[[], bool], within: float = TIMEOUT) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state the server and client update without notifying us
            await asyncio.sleep(0.01)


@dataclass
class Applier:
    """The agent's side of the callback: parses the plan, can be held or told to refuse."""

    updates: list[Update] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    applied: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, update: Update) -> None:
        await self.gate.wait()
        parse_plan(update.resources)  # raises PlanError for a bad plan: the client NACKs it
        self.updates.append(update)
        self.applied.set()

    async def next(self) -> Update:
        async with asyncio.timeout(TIMEOUT):
            await self.applied.wait()
        self.applied.clear()
        return self.updates[-1]


@dataclass
class ControlPlane:
    cache: SnapshotCache
    registry: ProxyStatusRegistry
    address: str

    def set(self, value: Snapshot) -> None:
        self.cache.set_snapshot(NODE, value)

    def type_status(self, type_url: str) -> TypeStatus | None:
        for stream in self.registry.streams():
            if stream.node_id == NODE and type_url in stream.types:
                return stream.types[type_url]
        return None


@contextlib.asynccontextmanager
async def serving(cache: SnapshotCache, address: str) -> AsyncIterator[ControlPlane]:
    registry = ProxyStatusRegistry()
    async with XdsServer(cache, registry, ServerSettings(stop_grace=0.2)) as server:
        (port,) = await server.listen([address])
        yield ControlPlane(cache, registry, f"127.0.0.1:{port}" if port else address)


@pytest_asyncio.fixture
async def controlplane() -> AsyncIterator[ControlPlane]:
    async with serving(SnapshotCache(), "127.0.0.1:0") as running:
        yield running


def unix_address(tmp_path: Path) -> str:
    """A unix socket keeps the address across the control plane's restart."""
    address = f"unix:{tmp_path / 'xds.sock'}"
    if len(address) > 100:
        pytest.skip("tmp_path too long for a unix socket")
    return address


async def synced(controlplane: ControlPlane) -> None:
    """Until the control plane has the client's ACK of the workloads."""
    await wait_until(
        lambda: (
            (s := controlplane.type_status(typeurls.WORKLOAD)) is not None and s.status is ConfigStatus.SYNCED
        )
    )


def plan_v1() -> Snapshot:
    return snapshot(
        node_settings(),
        service("web", ["198.19.128.10"], [80]),
        workload("u1", pid=1),
        workload("u2", pid=2),
    )


def new_client(
    address: str, applier: Applier, token: TokenSource | None = None, sleep: Sleep = asyncio.sleep
) -> XdsClient:
    return XdsClient(
        target=address,
        node_id=NODE,
        apply=applier,
        type_urls=PLAN_TYPES,
        settings=FAST,
        token=token,
        sleep=sleep,
    )


class ReconnectGate:
    """The client's sleep before a reconnect, held until the test allows one: the client reconnects exactly
    when the test says, never into a control plane that is stopping or not up yet."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._permits = asyncio.Semaphore(0)
        self._entered = asyncio.Condition()

    async def __call__(self, delay: float) -> None:
        async with self._entered:
            self.delays.append(delay)
            self._entered.notify_all()
        await self._permits.acquire()

    async def waiting(self, count: int) -> None:
        """Until the client has asked to reconnect `count` times in all."""
        async with asyncio.timeout(TIMEOUT), self._entered:
            await self._entered.wait_for(lambda: len(self.delays) >= count)

    def allow(self) -> None:
        """Let one reconnect happen."""
        self._permits.release()


async def test_first_update_carries_every_type_and_is_acked_only_after_it_is_applied(
    controlplane: ControlPlane,
) -> None:
    controlplane.set(plan_v1())
    applier = Applier()
    applier.gate.clear()  # hold the apply
    client = new_client(controlplane.address, applier)
    async with running(client):
        await wait_until(lambda: controlplane.type_status(typeurls.WORKLOAD) is not None)
        await asyncio.sleep(0.1)
        for type_url in PLAN_TYPES:
            status = controlplane.type_status(type_url)
            assert status is not None and status.status is ConfigStatus.STALE  # sent, not ACKed
        applier.gate.set()
        update = await applier.next()

        assert update.changed_types == set(PLAN_TYPES)  # one update for the whole plan
        assert set(update.resources[typeurls.WORKLOAD]) == {"u1", "u2"}
        await wait_until(
            lambda: all(
                (s := controlplane.type_status(t)) is not None and s.status is ConfigStatus.SYNCED
                for t in PLAN_TYPES
            )
        )
        assert client.connected
        assert client.held_versions(typeurls.WORKLOAD) == {
            name: r.version for name, r in plan_v1().of_type(typeurls.WORKLOAD).items()
        }


async def test_changes_and_removals_arrive_as_single_type_updates(controlplane: ControlPlane) -> None:
    controlplane.set(plan_v1())
    applier = Applier()
    client = new_client(controlplane.address, applier)
    async with running(client):
        await applier.next()
        controlplane.set(
            snapshot(node_settings(), service("web", ["198.19.128.10"], [80]), workload("u1", pid=1))
        )
        update = await applier.next()

        assert update.changed_types == {typeurls.WORKLOAD}
        assert set(update.resources[typeurls.WORKLOAD]) == {"u1"}
        assert set(client.resources[typeurls.WORKLOAD]) == {"u1"}


async def test_a_plan_that_cannot_be_applied_is_nacked_with_the_reason(controlplane: ControlPlane) -> None:
    controlplane.set(plan_v1())
    applier = Applier()
    client = new_client(controlplane.address, applier)
    async with running(client):
        await applier.next()
        good = client.held_versions(typeurls.WORKLOAD)
        controlplane.set(
            snapshot(
                node_settings(), service("web", ["198.19.128.10"], [80]), workload("bad", path="relative")
            )
        )

        def nacked() -> bool:
            status = controlplane.type_status(typeurls.WORKLOAD)
            return status is not None and status.status is ConfigStatus.ERROR

        await wait_until(nacked)
        status = controlplane.type_status(typeurls.WORKLOAD)
        assert status is not None and status.last_nack is not None
        assert "workload 'bad': needs a netns reference" in status.last_nack.message
        assert client.held_versions(typeurls.WORKLOAD) == good  # the last good plan stays
        assert client.rejected == 1 and client.last_rejection is not None

        controlplane.set(plan_v1())  # fixed: applied and ACKed again
        await applier.next()
        await synced(controlplane)


async def test_a_fix_after_a_nack_completes_the_refused_update(controlplane: ControlPlane) -> None:
    # The server never resends a NACKed version: a good resource that came with a bad one must be kept
    # (received, not applied) and applied once the bad one is fixed.
    base = (node_settings(), service("web", ["198.19.128.10"], [80]))
    controlplane.set(snapshot(*base, workload("u1", pid=1)))
    applier = Applier()
    client = new_client(controlplane.address, applier)
    async with running(client):
        await applier.next()
        controlplane.set(
            snapshot(*base, workload("u1", pid=1), workload("u3", pid=3), workload("bad", path="relative"))
        )
        await wait_until(lambda: client.rejected == 1)
        assert set(client.resources[typeurls.WORKLOAD]) == {"u1"}

        controlplane.set(
            snapshot(*base, workload("u1", pid=1), workload("u3", pid=3), workload("bad", pid=9))
        )
        update = await applier.next()
        assert set(update.resources[typeurls.WORKLOAD]) == {"u1", "u3", "bad"}
        assert set(client.resources[typeurls.WORKLOAD]) == {"u1", "u3", "bad"}


async def test_reconnect_resumes_with_initial_resource_versions(tmp_path: Path) -> None:
    address = unix_address(tmp_path)
    cache = SnapshotCache()
    cache.set_snapshot(NODE, plan_v1())
    applier = Applier()
    gate = ReconnectGate()
    client = new_client(address, applier, sleep=gate)
    async with running(client):
        async with serving(cache, address):
            await applier.next()
            received = client.received_resources
            assert received == len(plan_v1())
        await gate.waiting(1)  # the stream ended: the client waits to reconnect
        assert not client.connected and client.connects == 1
        # While the control plane is away, one workload changes.
        cache.set_snapshot(
            NODE,
            snapshot(
                node_settings(),
                service("web", ["198.19.128.10"], [80]),
                workload("u1", pid=1),
                workload("u2", pid=3),
            ),
        )
        async with serving(cache, address) as restarted:
            gate.allow()
            update = await applier.next()
            # Only the changed workload was sent again; what the client held was not.
            assert client.received_resources == received + 1
            assert update.changed_types == set(PLAN_TYPES)
            workload_u2 = update.resources[typeurls.WORKLOAD]["u2"]
            assert parse_plan(update.resources).workloads["u2"].netns.pid == 3
            assert workload_u2.version == cache.get(NODE).of_type(typeurls.WORKLOAD)["u2"].version  # type: ignore[union-attr]
            await synced(restarted)
            # One new stream carried the whole resume.
            assert client.connects == 2 and len(gate.delays) == 1
        await gate.waiting(2)  # the restarted control plane stopped; no reconnect is allowed
        assert client.connects == 2


async def test_a_control_plane_that_stops_while_an_update_is_applied_ends_the_stream_not_the_client(
    tmp_path: Path,
) -> None:
    address = unix_address(tmp_path)
    cache = SnapshotCache()
    cache.set_snapshot(NODE, plan_v1())
    applier = Applier()
    applier.gate.clear()  # the agent is still applying the first update...
    gate = ReconnectGate()
    client = new_client(address, applier, sleep=gate)
    async with running(client) as task:
        async with serving(cache, address):
            await wait_until(lambda: client.received_resources == len(plan_v1()))
        # ...when the control plane stops: the ACK that follows goes to a finished call.
        applier.gate.set()
        await gate.waiting(1)
        assert not task.done() and not client.connected
        assert len(applier.updates) == 1 and client.connects == 1
        # It reconnects and resumes like after any other cut.
        async with serving(cache, address) as restarted:
            gate.allow()
            await synced(restarted)
            assert client.connects == 2


async def test_reconnects_back_off_exponentially_with_jitter(tmp_path: Path) -> None:
    delays: list[float] = []
    enough = asyncio.Event()

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= 6:
            enough.set()
        await asyncio.sleep(0)

    settings = ClientSettings(
        backoff_initial=0.1, backoff_max=0.8, backoff_multiplier=2.0, backoff_jitter=0.5
    )
    client = XdsClient(
        target=f"unix:{tmp_path / 'nobody-listens.sock'}",
        node_id=NODE,
        apply=Applier(),
        type_urls=PLAN_TYPES,
        settings=settings,
        sleep=sleep,
        rng=random.Random(7),
    )
    async with running(client):
        async with asyncio.timeout(TIMEOUT):
            await enough.wait()
    bases = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    for delay, base in zip(delays, bases, strict=False):
        assert base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    assert not client.connected


def test_backoff_resets() -> None:
    backoff = Backoff(
        ClientSettings(backoff_initial=1.0, backoff_max=8.0, backoff_jitter=0.0), random.Random(1)
    )
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next() == 1.0


async def test_node_id_and_token_reach_the_server(controlplane: ControlPlane, tmp_path: Path) -> None:
    from nodeagent.xdsclient import FileToken

    token = tmp_path / "token"
    token.write_text("secret-token\n")
    controlplane.set(plan_v1())
    applier = Applier()
    client = new_client(controlplane.address, applier, token=FileToken(token))
    async with running(client):
        await applier.next()
        (stream,) = controlplane.registry.streams()
        assert stream.node_id == NODE
    assert "secret" not in repr(FileToken(token))


async def test_unknown_type_urls_are_refused_up_front() -> None:
    from controlplane.xds.errors import UnknownTypeUrlError

    with pytest.raises(UnknownTypeUrlError):
        XdsClient(target="127.0.0.1:1", node_id=NODE, apply=Applier(), type_urls=["type.googleapis.com/x.Y"])


def test_plan_errors_are_update_rejections() -> None:
    from nodeagent.errors import UpdateRejectedError

    assert issubclass(PlanError, UpdateRejectedError)
