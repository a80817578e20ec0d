"""`python -m apidouble --port N`: run the API server double until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from apidouble.server import ApiServerDouble


async def _serve(args: argparse.Namespace) -> None:
    async with ApiServerDouble(
        host=args.host, port=args.port, bookmark_interval=args.bookmark_interval
    ) as api:
        if args.kubeconfig:
            api.kubeconfig(Path(args.kubeconfig))
        print(f"API server double listening on {api.url}", flush=True)
        print(f"  kubectl --server {api.url} get namespaces", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apidouble", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--kubeconfig", help="also write a kubeconfig pointing at the server to this path")
    parser.add_argument(
        "--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
