"""How the supervisor runs Envoy: its settings and the command line of each epoch (pure).

Facts of Envoy 1.40's hot restart these functions encode (checked against the real binary):
- Every epoch must use the same `--base-id`: it names the shared-memory region (/dev/shm/envoy_shared_memory_
  <base id x 10>) and the abstract unix sockets (`@envoy_domain_socket_{parent,child}_<base id x 10 + epoch
  % 3>`) over which the new process takes the listen sockets from its parent. Abstract sockets are per network
  namespace, the shared memory per IPC namespace.
- Envoy numbers those sockets by epoch modulo 3: at most three epochs may be alive at once.
- Epoch 0 unlinks and recreates the shared memory; epoch N > 0 attaches to it and talks to epoch N - 1.
  Without `--skip-hot-restart-on-no-parent` an epoch N whose parent is gone retries `sendmsg` forever.
- An epoch that dies during its initialization leaves a flag in the shared memory, and every later epoch N > 0
  refuses to start ("previous envoy process is still initializing"): only a new epoch 0 recovers.
- Envoy never removes its shared memory, even on a clean exit.
- Listeners must keep their address and the worker count (`--concurrency`) must stay the same between epochs,
  or the child binds new sockets instead of inheriting the parent's (connections queued on a parent-only
  socket are reset when the parent exits).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from nodeagent.errors import SettingsError

# Not Envoy's default (0): the node Envoy shares the host network namespace (and may share its IPC namespace)
# with any other Envoy on the host, and equal base ids would collide on the hot-restart sockets.
DEFAULT_BASE_ID: Final = 15000
# Seconds requests in flight get on shutdown. Istio's sidecar default, and well inside Kubernetes' default
# termination grace (30 s) together with stop_grace.
DEFAULT_SHUTDOWN_DRAIN_TIME: Final = 5.0
MAX_BASE_ID: Final = 429_496_728  # Envoy multiplies the base id by 10 and keeps it in 32 bits
SHARED_MEMORY_DIR: Final = Path("/dev/shm")
# Envoy's hot-restart sockets are numbered epoch % 3.
MAX_CONCURRENT_EPOCHS: Final = 3

# Flags the supervisor owns: passing them as extra arguments would break the epoch bookkeeping.
_OWNED_FLAGS: Final = frozenset(
    {
        "-c",
        "--config-path",
        "--restart-epoch",
        "--base-id",
        "--use-dynamic-base-id",
        "--base-id-path",
        "--disable-hot-restart",
        "--skip-hot-restart-on-no-parent",
        "--drain-time-s",
        "--parent-shutdown-time-s",
        "--drain-strategy",
        "--concurrency",
        "--mode",
        "--log-path",
        "--admin-address-path",
    }
)


class DrainStrategy(StrEnum):
    """Envoy's `--drain-strategy`: how hard the old epoch pushes its connections away while draining."""

    GRADUAL = "gradual"
    IMMEDIATE = "immediate"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvoySettings:
    binary: Path
    bootstrap: Path
    base_id: int = DEFAULT_BASE_ID
    # None: Envoy's default (one worker per hardware thread). Fixed for the supervisor's lifetime on purpose.
    concurrency: int | None = None
    # Whole seconds. The old epoch drains for drain_time, and the new one tells it to exit
    # after parent_shutdown_time: long-lived connections of the old epoch live that long at most.
    drain_time: int = 45
    parent_shutdown_time: int = 60
    drain_strategy: DrainStrategy = DrainStrategy.GRADUAL
    log_path: Path | None = None
    log_level: str | None = None
    admin_address_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    # On shutdown, the newest epoch fails its health checks and stops accepting, then gets up to this many
    # seconds for the requests in flight to finish before it is stopped (at once once none is left open).
    # 0: stop at once.
    shutdown_drain_time: float = DEFAULT_SHUTDOWN_DRAIN_TIME
    # SIGTERM -> SIGKILL on shutdown and on a cold restart.
    stop_grace: float = 10.0
    # Crash loops: the first crash restarts at once, the following ones back off exponentially up to
    # backoff_max; an epoch that ran stable_after seconds resets the count.
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 10.0
    # Hot restarts retried while an older epoch is alive before giving up and starting over at epoch 0.
    max_hot_retries: int = 3
    # Poll the binary and the bootstrap for changes (an upgrade) this often; None: never.
    watch_interval: float | None = 2.0
    # Run `envoy --mode validate` on the new binary and bootstrap before a requested restart, so a bad
    # upgrade leaves the running epoch serving instead of poisoning the shared memory.
    validate: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.base_id <= MAX_BASE_ID:
            raise SettingsError(f"--base-id must be in 0..{MAX_BASE_ID}, got {self.base_id}")
        if self.concurrency is not None and self.concurrency < 1:
            raise SettingsError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.drain_time < 0:
            raise SettingsError(f"--drain-time must be >= 0, got {self.drain_time}")
        if self.parent_shutdown_time <= self.drain_time:
            raise SettingsError(
                f"--parent-shutdown-time ({self.parent_shutdown_time}s) must be longer than --drain-time "
                f"({self.drain_time}s): the old epoch is shut down before its drain would end"
            )
        if not 0 <= self.shutdown_drain_time < float("inf"):
            raise SettingsError(f"--shutdown-drain-time must be >= 0, got {self.shutdown_drain_time}")
        if self.stop_grace <= 0 or self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise SettingsError("stop grace and backoff must be > 0, and backoff max >= backoff initial")
        if self.max_hot_retries < 0:
            raise SettingsError("max_hot_retries must be >= 0")
        owned = sorted({arg.split("=", 1)[0] for arg in self.extra_args} & _OWNED_FLAGS)
        if owned:
            raise SettingsError(
                f"extra Envoy arguments may not set {', '.join(owned)}: the supervisor owns them"
            )


def shared_memory_path(base_id: int) -> Path:
    """The shared-memory region every epoch of one base id attaches to."""
    return SHARED_MEMORY_DIR / f"envoy_shared_memory_{base_id * 10}"


def build_command(settings: EnvoySettings, epoch: int) -> tuple[str, ...]:
    """Envoy's argv for one epoch; everything but the epoch is the same for every epoch."""
    if epoch < 0:
        raise ValueError(f"negative epoch {epoch}")
    argv = [
        str(settings.binary),
        "-c",
        str(settings.bootstrap),
        "--restart-epoch",
        str(epoch),
        "--base-id",
        str(settings.base_id),
        "--drain-time-s",
        str(settings.drain_time),
        "--parent-shutdown-time-s",
        str(settings.parent_shutdown_time),
        "--drain-strategy",
        str(settings.drain_strategy),
    ]
    if epoch > 0:
        # If the parent dies between our check and the handshake, start as a plain Envoy that binds its own
        # listeners, instead of retrying the handshake forever.
        argv.append("--skip-hot-restart-on-no-parent")
    if settings.concurrency is not None:
        argv += ["--concurrency", str(settings.concurrency)]
    if settings.log_path is not None:
        argv += ["--log-path", str(settings.log_path)]
    if settings.log_level is not None:
        argv += ["-l", settings.log_level]
    if settings.admin_address_path is not None:
        argv += ["--admin-address-path", str(settings.admin_address_path)]
    argv += settings.extra_args
    return tuple(argv)


def build_validate_command(settings: EnvoySettings) -> tuple[str, ...]:
    """`envoy --mode validate` for the current binary and bootstrap: touches no shared memory or socket."""
    return (
        str(settings.binary),
        "--mode",
        "validate",
        "-c",
        str(settings.bootstrap),
        "--disable-hot-restart",
        "-l",
        "error",
        *settings.extra_args,
    )
