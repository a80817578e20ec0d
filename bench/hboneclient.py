"""The HBONE benchmark's client, run inside a pod (`python -m bench.hboneclient`): standard library only.

Opens new HBONE connections to a node's 15008 as fast as K threads can, each one complete: TCP connect,
a full mutual-TLS handshake (no session resumption; ALPN h2; SNI naming the destination identity; a
workload certificate), then HTTP/2: the preface, SETTINGS, a CONNECT to `--authority`, and the response
HEADERS, which must be `:status 200`. Then it closes. Prints one JSON line:
{"handshakes": N, "seconds": S, "errors": E, "error": "...", "latencies_us": [...]}.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_HEADERS, ACK, PADDED, PRIORITY = 0x4, 0x1, 0x8, 0x20
# HPACK: the static table's indexed `:status: 200`.
STATUS_200 = 0x88


class HboneError(Exception):
    """The tunnel was not established."""


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(index: int, value: str) -> bytes:
    """HPACK literal header field without indexing, name from the static table, raw (no Huffman) value."""
    raw = value.encode()
    if index >= 15 or len(raw) >= 127:
        raise ValueError("field too long for this minimal encoder")
    return bytes([index, len(raw)]) + raw


def connect_request(authority: str) -> bytes:
    """Preface, empty SETTINGS and HEADERS for `CONNECT authority` on stream 1 (static indexes 2 and 1)."""
    block = _literal(2, "CONNECT") + _literal(1, authority)
    return PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, block)


def _read_exact(conn: ssl.SSLSocket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise HboneError("connection closed")
        data += chunk
    return bytes(data)


def await_response(conn: ssl.SSLSocket) -> None:
    """Read frames until stream 1's response HEADERS (ACKing the server's SETTINGS on the way)."""
    while True:
        header = _read_exact(conn, 9)
        length = int.from_bytes(header[:3], "big")
        kind, flags = header[3], header[4]
        stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        payload = _read_exact(conn, length) if length else b""
        if kind == SETTINGS and not flags & ACK:
            conn.sendall(frame(SETTINGS, ACK, 0))
        elif kind == HEADERS and stream == 1:
            offset = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0)
            if payload[offset : offset + 1] != bytes([STATUS_200]):
                raise HboneError(f"CONNECT answered with header block {payload[offset : offset + 8].hex()}")
            return
        elif kind == RST_STREAM and stream == 1:
            raise HboneError("CONNECT stream reset")
        elif kind == GOAWAY:
            raise HboneError("GOAWAY")


@dataclass
class _Worker:
    latencies_us: list[float] = field(default_factory=list)
    errors: int = 0
    error: str = ""


def run(args: argparse.Namespace) -> dict[str, object]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    # The destination's certificate names it by URI SAN only (SPIFFE); the chain is still verified.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    request = connect_request(args.authority)
    workers = [_Worker() for _ in range(args.connections)]
    start = threading.Barrier(args.connections + 1)
    deadline = 0.0

    def work(worker: _Worker) -> None:
        start.wait()
        while time.perf_counter() < deadline:
            t0 = time.perf_counter_ns()
            try:
                raw = socket.create_connection((args.host, args.port), timeout=5.0)
                # As Envoy does: without it, a TLS flight written in pieces waits for delayed ACKs.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # The TLS socket takes over the descriptor (and closes it).
                with raw, context.wrap_socket(raw, server_hostname=args.sni) as conn:
                    if conn.selected_alpn_protocol() != "h2":
                        raise HboneError(f"ALPN {conn.selected_alpn_protocol()!r}, not h2")
                    conn.sendall(request)
                    await_response(conn)
                worker.latencies_us.append((time.perf_counter_ns() - t0) / 1000)
            except (OSError, HboneError) as exc:
                worker.errors += 1
                worker.error = worker.error or f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + args.seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = [v for w in workers for v in w.latencies_us]
    return {
        "handshakes": len(latencies),
        "seconds": elapsed,
        "errors": sum(w.errors for w in workers),
        "error": next((w.error for w in workers if w.error), ""),
        "latencies_us": latencies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hboneclient")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=15008)
    parser.add_argument("--sni", required=True)
    parser.add_argument("--authority", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    sys.stdout.write(json.dumps(run(parser.parse_args(argv))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
