"""The node's eBPF data path: redirect meshed pods' outbound TCP to the node Envoy (the only bcc importer).

lib = Libbpf.load()
datapath = Datapath(pin_dir=Path("/sys/fs/bpf/nodemesh"), lib=lib)
datapath.install(pods_cgroup=..., envoy_cgroup=...)   # blocking: compile/attach or adopt the pins
with datapath.open_maps() as maps:                    # the pinned maps, by path
    maps.reconcile(DesiredState(target=..., meshed={netns_cookie(path): PodSettings()}, ...))
datapath.uninstall()                                  # removes pins, which detaches everything
"""

from nodeagent.datapath.errors import (
    DatapathError,
    DatapathUnavailableError,
    MapError,
    NetnsError,
    ProgramError,
)
from nodeagent.datapath.libbpf import Libbpf
from nodeagent.datapath.loader import Datapath, InstallReport, LinkStatus
from nodeagent.datapath.maps import (
    MAX_OUTBOUND_PORTS,
    Counter,
    DatapathMaps,
    DesiredState,
    EnvoyTarget,
    Exclusions,
    InboundCounter,
    InboundKey,
    InboundMode,
    PodSettings,
    ReconcileReport,
    RedirectMaps,
    ServicePort,
)
from nodeagent.datapath.netns import netns_cookie, netns_path
from nodeagent.datapath.netnshooks import NetnsHooks, NetnsLink, NetnsSyncReport
from nodeagent.datapath.programs import Hook

__all__ = [
    "MAX_OUTBOUND_PORTS",
    "Counter",
    "Datapath",
    "DatapathError",
    "DatapathMaps",
    "DatapathUnavailableError",
    "DesiredState",
    "EnvoyTarget",
    "Exclusions",
    "Hook",
    "InboundCounter",
    "InboundKey",
    "InboundMode",
    "InstallReport",
    "Libbpf",
    "LinkStatus",
    "MapError",
    "NetnsError",
    "NetnsHooks",
    "NetnsLink",
    "NetnsSyncReport",
    "PodSettings",
    "ProgramError",
    "ReconcileReport",
    "RedirectMaps",
    "ServicePort",
    "netns_cookie",
    "netns_path",
]
