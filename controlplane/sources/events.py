"""What sources hand to the control plane: batches of model events plus their current diagnostics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from controlplane.model.diagnostics import Diagnostic
from controlplane.model.objects import ModelEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceUpdate:
    """One batch from one source.

    `events` apply in order. `diagnostics`, when not None, is the source's complete current set and replaces
    the previous one (so a fixed file clears its diagnostics); None leaves it as it was. `synced` is True
    from the first batch that reflects a complete initial load onwards.
    """

    source: str
    events: tuple[ModelEvent, ...] = ()
    diagnostics: tuple[Diagnostic, ...] | None = None
    synced: bool = False


class SourceSink(Protocol):
    """Where a source publishes; awaiting it is the source's backpressure."""

    async def publish(self, update: SourceUpdate) -> None: ...


class QueueSink:
    """A SourceSink over a bounded asyncio.Queue, for consumers that pull."""

    def __init__(self, queue: asyncio.Queue[SourceUpdate]) -> None:
        self.queue = queue

    async def publish(self, update: SourceUpdate) -> None:
        await self.queue.put(update)


_: type[SourceSink] = QueueSink
