"""The few calls the supervisor makes on an Envoy's admin API (loopback HTTP) to drain it before stopping it.

Blocking `http.client` in a worker thread, not aiohttp: these calls run while the supervisor's task is being
cancelled, and a plain socket timeout cannot be confused with that cancellation.
"""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path
from typing import Final

from nodeagent.errors import AgentError

# Loopback: an admin that takes longer is stuck.
_TIMEOUT: Final = 2.0
_ACTIVE: Final = ".downstream_cx_active"
# Envoy's own admin listener, and the per-worker copies of every listener's gauges (summed in the listener's).
_ADMIN_PREFIX: Final = "listener.admin."
_WORKER_PART: Final = ".worker_"


class EnvoyAdminError(AgentError):
    """The admin API cannot be reached or answered with an error."""


def read_admin_address(path: Path) -> str | None:
    """`host:port` from Envoy's --admin-address-path file; None while it is missing or empty."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def count_downstream_connections(stats: str) -> int:
    """Open downstream connections over every listener but the admin one, from `/stats` text
    (`listener.127.0.0.1_15001.downstream_cx_active: 3`)."""
    total = 0
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if not name.startswith("listener.") or not name.endswith(_ACTIVE):
            continue
        if name.startswith(_ADMIN_PREFIX) or _WORKER_PART in name:
            continue
        try:
            total += int(value)
        except ValueError as exc:
            raise EnvoyAdminError(f"unexpected stats line {line!r}") from exc
    return total


def _request(address: str, method: str, path: str) -> str:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=_TIMEOUT)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise EnvoyAdminError(f"{method} {path} on envoy admin {address}: {exc}") from exc
    finally:
        connection.close()
    if response.status != 200:
        raise EnvoyAdminError(
            f"{method} {path} on envoy admin {address}: HTTP {response.status} {body.strip()[:200]}"
        )
    return body


async def post_admin(address: str, path: str) -> None:
    """POST `path` (`/healthcheck/fail`, `/drain_listeners`); EnvoyAdminError unless Envoy answers 200."""
    await asyncio.to_thread(_request, address, "POST", path)


async def downstream_connections(address: str) -> int:
    """How many downstream connections Envoy's listeners hold open (the admin's own excluded)."""
    # The regex keeps the answer small; names with a listener's address in them contain dots.
    stats = await asyncio.to_thread(
        _request, address, "GET", "/stats?filter=^listener%5C..*%5C.downstream_cx_active$"
    )
    return count_downstream_connections(stats)
