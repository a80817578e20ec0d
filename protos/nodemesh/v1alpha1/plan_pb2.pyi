from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MtlsMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MTLS_MODE_UNSPECIFIED: _ClassVar[MtlsMode]
    MTLS_MODE_PERMISSIVE: _ClassVar[MtlsMode]
    MTLS_MODE_STRICT: _ClassVar[MtlsMode]
MTLS_MODE_UNSPECIFIED: MtlsMode
MTLS_MODE_PERMISSIVE: MtlsMode
MTLS_MODE_STRICT: MtlsMode

class NetnsRef(_message.Message):
    __slots__ = ("path", "pid")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    path: str
    pid: int
    def __init__(self, path: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("uid", "namespace", "name", "ips", "service_account", "spiffe_id", "netns", "exclude_ports", "mtls_mode", "port_mtls")
    class PortMtlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: MtlsMode
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[MtlsMode, str]] = ...) -> None: ...
    UID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PORTS_FIELD_NUMBER: _ClassVar[int]
    MTLS_MODE_FIELD_NUMBER: _ClassVar[int]
    PORT_MTLS_FIELD_NUMBER: _ClassVar[int]
    uid: str
    namespace: str
    name: str
    ips: _containers.RepeatedScalarFieldContainer[str]
    service_account: str
    spiffe_id: str
    netns: NetnsRef
    exclude_ports: _containers.RepeatedScalarFieldContainer[int]
    mtls_mode: MtlsMode
    port_mtls: _containers.ScalarMap[int, MtlsMode]
    def __init__(self, uid: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., ips: _Optional[_Iterable[str]] = ..., service_account: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., netns: _Optional[_Union[NetnsRef, _Mapping]] = ..., exclude_ports: _Optional[_Iterable[int]] = ..., mtls_mode: _Optional[_Union[MtlsMode, str]] = ..., port_mtls: _Optional[_Mapping[int, MtlsMode]] = ...) -> None: ...

class ServiceVip(_message.Message):
    __slots__ = ("namespace", "name", "ips", "ports")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    ips: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., ips: _Optional[_Iterable[str]] = ..., ports: _Optional[_Iterable[int]] = ...) -> None: ...

class NodeSettings(_message.Message):
    __slots__ = ("envoy_address", "outbound_port", "hbone_port", "exclude_cidrs", "exclude_ports", "strict_inbound", "trust_domain", "outbound_ports")
    ENVOY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_PORT_FIELD_NUMBER: _ClassVar[int]
    HBONE_PORT_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CIDRS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PORTS_FIELD_NUMBER: _ClassVar[int]
    STRICT_INBOUND_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_PORTS_FIELD_NUMBER: _ClassVar[int]
    envoy_address: str
    outbound_port: int
    hbone_port: int
    exclude_cidrs: _containers.RepeatedScalarFieldContainer[str]
    exclude_ports: _containers.RepeatedScalarFieldContainer[int]
    strict_inbound: bool
    trust_domain: str
    outbound_ports: int
    def __init__(self, envoy_address: _Optional[str] = ..., outbound_port: _Optional[int] = ..., hbone_port: _Optional[int] = ..., exclude_cidrs: _Optional[_Iterable[str]] = ..., exclude_ports: _Optional[_Iterable[int]] = ..., strict_inbound: _Optional[bool] = ..., trust_domain: _Optional[str] = ..., outbound_ports: _Optional[int] = ...) -> None: ...
