"""The node Envoy's supervisor: runs Envoy and restarts it hitlessly with Envoy's hot restart.

`await EnvoySupervisor(settings).run()` starts epoch 0 and runs until cancelled. A restart (`restart()`,
SIGHUP through the CLI, or a changed binary or bootstrap) starts epoch N + 1 beside epoch N: the new process
loads its config, takes the listen sockets from its parent over Envoy's hot-restart socket, starts accepting,
and tells the parent to drain; the parent exits by itself after --parent-shutdown-time-s. No connection is
refused, and the parent's connections (long-lived ones too) keep working until it exits. A crash restarts
Envoy as decided in nodeagent/envoy/epochs.py, with exponential backoff when it keeps crashing.

Every epoch is a child of the supervisor, so it runs in the supervisor's cgroup (and network namespace): the
cgroup matters, since the getsockopt program answering SO_ORIGINAL_DST is attached to Envoy's cgroup and
accepted sockets belong to the listener's cgroup. The caller puts the supervisor there before it starts.
Children get SIGTERM if the supervisor dies (PR_SET_PDEATHSIG) and are reaped by the event loop (no zombies).

Cancelling the supervisor drains before it stops: the newest epoch is told over its admin API to fail its
health checks (`/healthcheck/fail`: responses get `Connection: close`, HTTP/2 a GOAWAY, /ready says DRAINING)
and to stop its listeners (`/drain_listeners`: new connections are refused at once; established ones are
left alone). Then it gets up to shutdown_drain_time for its downstream connections to close, and every epoch
is stopped (SIGTERM, then SIGKILL after stop_grace). A second cancellation cuts the drain short.
Not `/drain_listeners?graceful`: that keeps accepting for --drain-time-s (the hot-restart drain, longer than a
shutdown drain), and connections accepted that late would be cut by the SIGTERM instead of refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol

from nodeagent.envoy.admin import EnvoyAdminError, downstream_connections, post_admin, read_admin_address
from nodeagent.envoy.command import (
    EnvoySettings,
    build_command,
    build_validate_command,
    shared_memory_path,
)
from nodeagent.envoy.epochs import Launch, StartReason, after_crash, can_hot_restart, crash_delay, on_request
from nodeagent.errors import AgentError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_PR_SET_PDEATHSIG: Final = 1
_VALIDATE_TIMEOUT: Final = 120.0
# Shutdown drain: how often Envoy is asked whether connections are left.
DRAIN_POLL_INTERVAL: Final = 0.25


class EnvoySupervisorError(AgentError):
    """The supervisor cannot run (it is already running)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochProcess:
    """One Envoy process the supervisor started."""

    epoch: int
    pid: int
    reason: StartReason
    started_at: float  # the supervisor's clock


class SupervisorObserver(Protocol):
    """Told what the supervisor does (metrics, tests). Must not block."""

    def epoch_started(self, process: EpochProcess) -> None: ...

    def epoch_exited(self, process: EpochProcess, returncode: int) -> None: ...

    def restart_refused(self, reason: StartReason, message: str) -> None: ...


class NoObserver(SupervisorObserver):
    def epoch_started(self, process: EpochProcess) -> None:
        pass

    def epoch_exited(self, process: EpochProcess, returncode: int) -> None:
        pass

    def restart_refused(self, reason: StartReason, message: str) -> None:
        pass


@dataclass(slots=True)
class _Child:
    info: EpochProcess
    process: asyncio.subprocess.Process
    # The supervisor stopped it (shutdown or cold restart): its exit is no crash.
    stopping: bool = False
    reported: bool = False


@dataclass(frozen=True, slots=True)
class _Exited:
    child: _Child
    returncode: int


@dataclass(frozen=True, slots=True)
class _Requested:
    reason: StartReason


def _fingerprint(path: Path, *, content: bool) -> object:
    """What identifies this version of a file: its bytes' digest (the bootstrap, small) or its stat (the
    binary, large); None while it does not exist (an upgrade in progress)."""
    try:
        if content:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _bind_to_supervisor() -> Callable[[], None]:
    """A preexec function: the child gets SIGTERM when the supervisor dies, so no Envoy outlives it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    supervisor = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it died before prctl took effect
            os._exit(1)

    return preexec


class EnvoySupervisor:
    """`await EnvoySupervisor(settings).run()` runs the node Envoy until cancelled; `restart()` hot restarts
    it."""

    def __init__(
        self,
        settings: EnvoySettings,
        *,
        observer: SupervisorObserver | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.settings = settings
        # What epochs are started with: the settings, plus an admin address file of our own when the caller
        # gave none (draining needs the admin address).
        self._launch_settings = settings
        self._observer = observer or NoObserver()
        self._clock = clock
        self._sleep = sleep
        self._events: asyncio.Queue[_Exited | _Requested] = asyncio.Queue(maxsize=64)
        self._alive: dict[int, _Child] = {}
        self._newest: _Child | None = None
        self._pending: StartReason | None = None
        self._failures = 0  # crashes in a row (backoff)
        self._hot_failures = 0  # failed hot restarts in a row (then start over cold)
        self._group: asyncio.TaskGroup | None = None
        self._preexec = _bind_to_supervisor()

    # What callers may look at.

    @property
    def current(self) -> EpochProcess | None:
        """The newest epoch, the one that accepts new connections once it is up."""
        return self._newest.info if self._newest is not None else None

    @property
    def epochs(self) -> tuple[EpochProcess, ...]:
        """Every live epoch, oldest first (older ones are draining)."""
        return tuple(sorted((c.info for c in self._alive.values()), key=lambda i: i.started_at))

    @property
    def pids(self) -> frozenset[int]:
        return frozenset(self._alive)

    # Requests.

    def restart(self, reason: StartReason = StartReason.REQUEST) -> None:
        """Hot restart Envoy (epoch + 1) with the current binary and bootstrap. Call from the event loop."""
        try:
            self._events.put_nowait(_Requested(reason))
        except asyncio.QueueFull:
            log.warning("restart request (%s) dropped: too many events queued", reason)

    def reopen_logs(self) -> None:
        """Forward SIGUSR1 (reopen access logs, for log rotation) to every live epoch."""
        for pid in self._alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    # The loop.

    async def run(self) -> None:
        if self._group is not None:
            raise EnvoySupervisorError("the supervisor is already running")
        with contextlib.ExitStack() as files:
            self._launch_settings = self._with_admin_address(files)
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    if self.settings.watch_interval is not None:
                        group.create_task(self._watch(self.settings.watch_interval), name="envoy-watch")
                    await self._start(Launch(epoch=0, reason=StartReason.INITIAL, cold=True))
                    while True:
                        event = await self._events.get()
                        if isinstance(event, _Exited):
                            await self._exited(event.child, event.returncode)
                        else:
                            await self._requested(event.reason)
            finally:
                self._group = None
                await self._stop_all()

    def _with_admin_address(self, files: contextlib.ExitStack) -> EnvoySettings:
        s = self.settings
        if s.admin_address_path is not None or s.shutdown_drain_time <= 0:
            return s
        try:
            directory = Path(files.enter_context(tempfile.TemporaryDirectory(prefix="nodemesh-envoy-")))
        except OSError as exc:
            log.warning("envoy: no admin address file (%s): shutdown will stop Envoy without draining", exc)
            return s
        return replace(s, admin_address_path=directory / "admin-address")

    async def _start(self, launch: Launch) -> None:
        s = self.settings
        delay = launch.delay
        while True:
            if delay > 0:
                log.info("envoy: waiting %.1fs before starting epoch %d (crash backoff)", delay, launch.epoch)
                await self._sleep(delay)
            if not launch.cold and not self._alive:
                # The parent exited while we waited: nothing to hand over from, start clean.
                launch = Launch(epoch=0, reason=launch.reason, cold=True)
            if launch.cold:
                await self._terminate(list(self._alive.values()), why="cold restart")
                self._remove_shared_memory()
            argv = build_command(self._launch_settings, launch.epoch)
            try:
                # Its own session: a terminal's Ctrl-C reaches the supervisor only, which stops every epoch.
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, preexec_fn=self._preexec, start_new_session=True
                )
            except OSError as exc:
                self._failures += 1
                delay = crash_delay(self._failures, initial=s.backoff_initial, maximum=s.backoff_max)
                delay = max(delay, s.backoff_initial)
                log.error("envoy: cannot start epoch %d (%s): %s", launch.epoch, launch.reason, exc)
                launch = Launch(epoch=0, reason=launch.reason, cold=True)
                continue
            break
        info = EpochProcess(
            epoch=launch.epoch, pid=process.pid, reason=launch.reason, started_at=self._clock()
        )
        child = _Child(info=info, process=process)
        self._alive[process.pid] = child
        self._newest = child
        assert self._group is not None
        self._group.create_task(self._wait(child), name=f"envoy-epoch-{launch.epoch}-wait")
        log.info(
            "envoy epoch %d started: pid=%d reason=%s hot=%s draining=%s",
            info.epoch,
            info.pid,
            info.reason,
            not launch.cold and launch.epoch > 0,
            [c.info.pid for c in self._alive.values() if c is not child],
        )
        self._observer.epoch_started(info)

    async def _wait(self, child: _Child) -> None:
        returncode = await child.process.wait()
        await self._events.put(_Exited(child, returncode))

    def _report_exit(self, child: _Child, returncode: int) -> None:
        self._alive.pop(child.info.pid, None)
        if not child.reported:
            child.reported = True
            self._observer.epoch_exited(child.info, returncode)

    async def _exited(self, child: _Child, returncode: int) -> None:
        info = child.info
        self._report_exit(child, returncode)
        if child.stopping:  # logged and reported by _terminate
            return
        if child is not self._newest:
            # The expected end of a parent: the new epoch told it to shut down after its drain.
            level = logging.INFO if returncode == 0 else logging.WARNING
            log.log(
                level,
                "envoy epoch %d exited after draining: pid=%d code=%d",
                info.epoch,
                info.pid,
                returncode,
            )
            await self._run_pending()
            return
        s = self.settings
        ran = self._clock() - info.started_at
        if ran >= s.stable_after:
            self._failures, self._hot_failures = 1, 0
        else:
            self._failures += 1
            if info.epoch > 0 and self._alive:
                self._hot_failures += 1
        self._newest = None
        launch = after_crash(
            crashed_epoch=info.epoch,
            older_alive=len(self._alive),
            hot_failures=self._hot_failures,
            max_hot_retries=s.max_hot_retries,
            delay=crash_delay(self._failures, initial=s.backoff_initial, maximum=s.backoff_max),
        )
        if launch.cold:
            self._hot_failures = 0
        log.warning(
            "envoy epoch %d exited unexpectedly: pid=%d code=%d ran=%.1fs; starting epoch %d (%s) in %.1fs%s",
            info.epoch,
            info.pid,
            returncode,
            ran,
            launch.epoch,
            "cold: connections of the crashed process are lost"
            if launch.cold
            else "hot, from the draining epoch",
            launch.delay,
            f" (crash {self._failures} in a row)" if self._failures > 1 else "",
        )
        await self._start(launch)

    async def _requested(self, reason: StartReason) -> None:
        newest = self._newest
        if newest is None:
            log.info(
                "envoy restart (%s) requested while no epoch runs: the next start uses the current files",
                reason,
            )
            return
        if on_request(newest_epoch=newest.info.epoch, alive=len(self._alive), reason=reason) is None:
            self._pending = reason
            log.info(
                "envoy restart (%s) deferred: %d epochs alive, waiting for the oldest to exit",
                reason,
                len(self._alive),
            )
            return
        if self.settings.validate:
            problem = await self._validate()
            if problem is not None:
                log.error(
                    "envoy restart (%s) refused, epoch %d keeps serving: %s",
                    reason,
                    newest.info.epoch,
                    problem,
                )
                self._observer.restart_refused(reason, problem)
                return
        launch = on_request(newest_epoch=newest.info.epoch, alive=len(self._alive), reason=reason)
        if launch is not None:  # unchanged unless an epoch exited while validating
            await self._start(launch)

    async def _run_pending(self) -> None:
        if self._pending is not None and can_hot_restart(len(self._alive)):
            reason, self._pending = self._pending, None
            await self._requested(reason)

    async def _validate(self) -> str | None:
        """None when the current binary and bootstrap pass `envoy --mode validate`, else why not."""
        argv = build_validate_command(self.settings)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=self._preexec,
            )
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc}"
        try:
            output, _ = await asyncio.wait_for(process.communicate(), _VALIDATE_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return f"validation did not finish in {_VALIDATE_TIMEOUT:.0f}s"
        finally:
            if process.returncode is None:  # cancelled
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.returncode == 0:
            return None
        tail = " | ".join(output.decode(errors="replace").strip().splitlines()[-5:])
        return f"validation failed (code {process.returncode}): {tail}"

    async def _watch(self, interval: float) -> None:
        """Poll the binary and the bootstrap; a change is an upgrade: hot restart onto it."""
        s = self.settings

        def versions() -> tuple[object, object]:
            return _fingerprint(s.binary, content=False), _fingerprint(s.bootstrap, content=True)

        seen = versions()
        while True:
            await asyncio.sleep(interval)
            now = versions()
            if now != seen and None not in now:
                changed = [
                    name for name, a, b in zip(("binary", "bootstrap"), seen, now, strict=True) if a != b
                ]
                log.info("envoy %s changed: upgrading by hot restart", " and ".join(changed))
                seen = now
                self.restart(StartReason.UPGRADE)

    # Stopping.

    async def _terminate(self, children: list[_Child], *, why: str) -> None:
        """SIGTERM, wait up to stop_grace, SIGKILL: every one of `children` is reaped when this returns."""
        live = [c for c in children if c.process.returncode is None]
        if not live:
            return
        log.info("envoy: stopping epochs %s (%s)", [(c.info.epoch, c.info.pid) for c in live], why)
        for child in live:
            child.stopping = True
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        waits = [asyncio.ensure_future(c.process.wait()) for c in live]
        try:
            _, lingering = await asyncio.wait(waits, timeout=self.settings.stop_grace)
            for child, wait in zip(live, waits, strict=True):
                if wait in lingering:
                    log.warning(
                        "envoy epoch %d (pid %d) ignored SIGTERM: killing it",
                        child.info.epoch,
                        child.info.pid,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
            await asyncio.gather(*waits)
        finally:
            for wait in waits:
                wait.cancel()
        for child in live:
            log.info(
                "envoy epoch %d stopped: pid=%d code=%s",
                child.info.epoch,
                child.info.pid,
                child.process.returncode,
            )
            self._report_exit(child, child.process.returncode if child.process.returncode is not None else -1)

    async def _stop_all(self) -> None:
        try:
            await self._drain()
        finally:
            # Also after a second cancellation cut the drain short; that CancelledError then propagates.
            children = list(self._alive.values())
            self._newest = None
            await self._terminate(children, why="shutdown")
            self._alive.clear()
            self._remove_shared_memory()
            log.info("envoy supervisor stopped")

    async def _drain(self) -> None:
        """Fail health checks and stop accepting on the newest epoch, then wait up to shutdown_drain_time
        for its downstream connections to close. Older epochs are draining already (a hot restart)."""
        period = self.settings.shutdown_drain_time
        newest = self._newest
        if period <= 0 or newest is None or newest.process.returncode is not None:
            return
        epoch = newest.info.epoch
        path = self._launch_settings.admin_address_path
        address = read_admin_address(path) if path is not None else None
        if address is None:
            log.warning("envoy epoch %d: admin address unknown, stopping it without draining", epoch)
            return
        try:
            for endpoint in ("/healthcheck/fail", "/drain_listeners"):
                await post_admin(address, endpoint)
        except EnvoyAdminError as exc:
            log.warning("envoy epoch %d: cannot drain, stopping it at once: %s", epoch, exc)
            return
        log.info(
            "envoy epoch %d draining: health checks fail, new connections refused; up to %.1fs for open ones",
            epoch,
            period,
        )
        # Counted polls, not a clock: the wait is bounded even when a test's clock stands still.
        polls = max(1, math.ceil(period / DRAIN_POLL_INTERVAL))
        open_connections: int | None = None
        for _ in range(polls):
            if newest.process.returncode is not None:
                log.info("envoy epoch %d exited while draining", epoch)
                return
            try:
                open_connections = await downstream_connections(address)
            except EnvoyAdminError as exc:
                log.warning("envoy epoch %d: drain progress unknown: %s", epoch, exc)
            if open_connections == 0:
                log.info("envoy epoch %d drained: no downstream connection left", epoch)
                return
            await self._sleep(min(DRAIN_POLL_INTERVAL, period))
        log.info(
            "envoy epoch %d: drain period (%.1fs) over with %s downstream connections open",
            epoch,
            period,
            "unknown" if open_connections is None else open_connections,
        )

    def _remove_shared_memory(self) -> None:
        """Envoy never removes its shared memory: do it once no epoch uses it (epoch 0 also replaces it)."""
        if self._alive:
            return
        with contextlib.suppress(FileNotFoundError):
            shared_memory_path(self.settings.base_id).unlink()
