"""An ordinary HTTP client that runs inside a demo pod (`python -m demo.probe URL --count N`): N GETs, a new
connection each, one JSON line per request with the status, the body and the time it took as the pod saw
it. Nothing in it knows about the mesh. Standard library only: it runs in the pod's network namespace."""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import urllib.parse


def probe(url: str, count: int, headers: dict[str, str], timeout: float) -> None:
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for _ in range(count):
        started = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            line = {"status": response.status, "body": body}
        except OSError as exc:
            line = {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            conn.close()
        line["ms"] = (time.perf_counter() - started) * 1000
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.probe")
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    headers = {}
    for item in args.header:
        name, _, value = item.partition(":")
        headers[name.strip()] = value.strip()
    probe(args.url, args.count, headers, args.timeout)


if __name__ == "__main__":
    main()
