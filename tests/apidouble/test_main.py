"""`python -m apidouble` runs standalone and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp


async def test_standalone_server_serves_and_stops_on_sigint() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apidouble", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        async with aiohttp.ClientSession() as session, session.get(f"{match[0]}/version") as response:
            assert response.status == 200
            assert (await response.json())["major"] == "1"
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
