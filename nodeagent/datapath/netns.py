"""Network namespace cookies, and sockets opened inside another network namespace.

The kernel names a network namespace by a cookie (what `bpf_get_netns_cookie` returns). User space learns
it with `getsockopt(SOL_SOCKET, SO_NETNS_COOKIE)` on a socket created inside that namespace. Entering a
namespace (`setns`) changes only the calling thread, so it happens on a dedicated, short-lived thread: the
process's other threads never change namespace, and no pooled thread is ever left inside a pod's namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from nodeagent.datapath.errors import NetnsError

SO_NETNS_COOKIE: Final = 71
CLONE_NEWNET: Final = 0x40000000

T = TypeVar("T")


def netns_path(*, path: str | None = None, pid: int | None = None) -> Path:
    """The netns file for a plan's NetnsRef: a bind-mounted path, or a process inside the namespace."""
    if (path is None) == (pid is None):
        raise NetnsError("a netns reference needs exactly one of path or pid")
    return Path(path) if path is not None else Path(f"/proc/{pid}/ns/net")


def socket_cookie_of_netns(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    return int(struct.unpack("=Q", raw)[0])


def current_netns_cookie() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            return socket_cookie_of_netns(sock)
        except OSError as exc:
            raise NetnsError(f"SO_NETNS_COOKIE unsupported (kernel >= 5.14 needed): {exc}") from exc


def run_in_netns(netns: Path, action: Callable[[], T]) -> T:
    """Runs `action` on a fresh thread inside `netns` and returns its result (or raises its error)."""
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            failure.append(NetnsError(f"cannot open {netns}: {exc}"))
            return
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                failure.append(NetnsError(f"setns({netns}): {os.strerror(code)}"))
                return
            outcome.append(action())
        except BaseException as exc:
            failure.append(exc)
        finally:
            os.close(target)
        # The thread ends here, so it never needs to return to the original namespace.

    thread = threading.Thread(target=body, name=f"netns:{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        error = failure[0]
        if isinstance(error, NetnsError):
            raise error
        raise NetnsError(f"in {netns}: {error}") from error
    return outcome[0]


def netns_cookie(netns: Path) -> int:
    """The cookie of the network namespace at `netns` (a /var/run/netns file or /proc/<pid>/ns/net)."""
    return run_in_netns(netns, current_netns_cookie)


def socket_in_netns(
    netns: Path, family: socket.AddressFamily = socket.AF_INET, kind: socket.SocketKind = socket.SOCK_STREAM
) -> socket.socket:
    """A socket created inside `netns`; it stays there whichever thread uses it afterwards."""
    return run_in_netns(netns, lambda: socket.socket(family, kind))
