"""Epoch bookkeeping of the Envoy supervisor: which epoch to start next, and when (pure functions).

What a crash costs, by case (the supervisor logs which one it took):
- The newest epoch crashes while an older one still drains (a crash during a hot restart): the older one still
  holds the listen sockets, so the same epoch number is started again and takes them over: new connections
  wait in the kernel's accept queue meanwhile and none is refused. After `max_hot_retries` failed tries the
  supervisor starts over cold.
- The newest epoch crashes and no other is alive: nothing holds the listen sockets, so a new epoch 0 starts
  with fresh shared memory. Connections attempted until it listens are refused, and every connection the
  crashed process carried (long-lived ones included) is lost: that is the nature of a crash, not of the
  restart.
- A cold restart while older epochs live (hot retries exhausted) terminates them first: their connections go.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nodeagent.envoy.command import MAX_CONCURRENT_EPOCHS


class StartReason(StrEnum):
    """Why an epoch was started: a log field and a metric label."""

    INITIAL = "initial"
    REQUEST = "request"  # SIGHUP or restart()
    UPGRADE = "upgrade"  # the binary or the bootstrap changed
    CRASH = "crash"  # the newest epoch exited on its own


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    """The next epoch to start. `cold`: terminate every live epoch first and start over at epoch 0."""

    epoch: int
    reason: StartReason
    cold: bool
    delay: float = 0.0


def crash_delay(failures: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait before restarting after the `failures`-th crash in a row: none after the first (restore
    service at once), then initial, 2 x initial, ... up to maximum."""
    if failures <= 1:
        return 0.0
    return min(maximum, initial * 2.0 ** (failures - 2))


def after_crash(
    *, crashed_epoch: int, older_alive: int, hot_failures: int, max_hot_retries: int, delay: float
) -> Launch:
    """What to start after the newest epoch exited on its own.

    `hot_failures`: hot restarts that already failed in a row (the crashed one included when it was one)."""
    if older_alive > 0 and hot_failures < max_hot_retries:
        # The parent still listens for child `crashed_epoch` on its hot-restart socket.
        return Launch(epoch=crashed_epoch, reason=StartReason.CRASH, cold=False, delay=delay)
    return Launch(epoch=0, reason=StartReason.CRASH, cold=True, delay=delay)


def can_hot_restart(alive: int) -> bool:
    """A new epoch may join only while fewer than three epochs are alive (Envoy's socket numbering)."""
    return 0 < alive < MAX_CONCURRENT_EPOCHS


def on_request(*, newest_epoch: int | None, alive: int, reason: StartReason) -> Launch | None:
    """The hot restart to do for a request or an upgrade, or None to defer it (no epoch serves yet, or three
    are alive and the oldest must exit first)."""
    if newest_epoch is None or not can_hot_restart(alive):
        return None
    return Launch(epoch=newest_epoch + 1, reason=reason, cold=False)
