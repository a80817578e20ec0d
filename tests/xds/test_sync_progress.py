"""What a stream's status says about being in sync (the convergence tracker reads it): the serving loop
records the snapshot each stream evaluated, responses awaiting ACKs are counted, and a SotW stale request
never swallows a newer snapshot."""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from controlplane.xds import typeurls as t
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.sotw import SotwStream
from controlplane.xds.status import ProxyStatusRegistry, StreamStatus, Variant
from tests.xds import builders as b
from tests.xds.harness import XdsHarness, wait_until


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    def stream_progressed(self, stream: StreamStatus) -> None:
        self.log.append(("progressed", stream.info.stream_id))

    def stream_nacked(self, stream: StreamStatus) -> None:
        self.log.append(("nacked", stream.info.stream_id))

    def stream_closed(self, stream: StreamStatus) -> None:
        self.log.append(("closed", stream.info.stream_id))


def test_responses_awaiting_acks_are_counted_per_type_and_the_listener_hears_progress() -> None:
    registry, events = ProxyStatusRegistry(), Events()
    registry.listen(events)
    stream = registry.open_stream(node_id="n", cluster="c", node_bytes=b"", peer="p", variant=Variant.DELTA)
    pool = SnapshotCache().pool
    snapshot = b.mesh(pool, {"a": (1,)})
    stream.record_sent(t.CLUSTER, version="1", nonce="00000000-1", resources={}, size=1, delta_changes={})
    stream.record_sent(t.CLUSTER, version="2", nonce="00000000-2", resources={}, size=1, delta_changes={})
    stream.record_sent(t.ENDPOINT, version="1", nonce="00000000-3", resources={}, size=1, delta_changes={})
    assert stream.unsettled == 2
    stream.record_evaluated(snapshot)
    stream.record_evaluated(snapshot)  # the same one again: no news
    assert events.log == [("progressed", 1)]
    stream.record_ack(t.CLUSTER, nonce="00000000-1", version="1")  # an older response: CDS still owed
    assert stream.unsettled == 2
    stream.record_ack(t.CLUSTER, nonce="00000000-2", version="2")
    assert stream.unsettled == 1 and events.log == [("progressed", 1)]
    assert not stream.in_sync(snapshot)
    stream.record_ack(t.ENDPOINT, nonce="00000000-3", version="1")
    assert stream.unsettled == 0 and events.log[-1] == ("progressed", 1)
    assert stream.in_sync(snapshot) and not stream.in_sync(b.mesh(pool, {"a": (2,)}))
    stream.record_sent(t.CLUSTER, version="3", nonce="00000000-4", resources={}, size=1, delta_changes={})
    stream.record_nack(t.CLUSTER, nonce="00000000-4", version="3", message="no")
    assert stream.unsettled == 0 and events.log[-1] == ("nacked", 1)
    assert not stream.in_sync(snapshot)  # settled, but in error
    assert registry.streams_of("n") == (stream,)
    stream.close()
    assert registry.streams_of("n") == () and events.log[-1] == ("closed", 1)


def _request(type_url: str, names: tuple[str, ...] = (), nonce: str = "") -> Any:
    request = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=list(names), response_nonce=nonce
    )
    request.node.id = "n"
    return request


def test_a_sotw_stale_request_still_answers_a_snapshot_the_stream_had_not_seen() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("n", b.mesh(cache.pool, {"a": (1,)}))
    stream = SotwStream(cache)
    (cds,) = stream.on_request(_request(t.CLUSTER))
    (eds,) = stream.on_request(_request(t.ENDPOINT, ("a",)))
    assert stream.on_request(_request(t.CLUSTER, nonce=cds.nonce)) == []  # ACK
    cache.set_snapshot("n", b.mesh(cache.pool, {"a": (1, 2)}))
    # A stale CDS request is read before the stream loop offers the new snapshot: the new endpoints must go
    # out now, since the loop will not offer that snapshot again.
    pushes = stream.on_request(_request(t.CLUSTER, nonce="00000000-99"))
    assert [p.type_url for p in pushes] == [t.ENDPOINT]
    assert pushes[0].version != eds.version
    assert stream.snapshot is cache.get("n")


async def test_the_serving_loop_records_the_snapshot_each_stream_evaluated(xds: XdsHarness) -> None:
    first = b.mesh(xds.cache.pool, {"a": (1,)})
    xds.cache.set_snapshot("node-1", first)
    client = xds.delta()
    await client.request(t.CLUSTER)
    cds = await client.recv_applied()
    await wait_until(lambda: len(xds.registry) == 1)
    (status,) = xds.registry.statuses()
    await wait_until(lambda: status.evaluated is first)
    assert status.unsettled == 1 and not status.in_sync(first)
    await client.ack(cds)
    await wait_until(lambda: status.in_sync(first))
    # A snapshot that changes nothing this stream subscribes to: evaluated, nothing to ACK, in sync.
    second = b.mesh(xds.cache.pool, {"a": (2,)})
    xds.cache.set_snapshot("node-1", second)
    await wait_until(lambda: status.evaluated is second)
    assert status.in_sync(second) and status.unsettled == 0


def test_synced_types_lists_only_types_whose_last_response_was_acked_and_bytes_add_up() -> None:
    registry = ProxyStatusRegistry()
    stream = registry.open_stream(node_id="n", cluster="c", node_bytes=b"", peer="p", variant=Variant.SOTW)
    stream.record_subscribed(t.ROUTE)  # asked for, nothing sent: not synced
    stream.record_sent(t.CLUSTER, version="1", nonce="00000000-1", resources={}, size=10)
    stream.record_sent(t.LISTENER, version="1", nonce="00000000-2", resources={}, size=5)
    assert stream.synced_types() == frozenset()
    stream.record_ack(t.CLUSTER, nonce="00000000-1", version="1")
    assert stream.synced_types() == {t.CLUSTER}
    stream.record_sent(t.CLUSTER, version="2", nonce="00000000-3", resources={}, size=7)
    assert stream.synced_types() == frozenset()  # the newer CDS response is outstanding
    stream.record_nack(t.CLUSTER, nonce="00000000-3", version="2", message="no")
    stream.record_ack(t.LISTENER, nonce="00000000-2", version="1")
    assert stream.synced_types() == {t.LISTENER}  # a NACK is not synced
    assert stream.bytes_sent == 22
