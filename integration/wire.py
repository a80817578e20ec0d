"""What actually crossed a link: tcpdump into a pcap file, read back as TCP payloads per direction.

`PacketCapture` is an async context manager: it starts tcpdump (by pid, stopped with SIGINT so it flushes,
killed if it lingers), waits until tcpdump says it is listening, and after the block `flows()` gives each
direction's payload bytes in capture order. Only the link types tcpdump uses on Linux loopback and veths
(Ethernet, Linux cooked v1/v2, raw IP) are read; IPv4 and IPv6 both. No pytest here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

# Link-layer header length by pcap link type (Ethernet, Linux SLL, Linux SLL2, raw IP).
_LINK_HEADER = {1: 14, 113: 16, 276: 20, 101: 0}
_IPPROTO_TCP = 6
_READY_LINE = b"listening on"


class CaptureError(Exception):
    """tcpdump is missing, could not start, or wrote a file this reader does not understand."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Flow:
    """One direction of one TCP connection."""

    source: Endpoint
    destination: Endpoint


def find_tcpdump() -> str | None:
    return shutil.which("tcpdump") or next(
        (p for p in ("/usr/bin/tcpdump", "/usr/sbin/tcpdump") if Path(p).exists()), None
    )


def _ip_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _tcp_segment(packet: bytes) -> tuple[Flow, bytes] | None:
    """(flow, payload) of an IPv4/IPv6 TCP packet, None for anything else."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        header = (packet[0] & 0x0F) * 4
        if packet[9] != _IPPROTO_TCP:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        src, dst, tcp = _ip_text(packet[12:16]), _ip_text(packet[16:20]), packet[header:total]
    elif version == 6:
        if packet[6] != _IPPROTO_TCP:  # extension headers never appear on these links
            return None
        length = struct.unpack_from("!H", packet, 4)[0]
        src, dst, tcp = _ip_text(packet[8:24]), _ip_text(packet[24:40]), packet[40 : 40 + length]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack_from("!HH", tcp, 0)
    offset = (tcp[12] >> 4) * 4
    return Flow(source=Endpoint(ip=src, port=sport), destination=Endpoint(ip=dst, port=dport)), tcp[offset:]


def read_pcap(path: Path) -> dict[Flow, bytes]:
    """Each TCP direction's payload bytes, concatenated in capture order."""
    data = path.read_bytes()
    if len(data) < 24:
        raise CaptureError(f"{path}: no pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise CaptureError(f"{path}: not a pcap file (magic {magic.hex()})")
    link_type = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if link_type not in _LINK_HEADER:
        raise CaptureError(f"{path}: unsupported link type {link_type}")
    skip = _LINK_HEADER[link_type]
    flows: dict[Flow, bytearray] = {}
    pos = 24
    while pos + 16 <= len(data):
        captured = struct.unpack_from(endian + "I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + captured]
        pos += 16 + captured
        segment = _tcp_segment(frame[skip:])
        if segment is not None and segment[1]:
            flows.setdefault(segment[0], bytearray()).extend(segment[1])
    return {flow: bytes(payload) for flow, payload in flows.items()}


class PacketCapture:
    """`async with PacketCapture(interface="lo", expression="tcp port 8080", path=...) as capture:` then
    `capture.flows()` after the block."""

    def __init__(self, *, interface: str, expression: str, path: Path, binary: str | None = None) -> None:
        found = binary or find_tcpdump()
        if found is None:
            raise CaptureError("no tcpdump binary")
        self.binary = found
        self.interface = interface
        self.expression = expression
        self.path = path
        self._process: asyncio.subprocess.Process | None = None
        self._stderr = b""

    async def __aenter__(self) -> Self:
        # -U and --immediate-mode: each packet written as it arrives (none lost in a buffer at SIGINT);
        # -s 0: whole packets; -n: no name lookups.
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            "-i",
            self.interface,
            "-n",
            "-s",
            "0",
            "-U",
            "--immediate-mode",
            "-w",
            str(self.path),
            self.expression,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(self._wait_listening(), 10)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _wait_listening(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while True:
            line = await self._process.stderr.readline()
            self._stderr += line
            if _READY_LINE in line:
                return
            if not line:
                await self._process.wait()
                raise CaptureError(f"tcpdump exited ({self._process.returncode}): {self._stderr.decode()}")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _settle(self, quiet: float = 0.2, within: float = 3.0) -> None:
        """Wait until the file stops growing: packets still queued for tcpdump at SIGINT are lost."""
        deadline = time.monotonic() + within
        size = -1
        while time.monotonic() < deadline:
            current = self.path.stat().st_size if self.path.exists() else 0
            if current == size:
                return
            size = current
            await asyncio.sleep(quiet)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGINT (tcpdump flushes and exits), then SIGKILL if it lingers; idempotent."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        try:
            await self._settle()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.communicate(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def flows(self) -> dict[Flow, bytes]:
        return read_pcap(self.path)


def is_tls_client_hello(payload: bytes) -> bool:
    """A TLS handshake record (type 22, version 3.x) whose first message is a ClientHello (type 1)."""
    return len(payload) > 5 and payload[0] == 0x16 and payload[1] == 0x03 and payload[5] == 0x01
