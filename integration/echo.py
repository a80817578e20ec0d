"""Tiny servers and clients that run inside topology pods (as `python -m integration.echo ...`).

Servers answer with JSON saying which pod answered and the peer address they saw, plus the request headers
(where the caller's identity shows once mTLS carries it). Clients are ordinary socket programs: nothing in
them knows about the mesh, which is the point. Every program prints one JSON object per line on stdout.

    tcp-server --pod NAME --port N        line protocol: each line in, one JSON line out
    http-server --pod NAME --port N       any GET: JSON body (`?sleep=SECONDS` answers that much later)
    tcp-client HOST PORT [--message M]    connect, send one line, print the reply with getpeername()
    tcp-session HOST PORT                 keep one connection: each stdin line is sent, each reply printed
    http-client URL [--count N] [--header K:V]...   N GETs, a new connection each: one line per response
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import io
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

READY: str = "READY"


def _addr(address: tuple[object, ...]) -> str:
    return f"{address[0]}:{address[1]}"


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def serve_tcp(pod: str, port: int) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            peer = _addr(self.connection.getpeername())
            local = _addr(self.connection.getsockname())
            for raw in self.rfile:
                reply = {"pod": pod, "peer": peer, "local": local, "echo": raw.decode().rstrip("\n")}
                self.wfile.write((json.dumps(reply, sort_keys=True) + "\n").encode())
                self.wfile.flush()

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler) as server:
        _emit({"event": READY, "pod": pod, "port": port})
        server.serve_forever()


def serve_http(pod: str, port: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle, the body of every response after the first
        # on a kept-alive connection waits for the peer's delayed ACK (~40 ms).
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            # A slow endpoint on request, for route timeouts.
            delay = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("sleep")
            if delay:
                time.sleep(min(float(delay[0]), 30.0))
            body = json.dumps(
                {
                    "pod": pod,
                    "peer": _addr(self.client_address),
                    "local": _addr(self.connection.getsockname()),
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                },
                sort_keys=True,
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    with http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler) as server:
        _emit({"event": READY, "pod": pod, "port": port})
        server.serve_forever()


def _exchange(conn: socket.socket, reader: io.TextIOWrapper, message: str) -> dict[str, object]:
    conn.sendall((message + "\n").encode())
    line = reader.readline()
    if not line:
        raise ConnectionError("server closed the connection")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError(f"not a JSON object: {line!r}")
    return reply


def tcp_client(host: str, port: int, message: str, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        reader = conn.makefile("r")
        reply = _exchange(conn, reader, message)
        _emit({"reply": reply, "peername": _addr(conn.getpeername()), "sockname": _addr(conn.getsockname())})


def tcp_session(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        reader = conn.makefile("r")
        _emit({"event": READY, "peername": _addr(conn.getpeername()), "sockname": _addr(conn.getsockname())})
        conn.settimeout(None)
        for line in sys.stdin:
            try:
                reply = _exchange(conn, reader, line.rstrip("\n"))
            except OSError as exc:
                _emit({"error": str(exc)})
                return
            _emit({"reply": reply})


def http_client(url: str, count: int, headers: list[str], timeout: float) -> None:
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    sent = dict(header.split(":", 1) for header in headers)
    for _ in range(count):
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", target, headers={k.strip(): v.strip() for k, v in sent.items()})
            response = conn.getresponse()
            _emit({"status": response.status, "body": response.read().decode(errors="replace")})
        except OSError as exc:
            _emit({"status": 0, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="integration.echo")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("tcp-server", "http-server"):
        server = sub.add_parser(name)
        server.add_argument("--pod", required=True)
        server.add_argument("--port", type=int, required=True)
    client = sub.add_parser("tcp-client")
    client.add_argument("host")
    client.add_argument("port", type=int)
    client.add_argument("--message", default="hello")
    client.add_argument("--timeout", type=float, default=5.0)
    session = sub.add_parser("tcp-session")
    session.add_argument("host")
    session.add_argument("port", type=int)
    session.add_argument("--timeout", type=float, default=5.0)
    http = sub.add_parser("http-client")
    http.add_argument("url")
    http.add_argument("--count", type=int, default=1)
    http.add_argument("--header", action="append", default=[])
    http.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "tcp-server":
        serve_tcp(args.pod, args.port)
    elif args.command == "http-server":
        serve_http(args.pod, args.port)
    elif args.command == "http-client":
        http_client(args.url, args.count, args.header, args.timeout)
    elif args.command == "tcp-client":
        tcp_client(args.host, args.port, args.message, args.timeout)
    else:
        tcp_session(args.host, args.port, args.timeout)


if __name__ == "__main__":
    threading.current_thread().name = "echo"
    main()
