"""The redirect's BPF maps, as typed Python: ctypes mirrors of bpf/lib/*.h and a reconciling map API.

Every map is pinned under `<pin dir>/maps/<name>`; `DatapathMaps.open` reaches them by path, so a restarted
agent works on the same maps (entries survive) without compiling anything. Map operations are single syscalls,
cheap enough to call from the event loop.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar

from nodeagent.datapath.errors import MapError
from nodeagent.datapath.libbpf import Libbpf

log = logging.getLogger(__name__)

C = TypeVar("C", bound=StrEnum)

# Limits shared with bpf/lib/*.h (tests/datapath checks them against the C).
MAX_POD_EXCLUDED_PORTS: Final = 8
MAX_ENVOY_ADDRS: Final = 4
MAX_OUTBOUND_PORTS: Final = 64  # NODEMESH_MAX_OUTBOUND_PORTS
POD_REDIRECT_ALL: Final = 0x1


# ctypes mirrors. Field names follow the C structs; byte orders are noted where a field is not host order.


class CPodSettings(ctypes.Structure):
    """Mirrors `struct nodemesh_pod_settings` (bpf/lib/meshed.h)."""

    _fields_ = [
        ("flags", ctypes.c_uint32),
        ("n_exclude_ports", ctypes.c_uint16),
        ("exclude_ports", ctypes.c_uint16 * MAX_POD_EXCLUDED_PORTS),  # host order
        ("_pad", ctypes.c_uint16),
    ]


class COrigDst(ctypes.Structure):
    """Mirrors `struct nodemesh_origdst` (bpf/lib/origdst.h)."""

    _fields_ = [
        ("ip", ctypes.c_uint32),  # network order
        ("port", ctypes.c_uint16),  # network order
        ("_pad", ctypes.c_uint16),
    ]


class CTuple(ctypes.Structure):
    """Mirrors `struct nodemesh_tuple` (bpf/lib/origdst.h)."""

    _fields_ = [
        ("client_ip", ctypes.c_uint32),  # network order
        ("envoy_ip", ctypes.c_uint32),  # network order
        ("client_port", ctypes.c_uint16),  # host order
        ("envoy_port", ctypes.c_uint16),  # host order
    ]


class CServiceKey(ctypes.Structure):
    """Mirrors `struct nodemesh_service_key` (bpf/lib/policy.h)."""

    _fields_ = [
        ("ip", ctypes.c_uint32),  # network order
        ("port", ctypes.c_uint16),  # host order
        ("_pad", ctypes.c_uint16),
    ]


class CCidrKey(ctypes.Structure):
    """Mirrors `struct nodemesh_cidr_key` (bpf/lib/policy.h)."""

    _fields_ = [
        ("prefixlen", ctypes.c_uint32),
        ("ip", ctypes.c_uint32),  # network order
    ]


class CInboundKey(ctypes.Structure):
    """Mirrors `struct nodemesh_inbound_key` (bpf/lib/inbound.h)."""

    _fields_ = [
        ("ip", ctypes.c_uint32),  # network order
        ("port", ctypes.c_uint16),  # host order; 0: the workload's own mode
        ("_pad", ctypes.c_uint16),
    ]


class CConfig(ctypes.Structure):
    """Mirrors `struct nodemesh_config` (bpf/lib/config.h)."""

    _fields_ = [
        ("envoy_ips", ctypes.c_uint32 * MAX_ENVOY_ADDRS),  # network order
        ("outbound_port", ctypes.c_uint16),  # network order: the first port
        ("n_envoy_ips", ctypes.c_uint16),
        ("n_outbound_ports", ctypes.c_uint16),  # consecutive ports from outbound_port; 0 or 1: one
        ("_pad", ctypes.c_uint16),
    ]


# C struct name -> its mirror (tests/datapath compares sizes and offsets with what clang computes).
MIRRORS: Final[Mapping[str, type[ctypes.Structure]]] = {
    "nodemesh_pod_settings": CPodSettings,
    "nodemesh_origdst": COrigDst,
    "nodemesh_tuple": CTuple,
    "nodemesh_service_key": CServiceKey,
    "nodemesh_cidr_key": CCidrKey,
    "nodemesh_config": CConfig,
    "nodemesh_inbound_key": CInboundKey,
}


class Counter(StrEnum):
    """Mirrors `enum nodemesh_counter` (bpf/lib/counters.h): same order. Values double as metric labels."""

    REDIRECTED = "redirected"
    SKIP_NOT_TCP = "skip_not_tcp"
    SKIP_LOOPBACK = "skip_loopback"
    SKIP_NOT_MESHED = "skip_not_meshed"
    SKIP_NO_CONFIG = "skip_no_config"
    SKIP_ENVOY = "skip_envoy"
    SKIP_EXCLUDED_PORT = "skip_excluded_port"
    SKIP_EXCLUDED_CIDR = "skip_excluded_cidr"
    SKIP_NOT_SERVICE = "skip_not_service"
    ESTABLISHED = "established"
    ESTABLISHED_MISS = "established_miss"
    CLOSED = "closed"
    ORIGDST_HIT = "origdst_hit"
    ORIGDST_MISS = "origdst_miss"
    PEERNAME_REWRITTEN = "peername_rewritten"


COUNTER_INDEX: Final[Mapping[Counter, int]] = {counter: index for index, counter in enumerate(Counter)}


class InboundCounter(StrEnum):
    """Mirrors `enum nodemesh_inbound_counter` (bpf/lib/inbound.h): same order. The inbound program's verdicts
    on new connections to meshed pods; the `refused_*` ones are the drops by reason."""

    REFUSED_STRICT_WORKLOAD = "refused_strict_workload"
    REFUSED_STRICT_PORT = "refused_strict_port"
    ACCEPTED_ENVOY = "accepted_envoy"
    ACCEPTED_SAME_POD = "accepted_same_pod"
    ACCEPTED_EXCLUDED_PORT = "accepted_excluded_port"
    ACCEPTED_PERMISSIVE = "accepted_permissive"

    @property
    def refused(self) -> bool:
        return self.value.startswith("refused_")

    @property
    def reason(self) -> str:
        """The metric label: the value without its verdict."""
        return self.value.removeprefix("refused_").removeprefix("accepted_")


INBOUND_COUNTER_INDEX: Final[Mapping[InboundCounter, int]] = {
    counter: index for index, counter in enumerate(InboundCounter)
}


class InboundMode(IntEnum):
    """Values of `nodemesh_inbound_policy` (NODEMESH_INBOUND_* in bpf/lib/inbound.h)."""

    PERMISSIVE = 1  # only needed as an exception: a PERMISSIVE port of a STRICT workload
    STRICT = 2


class MapName(StrEnum):
    """The pinned maps, by their C names."""

    MESHED_NETNS = "nodemesh_meshed_netns"
    ORIGDST_BY_COOKIE = "nodemesh_origdst_by_cookie"
    ORIGDST_BY_TUPLE = "nodemesh_origdst_by_tuple"
    SERVICES = "nodemesh_services"
    EXCLUDED_PORTS = "nodemesh_excluded_ports"
    EXCLUDED_CIDRS = "nodemesh_excluded_cidrs"
    CONFIG = "nodemesh_config"
    COUNTERS = "nodemesh_counters"
    INBOUND_POLICY = "nodemesh_inbound_policy"
    INBOUND_COUNTERS = "nodemesh_inbound_counters"


# (key type, value type) of each map; the value of a per-CPU map is one slot per possible CPU.
MAP_LAYOUT: Final[Mapping[MapName, tuple[type[ctypes._CData], type[ctypes._CData]]]] = {
    MapName.MESHED_NETNS: (ctypes.c_uint64, CPodSettings),
    MapName.ORIGDST_BY_COOKIE: (ctypes.c_uint64, COrigDst),
    MapName.ORIGDST_BY_TUPLE: (CTuple, COrigDst),
    MapName.SERVICES: (CServiceKey, ctypes.c_uint8),
    MapName.EXCLUDED_PORTS: (ctypes.c_uint16, ctypes.c_uint8),
    MapName.EXCLUDED_CIDRS: (CCidrKey, ctypes.c_uint8),
    MapName.CONFIG: (ctypes.c_uint32, CConfig),
    MapName.COUNTERS: (ctypes.c_uint32, ctypes.c_uint64),
    MapName.INBOUND_POLICY: (CInboundKey, ctypes.c_uint8),
    MapName.INBOUND_COUNTERS: (ctypes.c_uint32, ctypes.c_uint64),
}


def maps_dir(pin_dir: Path) -> Path:
    return pin_dir / "maps"


# Values.


def _check_ports(ports: frozenset[int] | set[int]) -> None:
    for port in ports:
        if not 0 < port < 65536:
            raise MapError(f"port out of range: {port}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSettings:
    """How one meshed pod's connections are redirected."""

    redirect_all: bool = True
    exclude_ports: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if len(self.exclude_ports) > MAX_POD_EXCLUDED_PORTS:
            raise MapError(
                f"at most {MAX_POD_EXCLUDED_PORTS} excluded ports per pod, got {len(self.exclude_ports)}"
            )
        _check_ports(self.exclude_ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvoyTarget:
    """The node Envoy's outbound listener: `outbound_ports` consecutive ports from `outbound_port`, on one or
    more addresses."""

    addresses: tuple[IPv4Address, ...]
    outbound_port: int = 15001
    outbound_ports: int = 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.addresses) <= MAX_ENVOY_ADDRS:
            raise MapError(f"1 to {MAX_ENVOY_ADDRS} Envoy addresses, got {len(self.addresses)}")
        if not 1 <= self.outbound_ports <= MAX_OUTBOUND_PORTS:
            raise MapError(f"1 to {MAX_OUTBOUND_PORTS} outbound ports, got {self.outbound_ports}")
        _check_ports({self.outbound_port, self.outbound_port + self.outbound_ports - 1})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    ip: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusions:
    """Node-wide destinations never redirected."""

    ports: frozenset[int] = frozenset()
    cidrs: frozenset[IPv4Network] = frozenset()

    def __post_init__(self) -> None:
        _check_ports(self.ports)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    ip: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class InboundKey:
    """Where an inbound mode applies: a pod address and port, or with port 0 every port of the address
    that has no entry of its own."""

    ip: IPv4Address
    port: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise MapError(f"port out of range: {self.port}")

    def __str__(self) -> str:
        return f"{self.ip}:{self.port or '*'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectedConnection:
    """An established redirected connection: the client's address, the Envoy address it reached, and where it
    was going."""

    client: Endpoint
    envoy: Endpoint
    original: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredState:
    """Everything the maps should hold, as the agent's plan says."""

    target: EnvoyTarget | None
    meshed: Mapping[int, PodSettings] = field(default_factory=dict)
    exclusions: Exclusions = field(default_factory=Exclusions)
    services: frozenset[ServicePort] = frozenset()
    # Inbound enforcement: absent keys are PERMISSIVE (not enforced).
    inbound: Mapping[InboundKey, InboundMode] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileReport:
    meshed_added: int = 0
    meshed_removed: int = 0
    meshed_updated: int = 0
    services_added: int = 0
    services_removed: int = 0
    exclusions_changed: bool = False
    target_changed: bool = False
    inbound_set: int = 0
    inbound_removed: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.meshed_added
            or self.meshed_removed
            or self.meshed_updated
            or self.services_added
            or self.services_removed
            or self.exclusions_changed
            or self.target_changed
            or self.inbound_set
            or self.inbound_removed
        )


def _ip_be(ip: IPv4Address) -> int:
    """The u32 whose in-memory bytes are the address in network order (what the kernel stores)."""
    return int.from_bytes(ip.packed, "little")


def _ip_from_be(value: int) -> IPv4Address:
    return IPv4Address(value.to_bytes(4, "little"))


def _port_be(port: int) -> int:
    return socket.htons(port)


# Encoding and decoding between values and mirrors.


def encode_pod_settings(settings: PodSettings) -> CPodSettings:
    value = CPodSettings()
    value.flags = POD_REDIRECT_ALL if settings.redirect_all else 0
    ports = sorted(settings.exclude_ports)
    value.n_exclude_ports = len(ports)
    for index, port in enumerate(ports):
        value.exclude_ports[index] = port
    return value


def decode_pod_settings(value: CPodSettings) -> PodSettings:
    count = min(int(value.n_exclude_ports), MAX_POD_EXCLUDED_PORTS)
    return PodSettings(
        redirect_all=bool(value.flags & POD_REDIRECT_ALL),
        exclude_ports=frozenset(int(value.exclude_ports[i]) for i in range(count)),
    )


def encode_target(target: EnvoyTarget | None) -> CConfig:
    value = CConfig()
    if target is None:
        return value
    for index, address in enumerate(target.addresses):
        value.envoy_ips[index] = _ip_be(address)
    value.n_envoy_ips = len(target.addresses)
    value.outbound_port = _port_be(target.outbound_port)
    value.n_outbound_ports = target.outbound_ports
    return value


def decode_target(value: CConfig) -> EnvoyTarget | None:
    count = int(value.n_envoy_ips)
    if count == 0 or count > MAX_ENVOY_ADDRS:
        return None
    return EnvoyTarget(
        addresses=tuple(_ip_from_be(int(value.envoy_ips[i])) for i in range(count)),
        outbound_port=socket.ntohs(int(value.outbound_port)),
        outbound_ports=max(1, min(int(value.n_outbound_ports), MAX_OUTBOUND_PORTS)),
    )


def _service_key(service: ServicePort) -> CServiceKey:
    return CServiceKey(ip=_ip_be(service.ip), port=service.port)


def _cidr_key(network: IPv4Network) -> CCidrKey:
    return CCidrKey(prefixlen=network.prefixlen, ip=_ip_be(network.network_address))


def _inbound_key(key: InboundKey) -> CInboundKey:
    return CInboundKey(ip=_ip_be(key.ip), port=key.port)


class RedirectMaps(Protocol):
    """What the node agent needs from the maps (fakeable in agent tests)."""

    def set_meshed(self, cookie: int, settings: PodSettings) -> None: ...

    def remove_meshed(self, cookie: int) -> bool: ...

    def meshed(self) -> dict[int, PodSettings]: ...

    def set_target(self, target: EnvoyTarget | None) -> None: ...

    def set_exclusions(self, exclusions: Exclusions) -> None: ...

    def set_services(self, services: frozenset[ServicePort]) -> None: ...

    def counters(self) -> Mapping[Counter, int]: ...

    def inbound_counters(self) -> Mapping[InboundCounter, int]: ...

    def inbound(self) -> dict[InboundKey, InboundMode]: ...

    def reconcile(self, desired: DesiredState) -> ReconcileReport: ...


class DatapathMaps(RedirectMaps):
    """The pinned maps of one data path, opened by path. Close it (or use `with`) to release the fds."""

    def __init__(self, lib: Libbpf, fds: Mapping[MapName, int], possible_cpus: int) -> None:
        self._lib = lib
        self._fds = dict(fds)
        self._cpus = possible_cpus

    @classmethod
    def open(cls, lib: Libbpf, pin_dir: Path, *, possible_cpus: int | None = None) -> DatapathMaps:
        """Opens every pinned map and checks its key and value sizes against the mirrors."""
        fds: dict[MapName, int] = {}
        try:
            for name, (key_type, value_type) in MAP_LAYOUT.items():
                path = maps_dir(pin_dir) / name
                fd = lib.get_pinned(path)
                if fd is None:
                    raise MapError(f"map {name} is not pinned at {path}: is the data path installed?")
                fds[name] = fd
                info = lib.map_info(fd)
                if (info.key_size, info.value_size) != (ctypes.sizeof(key_type), ctypes.sizeof(value_type)):
                    want = (ctypes.sizeof(key_type), ctypes.sizeof(value_type))
                    raise MapError(
                        f"pinned map {name} has key/value sizes {info.key_size}/{info.value_size}, this "
                        f"agent expects {want[0]}/{want[1]}: uninstall the old data path"
                    )
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        return cls(lib, fds, possible_cpus if possible_cpus is not None else _possible_cpus())

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _fd(self, name: MapName) -> int:
        try:
            return self._fds[name]
        except KeyError:
            raise MapError("the maps are closed") from None

    def _keys(self, name: MapName) -> Iterator[ctypes._CData]:
        key_type = MAP_LAYOUT[name][0]
        fd = self._fd(name)
        previous: ctypes._CData | None = None
        while True:
            key = key_type()
            if not self._lib.next_key(fd, previous, key):
                return
            yield key
            previous = key

    # Meshed pods.

    def set_meshed(self, cookie: int, settings: PodSettings) -> None:
        value = encode_pod_settings(settings)
        self._lib.update(self._fd(MapName.MESHED_NETNS), ctypes.c_uint64(cookie), value)
        log.debug("meshed netns cookie %s: %s", cookie, settings)

    def remove_meshed(self, cookie: int) -> bool:
        removed = self._lib.delete(self._fd(MapName.MESHED_NETNS), ctypes.c_uint64(cookie))
        log.debug("unmeshed netns cookie %s (present: %s)", cookie, removed)
        return removed

    def meshed(self) -> dict[int, PodSettings]:
        fd = self._fd(MapName.MESHED_NETNS)
        result: dict[int, PodSettings] = {}
        for key in list(self._keys(MapName.MESHED_NETNS)):
            value = CPodSettings()
            if self._lib.lookup(fd, key, value):
                result[int(key.value)] = decode_pod_settings(value)  # type: ignore[attr-defined]
        return result

    # Node settings.

    def set_target(self, target: EnvoyTarget | None) -> None:
        """Where redirected connections go; None turns redirection off (connect4 then skips every socket)."""
        self._lib.update(self._fd(MapName.CONFIG), ctypes.c_uint32(0), encode_target(target))

    def target(self) -> EnvoyTarget | None:
        value = CConfig()
        if not self._lib.lookup(self._fd(MapName.CONFIG), ctypes.c_uint32(0), value):
            return None
        return decode_target(value)

    def set_exclusions(self, exclusions: Exclusions) -> None:
        current = self.exclusions()
        ports_fd = self._fd(MapName.EXCLUDED_PORTS)
        cidrs_fd = self._fd(MapName.EXCLUDED_CIDRS)
        # Add before removing, so a destination excluded in both states is never redirected in between.
        for port in exclusions.ports - current.ports:
            self._lib.update(ports_fd, ctypes.c_uint16(port), ctypes.c_uint8(1))
        for network in exclusions.cidrs - current.cidrs:
            self._lib.update(cidrs_fd, _cidr_key(network), ctypes.c_uint8(1))
        for port in current.ports - exclusions.ports:
            self._lib.delete(ports_fd, ctypes.c_uint16(port))
        for network in current.cidrs - exclusions.cidrs:
            self._lib.delete(cidrs_fd, _cidr_key(network))

    def exclusions(self) -> Exclusions:
        ports = frozenset(int(key.value) for key in self._keys(MapName.EXCLUDED_PORTS))  # type: ignore[attr-defined]
        cidrs: set[IPv4Network] = set()
        for key in self._keys(MapName.EXCLUDED_CIDRS):
            assert isinstance(key, CCidrKey)
            cidrs.add(ipaddress.IPv4Network((_ip_from_be(int(key.ip)), int(key.prefixlen))))
        return Exclusions(ports=ports, cidrs=frozenset(cidrs))

    def set_services(self, services: frozenset[ServicePort]) -> None:
        current = self.services()
        fd = self._fd(MapName.SERVICES)
        for service in services - current:
            self._lib.update(fd, _service_key(service), ctypes.c_uint8(1))
        for service in current - services:
            self._lib.delete(fd, _service_key(service))

    def services(self) -> frozenset[ServicePort]:
        result: set[ServicePort] = set()
        for key in self._keys(MapName.SERVICES):
            assert isinstance(key, CServiceKey)
            result.add(ServicePort(ip=_ip_from_be(int(key.ip)), port=int(key.port)))
        return frozenset(result)

    # Inbound enforcement.

    def _inbound_entries(self) -> dict[InboundKey, int]:
        fd = self._fd(MapName.INBOUND_POLICY)
        result: dict[InboundKey, int] = {}
        for key in list(self._keys(MapName.INBOUND_POLICY)):
            assert isinstance(key, CInboundKey)
            value = ctypes.c_uint8()
            if self._lib.lookup(fd, key, value):
                result[InboundKey(ip=_ip_from_be(int(key.ip)), port=int(key.port))] = int(value.value)
        return result

    def inbound(self) -> dict[InboundKey, InboundMode]:
        """The inbound policy entries (values this agent never writes are left out)."""
        modes = {int(mode) for mode in InboundMode}
        return {key: InboundMode(value) for key, value in self._inbound_entries().items() if value in modes}

    def set_inbound(self, inbound: Mapping[InboundKey, InboundMode]) -> tuple[int, int]:
        """Makes the inbound policy map equal to `inbound`; returns (entries set, entries removed).
        Sets go first, so a pod going from a workload-wide to a port-level STRICT is never briefly
        unenforced on a port both cover."""
        fd = self._fd(MapName.INBOUND_POLICY)
        current = self._inbound_entries()
        changed = 0
        for key, mode in sorted(inbound.items()):
            if current.get(key) != int(mode):
                self._lib.update(fd, _inbound_key(key), ctypes.c_uint8(int(mode)))
                changed += 1
        removed = sum(1 for key in current if key not in inbound and self._lib.delete(fd, _inbound_key(key)))
        return changed, removed

    # Observations.

    def counters(self) -> Mapping[Counter, int]:
        return self._percpu_counters(MapName.COUNTERS, COUNTER_INDEX)

    def inbound_counters(self) -> Mapping[InboundCounter, int]:
        return self._percpu_counters(MapName.INBOUND_COUNTERS, INBOUND_COUNTER_INDEX)

    def _percpu_counters(self, name: MapName, indexes: Mapping[C, int]) -> Mapping[C, int]:
        fd = self._fd(name)
        slots = (ctypes.c_uint64 * self._cpus)()
        result: dict[C, int] = {}
        for counter, index in indexes.items():
            if not self._lib.lookup(fd, ctypes.c_uint32(index), slots):
                raise MapError(f"counter {counter} missing from {name}")
            result[counter] = sum(int(slot) for slot in slots)
        return result

    def connections(self) -> list[RedirectedConnection]:
        """Established redirected connections whose original destination the data path still holds."""
        fd = self._fd(MapName.ORIGDST_BY_TUPLE)
        result: list[RedirectedConnection] = []
        for key in list(self._keys(MapName.ORIGDST_BY_TUPLE)):
            assert isinstance(key, CTuple)
            value = COrigDst()
            if not self._lib.lookup(fd, key, value):
                continue
            result.append(
                RedirectedConnection(
                    client=Endpoint(ip=_ip_from_be(int(key.client_ip)), port=int(key.client_port)),
                    envoy=Endpoint(ip=_ip_from_be(int(key.envoy_ip)), port=int(key.envoy_port)),
                    original=Endpoint(ip=_ip_from_be(int(value.ip)), port=socket.ntohs(int(value.port))),
                )
            )
        return result

    def pending_connects(self) -> int:
        """Redirected connects not (yet) established: entries keyed by socket cookie."""
        return sum(1 for _ in self._keys(MapName.ORIGDST_BY_COOKIE))

    # The whole state.

    def reconcile(self, desired: DesiredState) -> ReconcileReport:
        """Makes the maps equal to `desired`. Additions go first and removals last, so a pod or destination in
        both the old and the new state is never briefly unredirected."""
        target_changed = self.target() != desired.target
        if target_changed:
            self.set_target(desired.target)
        current = self.meshed()
        added = updated = 0
        for cookie, settings in desired.meshed.items():
            previous = current.get(cookie)
            if previous == settings:
                continue
            self.set_meshed(cookie, settings)
            if previous is None:
                added += 1
            else:
                updated += 1
        current_services = self.services()
        self.set_services(desired.services)
        exclusions_changed = self.exclusions() != desired.exclusions
        if exclusions_changed:
            self.set_exclusions(desired.exclusions)
        inbound_set, inbound_removed = self.set_inbound(desired.inbound)
        removed = sum(1 for cookie in current if cookie not in desired.meshed and self.remove_meshed(cookie))
        report = ReconcileReport(
            meshed_added=added,
            meshed_removed=removed,
            meshed_updated=updated,
            services_added=len(desired.services - current_services),
            services_removed=len(current_services - desired.services),
            exclusions_changed=exclusions_changed,
            target_changed=target_changed,
            inbound_set=inbound_set,
            inbound_removed=inbound_removed,
        )
        if report.changed:
            log.info("datapath maps reconciled: %s", report)
        return report


def _possible_cpus() -> int:
    """Per-CPU maps hold one slot per possible CPU (not online): parse /sys/devices/system/cpu/possible."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        first, _, last = part.partition("-")
        count += (int(last) if last else int(first)) - int(first) + 1
    return count
