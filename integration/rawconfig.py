"""Builders of raw Envoy resources (as the YAML dicts the raw source reads) and a writer for a source dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
ADS = {"ads": {}, "resource_api_version": "V3"}

Doc = dict[str, Any]


def listener(name: str, route_config: str, *, port: int = 0) -> Doc:
    """An HTTP listener on 127.0.0.1 (port 0: Envoy picks; read it from /listeners) with routes over RDS."""
    return {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM,
                            "stat_prefix": name,
                            "rds": {"route_config_name": route_config, "config_source": ADS},
                            "http_filters": [
                                {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}
                            ],
                        },
                    }
                ]
            }
        ],
    }


def route_config(name: str, routes: list[tuple[str, dict[str, int]]]) -> Doc:
    """Routes by path prefix, each to weighted clusters (`{"c1": 90, "c2": 10}`), first match wins."""

    def action(weights: dict[str, int]) -> Doc:
        if len(weights) == 1:
            return {"cluster": next(iter(weights))}
        return {"weighted_clusters": {"clusters": [{"name": c, "weight": w} for c, w in weights.items()]}}

    return {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": [
            {
                "name": "all",
                "domains": ["*"],
                "routes": [{"match": {"prefix": prefix}, "route": action(w)} for prefix, w in routes],
            }
        ],
    }


def eds_cluster(name: str, *, connect_timeout: str = "1s") -> Doc:
    return {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "connect_timeout": connect_timeout,
        "eds_cluster_config": {"eds_config": ADS},
    }


def endpoints(cluster: str, ports: list[int]) -> Doc:
    return {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                    for p in ports
                ]
            }
        ],
    }


def write_docs(path: Path, docs: list[Doc]) -> None:
    """Write a multi-document YAML file atomically (the watcher never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, path)
