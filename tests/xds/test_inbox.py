"""A stream reads its client's next requests only while none of its responses waits to be written: during a
large mesh's cold start every stream waits for the push budget, and parsed subscriptions (~10,000 names each)
held by all of them at once were the server's memory peak."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.xds.stream import _Inbox


class _Client:
    """grpc.aio's context as the inbox sees it: `read()` hands out queued requests, counting the reads."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.reads = 0

    async def read(self) -> Any:
        self.reads += 1
        return await self.queue.get()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_no_read_while_the_room_is_closed_then_reads_resume() -> None:
    inbox, client = _Inbox(), _Client()
    reader = asyncio.create_task(inbox.read(client))  # type: ignore[arg-type]
    try:
        client.queue.put_nowait("first")
        await _settle()
        assert list(inbox.requests) == ["first"]
        # The stream starts writing: the room closes. The read already waiting may still land, no more.
        inbox.room.clear()
        client.queue.put_nowait("second")
        client.queue.put_nowait("third")
        await _settle()
        assert list(inbox.requests) == ["first", "second"]
        reads = client.reads
        await _settle()
        assert client.reads == reads and client.queue.qsize() == 1
        # Written: the room opens and the client's next request is read.
        inbox.room.set()
        await _settle()
        assert list(inbox.requests) == ["first", "second", "third"]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_read_ahead_stays_bounded_while_requests_are_not_handled() -> None:
    inbox, client = _Inbox(), _Client()
    reader = asyncio.create_task(inbox.read(client))  # type: ignore[arg-type]
    try:
        for index in range(20):
            client.queue.put_nowait(index)
        await _settle()
        assert 0 < len(inbox.requests) <= 9  # the read-ahead, plus the read already in flight
        assert client.queue.qsize() >= 11
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
