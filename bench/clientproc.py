"""The simulated Envoys' process (`python -m bench.adsclients`), started and ended by the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from types import TracebackType

from bench.adsclients import ClientStats, Variant


class BenchError(Exception):
    """A benchmark could not complete (its clients died, or a wait timed out)."""


class ClientProcess:
    """`async with ClientProcess(address, clients, variant) as proc: await proc.wait_for(event, timeout)`.

    Leaving the block closes the child's stdin, which ends it; its counters are then in `stats`.
    """

    def __init__(
        self,
        address: str,
        clients: int,
        variant: Variant,
        *,
        node_prefix: str,
        first_index: int = 0,
        index_width: int = 5,
        lean: bool = False,
        memory_cap: int = 0,
    ) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "bench.adsclients",
            "--address",
            address,
            "--clients",
            str(clients),
            "--variant",
            variant.value,
            "--node-prefix",
            node_prefix,
            "--first-index",
            str(first_index),
            "--index-width",
            str(index_width),
            *(["--lean"] if lean else []),
            *(["--memory-cap", str(memory_cap)] if memory_cap else []),
        ]
        self._proc: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Task[int] | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self.stats: ClientStats | None = None

    async def __aenter__(self) -> ClientProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._exited = asyncio.create_task(self._proc.wait())
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _describe_exit(self) -> str:
        assert self._exited is not None
        tail = "\n".join(self._stderr) or "(no stderr)"
        return f"the ADS client process exited with status {self._exited.result()}:\n{tail}"

    async def wait_for(self, event: asyncio.Event, limit_s: float, what: str) -> None:
        """Wait for `event`; raise BenchError if the clients exit first or `limit_s` seconds pass."""
        assert self._exited is not None
        if event.is_set():
            return
        waiter = asyncio.create_task(event.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._exited}, timeout=limit_s, return_when="FIRST_COMPLETED"
            )
        finally:
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        if waiter in done:
            return
        if self._exited in done:
            raise BenchError(f"while waiting for {what}: {self._describe_exit()}")
        raise BenchError(f"timed out after {limit_s:.0f} s waiting for {what}")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc, exited = self._proc, self._exited
        assert proc is not None and exited is not None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(30):
                    line = await proc.stdout.readline()
                    await exited
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                raise BenchError("the ADS client process did not exit within 30 s; killed it") from None
            if line.strip():
                self.stats = ClientStats.from_json(line.decode())
            elif exc is None:
                raise BenchError(f"no counters from the clients: {self._describe_exit()}")
        finally:
            if not exited.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.gather(exited, return_exceptions=True)
            if self._stderr_reader is not None:
                await asyncio.gather(self._stderr_reader, return_exceptions=True)
