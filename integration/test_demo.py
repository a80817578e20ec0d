"""`make demo` runs `python -m demo`: it must succeed on this machine and show the split moving."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytestmark = pytest.mark.envoy


async def test_demo_shifts_traffic_live(envoy_binary: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "demo", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    assert "[demo] done: the split changed live" in text
    assert "[demo] after : " in text
