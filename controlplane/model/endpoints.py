"""Endpoints of a Service, from EndpointSlices (discovery.k8s.io/v1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.service import Protocol, ServicePort


class AddressType(StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"
    FQDN = "FQDN"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    addresses: tuple[str, ...]
    # The EndpointSlice API's conditions, with its defaults applied: a missing `ready` means ready,
    # a missing `serving` means the same as `ready`, a missing `terminating` means not terminating.
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""
    hostname: str = ""
    # The Pod behind it (its Workload's ref), when the slice says so.
    target: ObjectRef | None = None

    @property
    def usable(self) -> bool:
        """Send new requests here: ready, or (while everything else is draining) still serving."""
        return self.ready


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPort:
    # "" matches an unnamed Service port.
    name: str = ""
    # None: "all ports" (the API allows it for selector-less services); no usable port for us.
    port: int | None = None
    protocol: Protocol = Protocol.TCP
    app_protocol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    namespace: str
    name: str
    # From label `kubernetes.io/service-name`; "" when the slice belongs to no Service.
    service: str = ""
    address_type: AddressType = AddressType.IPV4
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.ENDPOINT_SLICE, namespace=self.namespace, name=self.name)

    @property
    def service_ref(self) -> ObjectRef | None:
        return ObjectRef.service(self.namespace, self.service) if self.service else None

    def port_named(self, name: str) -> EndpointPort | None:
        return next((p for p in self.ports if p.name == name), None)

    def port_for(self, service_port: ServicePort) -> int | None:
        """The endpoints' port behind a Service port: EndpointSlices name ports after the Service's, with
        named target ports already resolved per pod."""
        for p in self.ports:
            if p.name == service_port.name and p.protocol is service_port.protocol:
                return p.port
        return None
