"""The data-path benchmark's client, run inside a pod (`python -m bench.podclient`): standard library only.

It times itself, in the pod, so the benchmark's own process and its namespace hops are never in a sample.
Commands come one JSON object per line on stdin; each gets one JSON line on stdout:

    {"op": "latency", "host": H, "port": P, "path": "/", "count": N}
        N times: a new TCP connection, one HTTP/1.1 GET, the whole response read; then close.
        -> {"samples_us": [...], "errors": E, "error": "first error or empty"}
    {"op": "rps", "host": H, "port": P, "path": "/", "connections": K, "seconds": T}
        K threads, each with one keep-alive connection, GET after GET for T seconds.
        -> {"requests": R, "seconds": S, "errors": E, "error": "..."}
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass


class ExchangeError(Exception):
    """The response was not a complete HTTP 200."""


def _request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nodemesh-bench\r\n\r\n".encode()


def exchange(conn: socket.socket, request: bytes, buffer: bytearray) -> None:
    """Send `request`, read one whole response (by Content-Length); ExchangeError unless it is a 200."""
    conn.sendall(request)
    buffer.clear()
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = conn.recv(65536)
        if not chunk:
            raise ExchangeError("connection closed before the response headers")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    status_line, _, fields = head.partition("\r\n")
    if not status_line.startswith("HTTP/1.1 200"):
        raise ExchangeError(f"status {status_line!r}")
    length = 0
    for line in fields.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    wanted = end + 4 + length
    while len(buffer) < wanted:
        chunk = conn.recv(65536)
        if not chunk:
            raise ExchangeError("connection closed inside the body")
        buffer += chunk


def latency(host: str, port: int, path: str, count: int, timeout: float = 5.0) -> dict[str, object]:
    request = _request(host, path)
    buffer = bytearray()
    samples: list[float] = []
    errors = 0
    first_error = ""
    for _ in range(count):
        t0 = time.perf_counter_ns()
        try:
            with socket.create_connection((host, port), timeout=timeout) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                exchange(conn, request, buffer)
                samples.append((time.perf_counter_ns() - t0) / 1000)
        except (OSError, ExchangeError, ValueError) as exc:
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
    return {"samples_us": samples, "errors": errors, "error": first_error}


@dataclass
class _Counter:
    requests: int = 0
    errors: int = 0
    error: str = ""


def rps(host: str, port: int, path: str, connections: int, seconds: float) -> dict[str, object]:
    request = _request(host, path)
    counters = [_Counter() for _ in range(connections)]
    start = threading.Barrier(connections + 1)
    deadline = 0.0

    def work(counter: _Counter) -> None:
        buffer = bytearray()
        conn: socket.socket | None = None
        start.wait()
        while time.perf_counter() < deadline:
            try:
                if conn is None:
                    conn = socket.create_connection((host, port), timeout=5.0)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                exchange(conn, request, buffer)
                counter.requests += 1
            except (OSError, ExchangeError, ValueError) as exc:
                counter.errors += 1
                counter.error = counter.error or f"{type(exc).__name__}: {exc}"
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in counters]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {
        "requests": sum(c.requests for c in counters),
        "seconds": elapsed,
        "errors": sum(c.errors for c in counters),
        "error": next((c.error for c in counters if c.error), ""),
    }


def handle(command: dict[str, object]) -> dict[str, object]:
    host, port, path = str(command["host"]), int(str(command["port"])), str(command.get("path", "/"))
    op = command.get("op")
    if op == "latency":
        return latency(host, port, path, int(str(command["count"])))
    if op == "rps":
        return rps(host, port, path, int(str(command["connections"])), float(str(command["seconds"])))
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    sys.stdout.write(json.dumps({"event": "READY"}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        sys.stdout.write(json.dumps(handle(json.loads(line))) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
