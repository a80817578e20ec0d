"""A real Envoy with a static bootstrap, for testing the redirect without a control plane.

One outbound listener on the node IP:15001 with the `original_dst` listener filter. Filter chains are picked
by the restored original destination, so which chain (and stat prefix) served a connection shows what Envoy
believed the destination was:
- `vip_http` / `vip_tcp`: a service VIP on port 80 / 9000, proxied to one backend (a VIP has no real owner);
- `passthrough_http`: destination port 8080, HTTP connection manager to the ORIGINAL_DST cluster;
- `passthrough_tcp`: anything else, tcp_proxy to the ORIGINAL_DST cluster.
Each chain writes a JSON access log line with the downstream local address (the restored destination).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from integration.topology import Node, Process, Topology, TopologyError

OUTBOUND_PORT = 15001
VIP_HTTP_PORT = 80
VIP_TCP_PORT = 9000
PASSTHROUGH_HTTP_PORT = 8080

_ORIGINAL_DST_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
_LOG_FORMAT = {
    "chain": "%FILTER_CHAIN_NAME%",
    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_local": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
}


def _access_log(path: Path) -> list[dict[str, object]]:
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(path),
                "log_format": {"json_format": _LOG_FORMAT},
            },
        }
    ]


def _tcp_proxy(stat_prefix: str, cluster: str, log: Path) -> dict[str, object]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": stat_prefix,
            "cluster": cluster,
            "access_log": _access_log(log),
        },
    }


def _http(stat_prefix: str, cluster: str, log: Path) -> dict[str, object]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
            ".HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "access_log": _access_log(log),
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                    }
                ],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    },
                }
            ],
        },
    }


def _static_cluster(name: str, ip: IPv4Address, port: int) -> dict[str, object]:
    endpoint = {"endpoint": {"address": {"socket_address": {"address": str(ip), "port_value": port}}}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def bootstrap(
    *,
    listen: tuple[IPv4Address, ...],
    vip: IPv4Address,
    backend: IPv4Address,
    access_log: Path,
    ports: int = 1,
) -> dict[str, object]:
    """One outbound listener per address in `listen` and port from OUTBOUND_PORT (`ports` of them): the data
    path may spread connections over several."""

    def vip_match(port: int) -> dict[str, object]:
        return {"destination_port": port, "prefix_ranges": [{"address_prefix": str(vip), "prefix_len": 32}]}

    def listener(address: IPv4Address, port: int) -> dict[str, object]:
        return {
            "name": f"outbound-{address}:{port}",
            "address": {"socket_address": {"address": str(address), "port_value": port}},
            "listener_filters": [
                {
                    "name": "envoy.filters.listener.original_dst",
                    "typed_config": {"@type": _ORIGINAL_DST_TYPE},
                }
            ],
            "filter_chains": [
                {
                    "name": "vip_http",
                    "filter_chain_match": vip_match(VIP_HTTP_PORT),
                    "filters": [_http("vip_http", "svc_http", access_log)],
                },
                {
                    "name": "vip_tcp",
                    "filter_chain_match": vip_match(VIP_TCP_PORT),
                    "filters": [_tcp_proxy("vip_tcp", "svc_tcp", access_log)],
                },
                {
                    "name": "passthrough_http",
                    "filter_chain_match": {"destination_port": PASSTHROUGH_HTTP_PORT},
                    "filters": [_http("passthrough_http", "original_dst", access_log)],
                },
            ],
            "default_filter_chain": {
                "name": "passthrough_tcp",
                "filters": [_tcp_proxy("passthrough_tcp", "original_dst", access_log)],
            },
        }

    return {
        "node": {"id": "redirect-test", "cluster": "redirect-test"},
        "static_resources": {
            "listeners": [
                listener(address, OUTBOUND_PORT + offset) for address in listen for offset in range(ports)
            ],
            "clusters": [
                {
                    "name": "original_dst",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "2s",
                },
                _static_cluster("svc_http", backend, PASSTHROUGH_HTTP_PORT),
                _static_cluster("svc_tcp", backend, VIP_TCP_PORT),
            ],
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
    }


@dataclass
class RedirectEnvoy:
    """An Envoy running in a node's netns and its own cgroup."""

    topology: Topology
    node: Node
    process: Process
    admin_port: int
    access_log: Path

    @classmethod
    def start(
        cls,
        topology: Topology,
        node: Node,
        *,
        cgroup: Path,
        workdir: Path,
        envoy_binary: Path,
        vip: IPv4Address,
        backend: IPv4Address,
        extra_addresses: tuple[IPv4Address, ...] = (),
        ports: int = 1,
    ) -> RedirectEnvoy:
        config = workdir / "envoy.json"
        admin_path = workdir / "admin-address"
        access_log = workdir / "access.log"
        access_log.touch()
        config.write_text(
            json.dumps(
                bootstrap(
                    listen=(node.ip, *extra_addresses),
                    vip=vip,
                    backend=backend,
                    access_log=access_log,
                    ports=ports,
                )
            )
        )
        argv = [
            str(envoy_binary),
            "-c",
            str(config),
            "--admin-address-path",
            str(admin_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--file-flush-interval-msec",
            "50",
            "-l",
            "warning",
        ]
        # Envoy joins its cgroup before it starts: accepted sockets inherit the listener's cgroup, which is
        # where getsockopt is attached.
        with (workdir / "envoy.out").open("w") as out:
            process = topology.spawn(node, argv, cgroup=cgroup, name=f"{node.name}:envoy", stdout=out)
        envoy = cls(topology, node, process, 0, access_log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise TopologyError(f"envoy exited ({process.popen.returncode}): {process.stderr_tail()}")
            text = admin_path.read_text().strip() if admin_path.exists() else ""
            if text:
                envoy.admin_port = int(text.rsplit(":", 1)[1])
                try:
                    if "LIVE" in envoy.admin("/ready"):
                        return envoy
                except (OSError, TopologyError):
                    pass
            time.sleep(0.05)
        raise TopologyError("envoy did not become ready within 20s")

    def admin(self, path: str) -> str:
        return self.topology.http_get_in(self.node, "127.0.0.1", self.admin_port, path)

    def stats(self) -> dict[str, int]:
        """Counters and gauges, by name."""
        result: dict[str, int] = {}
        for line in self.admin("/stats?usedonly&type=All").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                result[name] = int(value)
        return result

    def stat(self, name: str) -> int:
        return self.stats().get(name, 0)

    def access_log_entries(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]
