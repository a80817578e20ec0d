"""A fake Envoy executable for the supervisor's tests, and a recording observer.

The fake behaves like Envoy where the supervisor can tell: it takes Envoy's flags, exits 0 on SIGTERM, and an
epoch N > 0 tells its parent (epoch N - 1) to shut down after --parent-shutdown-time-s. `--mode validate`
fails when the bootstrap contains "invalid". Given --admin-address-path, it serves a tiny admin API on
loopback: POSTs answer OK and are recorded in `admin.jsonl`, `/stats` reports `connections` (a file, 0 when
missing) open downstream connections. Once up (signal handlers set, admin address written), it records its
start in `starts.jsonl` in its state directory ($FAKE_ENVOY_DIR). Files there change its behaviour: `crash`
(exit 3 at once), `ignore-term` (ignore SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.envoy import EpochProcess, StartReason

STATE_ENV = "FAKE_ENVOY_DIR"

_SCRIPT = """\
import json, os, signal, socket, sys, threading, time
from pathlib import Path

state = Path(os.environ["FAKE_ENVOY_DIR"])
args = sys.argv[1:]
def flag(name, default=None):
    return args[args.index(name) + 1] if name in args else default

if flag("--mode") == "validate":
    if "invalid" in Path(flag("-c")).read_text():
        print("error initializing configuration: invalid bootstrap")
        sys.exit(1)
    sys.exit(0)

epoch = int(flag("--restart-epoch", "0"))
if (state / "crash").exists():
    sys.exit(3)
if (state / "ignore-term").exists():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

def admin_answer(method, path):
    if method == "POST":
        with (state / "admin.jsonl").open("a") as out:
            out.write(json.dumps({"pid": os.getpid(), "epoch": epoch, "path": path}) + "\\n")
        return "OK\\n"
    count = (state / "connections").read_text().strip() if (state / "connections").exists() else "0"
    return (
        f"listener.127.0.0.1_15001.downstream_cx_active: {count}\\n"
        f"listener.127.0.0.1_15001.worker_0.downstream_cx_active: {count}\\n"
        "listener.admin.downstream_cx_active: 1\\n"
    )

def serve_admin(listener):
    # Plain sockets, one request per connection: http.server would double the fake's start time.
    while True:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\\r\\n\\r\\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            method, path = request.decode().split(" ")[:2]
            body = admin_answer(method, path).encode()
            head = f"HTTP/1.1 200 OK\\r\\ncontent-length: {len(body)}\\r\\nconnection: close\\r\\n\\r\\n"
            conn.sendall(head.encode() + body)

if flag("--admin-address-path"):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=serve_admin, args=(listener,), daemon=True).start()
    Path(flag("--admin-address-path")).write_text(f"127.0.0.1:{listener.getsockname()[1]}\\n")
with (state / "starts.jsonl").open("a") as out:
    out.write(json.dumps({"pid": os.getpid(), "epoch": epoch, "argv": args}) + "\\n")
parent_file = state / f"epoch-{epoch - 1}.pid"
(state / f"epoch-{epoch}.pid").write_text(str(os.getpid()))
if epoch > 0 and parent_file.exists():
    parent = int(parent_file.read_text())
    def shut_down_parent():
        time.sleep(float(flag("--parent-shutdown-time-s", "1")))
        try:
            os.kill(parent, signal.SIGTERM)
        except ProcessLookupError:
            pass
    threading.Thread(target=shut_down_parent, daemon=True).start()
while True:
    time.sleep(3600)
"""


def write_fake_envoy(directory: Path) -> Path:
    path = directory / "fake-envoy"
    path.write_text(f"#!{sys.executable}\n{_SCRIPT}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def starts(state: Path) -> list[dict[str, object]]:
    """Every start the fake recorded: pid, epoch, argv."""
    path = state / "starts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def admin_calls(state: Path) -> list[dict[str, object]]:
    """Every admin POST the fakes received, in order: pid, epoch, path."""
    path = state / "admin.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Recorder:
    """The supervisor's observer, recording in order."""

    events: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, epoch, pid)
    started: list[EpochProcess] = field(default_factory=list)
    exited: dict[int, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def epoch_started(self, process: EpochProcess) -> None:
        self.started.append(process)
        self.events.append(("started", process.epoch, process.pid))

    def epoch_exited(self, process: EpochProcess, returncode: int) -> None:
        self.exited[process.pid] = returncode
        self.events.append(("exited", process.epoch, process.pid))

    def restart_refused(self, reason: StartReason, message: str) -> None:
        self.refused.append(message)


async def until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


class RecordingSleep:
    """The supervisor's sleep: records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> Awaitable[None]:
        self.delays.append(seconds)
        return asyncio.sleep(0)


__all__ = [
    "STATE_ENV",
    "Recorder",
    "RecordingSleep",
    "admin_calls",
    "alive",
    "starts",
    "until",
    "write_fake_envoy",
]
