"""The Envoy supervisor: epoch bookkeeping and argv as pure functions, then the process logic against a fake
Envoy executable (tests/nodeagent/fakeenvoy.py); the real Envoy is in integration/test_hot_restart.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from nodeagent.cli import parse_args
from nodeagent.envoy import EnvoySettings, EnvoySupervisor, EpochProcess, StartReason, build_command
from nodeagent.envoy.admin import EnvoyAdminError, count_downstream_connections, read_admin_address
from nodeagent.envoy.cli import envoy_settings_from, join_cgroup
from nodeagent.envoy.command import build_validate_command, shared_memory_path
from nodeagent.envoy.epochs import Launch, after_crash, can_hot_restart, crash_delay, on_request
from nodeagent.envoy.supervisor import DRAIN_POLL_INTERVAL
from nodeagent.errors import SettingsError
from tests.nodeagent.fakeenvoy import (
    STATE_ENV,
    Recorder,
    RecordingSleep,
    admin_calls,
    alive,
    starts,
    until,
    write_fake_envoy,
)

REPO = Path(__file__).resolve().parents[2]


def settings(**changes: object) -> EnvoySettings:
    base = EnvoySettings(binary=Path("/usr/bin/envoy"), bootstrap=Path("/etc/envoy.yaml"))
    return replace(base, **changes)  # type: ignore[arg-type]


# Pure: argv.


def test_every_epoch_gets_the_same_flags_but_its_epoch() -> None:
    s = settings(
        base_id=7, concurrency=2, drain_time=5, parent_shutdown_time=9, log_path=Path("/var/log/e.log")
    )

    first, third = build_command(s, 0), build_command(s, 3)

    assert first == (
        "/usr/bin/envoy",
        "-c",
        "/etc/envoy.yaml",
        "--restart-epoch",
        "0",
        "--base-id",
        "7",
        "--drain-time-s",
        "5",
        "--parent-shutdown-time-s",
        "9",
        "--drain-strategy",
        "gradual",
        "--concurrency",
        "2",
        "--log-path",
        "/var/log/e.log",
    )
    # Epoch > 0: the same, plus the fallback for a parent that died meanwhile.
    assert third[4] == "3"
    assert [a for a in third if a != "--skip-hot-restart-on-no-parent"] == [*first[:4], "3", *first[5:]]
    assert "--skip-hot-restart-on-no-parent" in third and "--skip-hot-restart-on-no-parent" not in first


def test_extra_arguments_come_last_and_may_not_take_the_supervisors_flags() -> None:
    s = settings(
        extra_args=("--service-node", "n1"), admin_address_path=Path("/run/admin"), log_level="debug"
    )
    assert build_command(s, 0)[-6:] == (
        "-l",
        "debug",
        "--admin-address-path",
        "/run/admin",
        "--service-node",
        "n1",
    )
    assert build_validate_command(s)[:6] == (
        "/usr/bin/envoy",
        "--mode",
        "validate",
        "-c",
        "/etc/envoy.yaml",
        "--disable-hot-restart",
    )
    for owned in ("--restart-epoch", "--base-id=3", "--disable-hot-restart", "--concurrency"):
        with pytest.raises(SettingsError, match="supervisor owns"):
            settings(extra_args=(owned, "1"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"drain_time": 10, "parent_shutdown_time": 10}, "must be longer than --drain-time"),
        ({"base_id": -1}, "--base-id"),
        ({"base_id": 429_496_729}, "--base-id"),
        ({"concurrency": 0}, "--concurrency"),
        ({"backoff_initial": 5.0, "backoff_max": 1.0}, "backoff"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings(**changes)


def test_the_shared_memory_region_is_named_by_ten_times_the_base_id() -> None:
    assert shared_memory_path(1234) == Path("/dev/shm/envoy_shared_memory_12340")


# Pure: which epoch next.


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 5.0), (50, 5.0)]
)
def test_the_first_crash_restarts_at_once_then_backoff_doubles_up_to_the_max(
    failures: int, delay: float
) -> None:
    assert crash_delay(failures, initial=0.5, maximum=5.0) == delay


@pytest.mark.parametrize(
    ("older_alive", "hot_failures", "expected"),
    [
        # A crash during a hot restart: the draining parent can hand its sockets over again to the same epoch.
        (1, 1, Launch(epoch=4, reason=StartReason.CRASH, cold=False, delay=1.5)),
        (2, 2, Launch(epoch=4, reason=StartReason.CRASH, cold=False, delay=1.5)),
        # Retries exhausted, or nobody left to hand over: start over at epoch 0.
        (1, 3, Launch(epoch=0, reason=StartReason.CRASH, cold=True, delay=1.5)),
        (0, 0, Launch(epoch=0, reason=StartReason.CRASH, cold=True, delay=1.5)),
    ],
)
def test_after_a_crash(older_alive: int, hot_failures: int, expected: Launch) -> None:
    launch = after_crash(
        crashed_epoch=4, older_alive=older_alive, hot_failures=hot_failures, max_hot_retries=3, delay=1.5
    )
    assert launch == expected


def test_a_request_starts_the_next_epoch_unless_none_runs_or_three_are_alive() -> None:
    assert on_request(newest_epoch=4, alive=1, reason=StartReason.UPGRADE) == Launch(
        epoch=5, reason=StartReason.UPGRADE, cold=False
    )
    assert on_request(newest_epoch=4, alive=2, reason=StartReason.REQUEST) is not None
    assert (
        on_request(newest_epoch=4, alive=3, reason=StartReason.REQUEST) is None
    )  # Envoy's sockets: epoch % 3
    assert on_request(newest_epoch=None, alive=0, reason=StartReason.REQUEST) is None
    assert [can_hot_restart(n) for n in range(5)] == [False, True, True, False, False]


# The process logic, against the fake Envoy.


class Fake:
    def __init__(self, state: Path, settings: EnvoySettings) -> None:
        self.state = state
        self.settings = settings
        self.recorder = Recorder()
        self.sleep = RecordingSleep()
        self.clock_now = 0.0

    def supervisor(self, **changes: object) -> EnvoySupervisor:
        s = replace(self.settings, **changes)  # type: ignore[arg-type]
        return EnvoySupervisor(s, observer=self.recorder, clock=lambda: self.clock_now, sleep=self.sleep)

    def starts(self) -> list[dict[str, object]]:
        return starts(self.state)

    def epochs_started(self) -> list[tuple[int, StartReason]]:
        return [(p.epoch, p.reason) for p in self.recorder.started]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fake:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv(STATE_ENV, str(state))
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text("static_resources: {}\n")
    s = EnvoySettings(
        binary=write_fake_envoy(tmp_path),
        bootstrap=bootstrap,
        base_id=random.randrange(100_000, 400_000_000),
        drain_time=0,
        parent_shutdown_time=1,
        stop_grace=2.0,
        backoff_initial=0.1,
        backoff_max=0.4,
        stable_after=3600.0,
        watch_interval=None,
    )
    return Fake(state, s)


@contextlib.asynccontextmanager
async def running(supervisor: EnvoySupervisor) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(supervisor.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert supervisor.pids == frozenset()


async def started(fake: Fake, count: int) -> None:
    """`count` epochs started and up (the fake recorded itself: its signal handlers are set)."""
    await until(lambda: len(fake.starts()) >= count, f"{count} epochs to start")


async def first_epoch(fake: Fake) -> EpochProcess:
    """Epoch 0, once it is up and the supervisor has reported it (a fast fake can record itself first)."""
    await started(fake, 1)
    await until(lambda: bool(fake.recorder.started), "the supervisor to report epoch 0")
    return fake.recorder.started[0]


async def test_a_restart_starts_the_next_epoch_and_the_parent_exits_when_its_child_says_so(
    fake: Fake,
) -> None:
    supervisor = fake.supervisor()
    async with running(supervisor):
        await started(fake, 1)
        first = supervisor.current
        assert first is not None and first.epoch == 0 and supervisor.pids == {first.pid}

        supervisor.restart()
        await started(fake, 2)
        second = supervisor.current
        assert second is not None and (second.epoch, second.reason) == (1, StartReason.REQUEST)
        assert supervisor.pids == {first.pid, second.pid}  # the parent drains beside its child

        await until(lambda: first.pid in fake.recorder.exited, "the parent to exit")
        assert fake.recorder.exited[first.pid] == 0
        assert supervisor.pids == {second.pid} and supervisor.current == second
        assert fake.epochs_started() == [(0, StartReason.INITIAL), (1, StartReason.REQUEST)]
    pids = [int(str(s["pid"])) for s in fake.starts()]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)  # stopped and reaped


async def test_a_crash_with_no_other_epoch_alive_starts_over_at_epoch_zero(fake: Fake) -> None:
    supervisor = fake.supervisor()
    async with running(supervisor):
        await started(fake, 1)
        supervisor.restart()
        await started(fake, 2)
        second = supervisor.current
        assert second is not None
        await until(lambda: len(supervisor.pids) == 1, "the parent to exit")

        os.kill(second.pid, signal.SIGKILL)

        await started(fake, 3)
        third = supervisor.current
        assert third is not None and (third.epoch, third.reason) == (0, StartReason.CRASH)
        assert fake.recorder.exited[second.pid] == -signal.SIGKILL
        assert fake.sleep.delays == []  # the first crash restarts at once
        await until(lambda: len(fake.starts()) == 3, "the fake to record its start")
        assert fake.starts()[-1]["epoch"] == 0
        assert "--skip-hot-restart-on-no-parent" not in fake.starts()[-1]["argv"]  # type: ignore[operator]


async def test_a_crash_during_a_hot_restart_retries_the_same_epoch_from_the_draining_parent(
    fake: Fake,
) -> None:
    supervisor = fake.supervisor(parent_shutdown_time=60)  # the parent stays through the test
    async with running(supervisor):
        await started(fake, 1)
        parent = supervisor.current
        assert parent is not None
        supervisor.restart()
        await started(fake, 2)
        child = supervisor.current
        assert child is not None and child.epoch == 1

        os.kill(child.pid, signal.SIGKILL)

        await started(fake, 3)
        retry = supervisor.current
        assert retry is not None and (retry.epoch, retry.reason) == (1, StartReason.CRASH)
        assert supervisor.pids == {parent.pid, retry.pid}  # the parent was left alone


async def test_repeated_hot_restart_failures_end_in_a_cold_start(fake: Fake) -> None:
    supervisor = fake.supervisor(parent_shutdown_time=60, max_hot_retries=2)
    async with running(supervisor):
        await started(fake, 1)
        parent = supervisor.current
        assert parent is not None
        (fake.state / "crash").touch()  # every new process exits at once
        supervisor.restart()
        await until(lambda: parent.pid in fake.recorder.exited, "the cold start to stop the parent")
        (fake.state / "crash").unlink()
        await until(lambda: supervisor.current is not None and len(supervisor.pids) == 1, "a stable epoch")

        epochs = fake.epochs_started()
        # Two hot tries of epoch 1, then epoch 0 from scratch (the parent stopped first).
        assert epochs[:4] == [
            (0, StartReason.INITIAL),
            (1, StartReason.REQUEST),
            (1, StartReason.CRASH),
            (0, StartReason.CRASH),
        ]
        assert fake.recorder.events.index(("exited", 0, parent.pid)) < fake.recorder.events.index(
            ("started", 0, fake.recorder.started[3].pid)
        )


async def test_a_crash_loop_backs_off_exponentially_and_recovers(fake: Fake) -> None:
    (fake.state / "crash").touch()
    supervisor = fake.supervisor()  # the fake clock never moves: no epoch ever counts as stable
    async with running(supervisor):
        await until(lambda: len(fake.sleep.delays) >= 4, "four backoff waits")
        (fake.state / "crash").unlink()
        await until(
            lambda: supervisor.current is not None and supervisor.current.pid not in fake.recorder.exited, ""
        )
        await until(lambda: len(supervisor.pids) == 1, "a running epoch")

    assert fake.sleep.delays[:4] == [0.1, 0.2, 0.4, 0.4]
    assert all(epoch == 0 for epoch, _ in fake.epochs_started())  # nothing to hand over from: always cold


async def test_a_fourth_epoch_waits_for_the_oldest_to_exit(fake: Fake) -> None:
    # Parents outlive the test unless it stops them: no race against their shutdown timer.
    supervisor = fake.supervisor(parent_shutdown_time=60)
    async with running(supervisor):
        await started(fake, 1)
        for count in (2, 3):
            supervisor.restart()
            await started(fake, count)
        await until(lambda: len(fake.recorder.started) == 3, "the supervisor to report three epochs")
        oldest = fake.recorder.started[0]
        assert len(supervisor.pids) == 3

        supervisor.restart()  # Envoy numbers its hot-restart sockets epoch % 3: must wait
        # The request is queued before the oldest's exit can be: it is handled while three are alive.
        os.kill(oldest.pid, signal.SIGTERM)  # the oldest's drain ends
        await started(fake, 4)
        await until(lambda: len(fake.recorder.started) == 4, "the supervisor to report the fourth epoch")

        events = fake.recorder.events
        fourth = fake.recorder.started[3]
        assert fourth.epoch == 3
        assert events.index(("exited", 0, oldest.pid)) < events.index(("started", 3, fourth.pid))


async def test_shutdown_kills_an_epoch_that_ignores_sigterm(fake: Fake) -> None:
    (fake.state / "ignore-term").touch()
    supervisor = fake.supervisor(stop_grace=0.3)
    async with running(supervisor):
        pid = (await first_epoch(fake)).pid
    assert fake.recorder.exited[pid] == -signal.SIGKILL
    assert not alive(pid)


async def test_a_restart_onto_an_invalid_bootstrap_is_refused_and_the_running_epoch_keeps_serving(
    fake: Fake,
) -> None:
    supervisor = fake.supervisor()
    async with running(supervisor):
        await started(fake, 1)
        fake.settings.bootstrap.write_text("invalid: [")

        supervisor.restart()
        await until(lambda: bool(fake.recorder.refused), "the restart to be refused")

        assert "invalid bootstrap" in fake.recorder.refused[0]
        assert len(fake.recorder.started) == 1 and len(supervisor.pids) == 1
        fake.settings.bootstrap.write_text("static_resources: {}\n")
        supervisor.restart()
        await started(fake, 2)


async def test_a_changed_bootstrap_is_an_upgrade(fake: Fake) -> None:
    supervisor = fake.supervisor(watch_interval=0.05)
    async with running(supervisor):
        await started(fake, 1)
        os.utime(fake.settings.bootstrap)  # touched, same content: no restart
        fake.settings.bootstrap.write_text("static_resources: {listeners: []}\n")
        await started(fake, 2)
        assert fake.epochs_started() == [(0, StartReason.INITIAL), (1, StartReason.UPGRADE)]


async def test_the_shared_memory_region_of_the_base_id_is_removed_on_shutdown(fake: Fake) -> None:
    region = shared_memory_path(fake.settings.base_id)
    supervisor = fake.supervisor()
    try:
        async with running(supervisor):
            await started(fake, 1)
            region.write_bytes(b"")  # what a real Envoy would leave behind
        assert not region.exists()
    finally:
        region.unlink(missing_ok=True)


def test_the_cli_runs_the_supervisor_hup_restarts_and_term_stops_everything(fake: Fake) -> None:
    s = fake.settings
    command = [
        sys.executable,
        "-m",
        "nodeagent",
        "envoy",
        "--bootstrap",
        str(s.bootstrap),
        "--envoy-binary",
        str(s.binary),
        "--base-id",
        str(s.base_id),
        "--drain-time",
        "0",
        "--parent-shutdown-time",
        "1",
        "--watch-interval",
        "0",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_sync(lambda: len(fake.starts()) == 1, "epoch 0")
        process.send_signal(signal.SIGHUP)
        wait_sync(lambda: len(fake.starts()) == 2, "epoch 1 after SIGHUP")
        assert [r["epoch"] for r in fake.starts()] == [0, 1]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "envoy epoch 1 started" in stderr and "reason=request" in stderr
    assert not any(alive(int(str(r["pid"]))) for r in fake.starts())


def wait_sync(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_cli_flags_become_settings() -> None:
    args = parse_args(
        [
            "envoy",
            "--bootstrap",
            "/b.yaml",
            "--envoy-binary",
            "/e",
            "--base-id",
            "9",
            "--concurrency",
            "2",
            "--",
            "--service-node",
            "n",
        ]
    )
    s = envoy_settings_from(args)
    assert (s.bootstrap, s.binary, s.base_id, s.concurrency) == (Path("/b.yaml"), Path("/e"), 9, 2)
    assert (s.drain_time, s.parent_shutdown_time, s.watch_interval) == (45, 60, 2.0)
    assert s.extra_args == ("--service-node", "n")


def test_joining_a_cgroup_writes_our_pid_to_its_procs_file(tmp_path: Path) -> None:
    cgroup = tmp_path / "nodemesh-envoy"  # a plain directory stands in for cgroupfs

    join_cgroup(cgroup)

    assert (cgroup / "cgroup.procs").read_text() == f"{os.getpid()}\n"
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="cannot join cgroup"):
        join_cgroup(tmp_path / "file" / "sub")


# Shutdown drain, against the fake's admin API.


def test_open_connections_are_counted_over_listeners_but_not_the_admin_or_per_worker_copies() -> None:
    stats = "\n".join(
        [
            "listener.127.0.0.1_15001.downstream_cx_active: 3",
            "listener.127.0.0.1_15001.worker_0.downstream_cx_active: 2",
            "listener.127.0.0.1_15001.worker_1.downstream_cx_active: 1",
            "listener.[__]_15008.downstream_cx_active: 4",
            "listener.admin.downstream_cx_active: 1",
            "listener.admin.main_thread.downstream_cx_active: 1",
            "listener.127.0.0.1_15001.downstream_cx_total: 90",
            "",
        ]
    )
    assert count_downstream_connections(stats) == 7
    assert count_downstream_connections("") == 0
    with pytest.raises(EnvoyAdminError, match="unexpected stats line"):
        count_downstream_connections("listener.x.downstream_cx_active: many")


def test_the_admin_address_is_read_from_envoys_file(tmp_path: Path) -> None:
    path = tmp_path / "admin"
    assert read_admin_address(path) is None
    path.write_text("")
    assert read_admin_address(path) is None  # Envoy has not written it yet
    path.write_text("127.0.0.1:40123\n")
    assert read_admin_address(path) == "127.0.0.1:40123"


def test_a_negative_shutdown_drain_time_is_refused() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(SettingsError, match="--shutdown-drain-time"):
            settings(shutdown_drain_time=bad)


async def stop_in_background(task: asyncio.Task[None], fake: Fake, pid: int) -> None:
    """Cancel the supervisor and wait for it to ask the epoch `pid` to drain."""
    task.cancel()
    drain = [{"pid": pid, "epoch": 0, "path": p} for p in ("/healthcheck/fail", "/drain_listeners")]
    await until(lambda: admin_calls(fake.state) == drain, "health checks failed, then listeners drained")


async def test_shutdown_fails_health_checks_stops_listeners_and_waits_for_open_connections(
    fake: Fake,
) -> None:
    (fake.state / "connections").write_text("2")
    supervisor = fake.supervisor(shutdown_drain_time=3600.0)
    task = asyncio.create_task(supervisor.run())
    try:
        epoch = await first_epoch(fake)
        argv = fake.starts()[0]["argv"]
        assert isinstance(argv, list) and "--admin-address-path" in argv  # one of its own: none was set
        admin_file = Path(argv[argv.index("--admin-address-path") + 1])

        await stop_in_background(task, fake, epoch.pid)
        # Connections are open: Envoy keeps running while it drains.
        await until(lambda: len(fake.sleep.delays) >= 3, "the drain to poll a few times")
        assert alive(epoch.pid) and not task.done() and epoch.pid not in fake.recorder.exited

        (fake.state / "connections").write_text("0")  # the last request finished
        with pytest.raises(asyncio.CancelledError):
            # A guard, not a measure: the drain had up to an hour, and ends within a poll.
            await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fake.recorder.exited[epoch.pid] == 0  # stopped by SIGTERM, not killed
    assert set(fake.sleep.delays) == {DRAIN_POLL_INTERVAL}
    assert len(fake.sleep.delays) < 3600 / DRAIN_POLL_INTERVAL  # it stopped once nothing was open
    assert not alive(epoch.pid) and supervisor.pids == frozenset()
    assert not admin_file.parent.exists()  # the supervisor's own admin address file is cleaned up


async def test_the_drain_ends_after_its_period_even_with_connections_open(fake: Fake) -> None:
    (fake.state / "connections").write_text("1")  # a connection that never closes
    supervisor = fake.supervisor(shutdown_drain_time=1.0)
    async with running(supervisor):
        pid = (await first_epoch(fake)).pid
    # Polled every DRAIN_POLL_INTERVAL for the whole second, then stopped.
    assert fake.sleep.delays == [DRAIN_POLL_INTERVAL] * 4
    assert [call["path"] for call in admin_calls(fake.state)] == ["/healthcheck/fail", "/drain_listeners"]
    assert fake.recorder.exited[pid] == 0 and not alive(pid)


async def test_a_second_cancellation_cuts_the_drain_short(fake: Fake) -> None:
    (fake.state / "connections").write_text("1")
    polls = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        polls.set()
        await asyncio.Event().wait()

    supervisor = EnvoySupervisor(
        replace(fake.settings, shutdown_drain_time=3600.0), observer=fake.recorder, sleep=sleep_forever
    )
    task = asyncio.create_task(supervisor.run())
    try:
        pid = (await first_epoch(fake)).pid
        await stop_in_background(task, fake, pid)
        await polls.wait()  # draining: one poll found a connection open
        assert alive(pid)

        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fake.recorder.exited[pid] == 0 and not alive(pid) and supervisor.pids == frozenset()


async def test_no_shutdown_drain_time_stops_envoy_at_once(fake: Fake) -> None:
    (fake.state / "connections").write_text("1")
    supervisor = fake.supervisor(shutdown_drain_time=0.0)
    async with running(supervisor):
        pid = (await first_epoch(fake)).pid
    assert "--admin-address-path" not in fake.starts()[0]["argv"]  # type: ignore[operator]
    assert admin_calls(fake.state) == [] and fake.sleep.delays == []
    assert fake.recorder.exited[pid] == 0


def test_the_shutdown_drain_time_is_a_flag() -> None:
    args = parse_args(["envoy", "--bootstrap", "/b.yaml", "--shutdown-drain-time", "2.5"])
    assert envoy_settings_from(args).shutdown_drain_time == 2.5
    default = parse_args(["envoy", "--bootstrap", "/b.yaml"])
    assert envoy_settings_from(default).shutdown_drain_time == 5.0
    with pytest.raises(SystemExit):
        parse_args(["envoy", "--bootstrap", "/b.yaml", "--shutdown-drain-time", "-1"])
