"""The in-pod load generator against a local HTTP server (loopback, port 0); no timing assertions."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from bench import podclient


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b"ok" if self.path == "/" else b""
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_latency_times_each_new_connection_request(server: int) -> None:
    answer = podclient.handle({"op": "latency", "host": "127.0.0.1", "port": server, "count": 5})
    assert answer["errors"] == 0, answer["error"]
    samples = answer["samples_us"]
    assert isinstance(samples, list) and len(samples) == 5
    assert all(s > 0 for s in samples)


def test_a_non_200_counts_as_an_error(server: int) -> None:
    answer = podclient.handle(
        {"op": "latency", "host": "127.0.0.1", "port": server, "path": "/x", "count": 2}
    )
    assert answer["errors"] == 2
    assert "404" in str(answer["error"])


def test_rps_keeps_connections_alive(server: int) -> None:
    answer = podclient.handle(
        {"op": "rps", "host": "127.0.0.1", "port": server, "connections": 2, "seconds": 0.2}
    )
    assert answer["errors"] == 0, answer["error"]
    assert int(str(answer["requests"])) > 0


def test_unknown_ops_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown op"):
        podclient.handle({"op": "nope", "host": "127.0.0.1", "port": 1})
