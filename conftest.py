"""Test-wide rules shared by tests/ and integration/.

- NODEMESH_REQUIRE_ALL=1 (set by .ci/run) turns every skip into a failure: tests that need root, eBPF or
  Envoy may skip on a developer's laptop with a printed reason, never in CI.
- Every async test fails if it leaves asyncio tasks running.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator

import pytest
import pytest_asyncio

REQUIRE_ALL = os.environ.get("NODEMESH_REQUIRE_ALL", "") not in ("", "0", "false")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under NODEMESH_REQUIRE_ALL=1, which forbids skips: {reason}"


@pytest_asyncio.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    # Give tasks cancelled during teardown one loop turn to finish.
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leaked:
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {[t.get_coro() for t in leaked]}")
