from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 - resolves an Any
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 - resolves the Any
from google.protobuf import json_format

from meshctl import cli
from meshctl.bootstrap import (
    XDS_CLUSTER_NAME,
    BootstrapError,
    ControlPlaneAddress,
    OutputFormat,
    build_bootstrap,
    render,
)


def _xds_address(bootstrap: dict[str, Any]) -> dict[str, Any]:
    cluster = bootstrap["static_resources"]["clusters"][0]
    assert cluster["name"] == XDS_CLUSTER_NAME
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    address: dict[str, Any] = endpoint["address"]
    return address


def _as_proto(bootstrap: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    # ParseDict rejects unknown fields and bad enum values: the dict is a valid Envoy v3 bootstrap.
    return json_format.ParseDict(bootstrap, bootstrap_pb2.Bootstrap())


@pytest.mark.parametrize(("delta", "api_type"), [(False, "GRPC"), (True, "DELTA_GRPC")])
def test_bootstrap_points_ads_at_the_control_plane(delta: bool, api_type: str) -> None:
    bootstrap = build_bootstrap(
        node="node-a", controlplane=ControlPlaneAddress.parse("10.0.0.7:15010"), delta=delta
    )
    proto = _as_proto(bootstrap)
    assert proto.node.id == "node-a"
    assert proto.node.cluster == "nodemesh-envoy"
    assert proto.node.metadata.fields["nodemesh.io/kind"].string_value == "envoy"
    assert proto.node.metadata.fields["nodemesh.io/node"].string_value == "node-a"
    ads = proto.dynamic_resources.ads_config
    assert bootstrap["dynamic_resources"]["ads_config"]["api_type"] == api_type
    assert ads.grpc_services[0].envoy_grpc.cluster_name == XDS_CLUSTER_NAME
    assert proto.dynamic_resources.cds_config.HasField("ads")
    assert proto.dynamic_resources.lds_config.HasField("ads")
    assert _xds_address(bootstrap) == {"socket_address": {"address": "10.0.0.7", "port_value": 15010}}
    assert proto.static_resources.clusters[0].type == cluster_pb2.Cluster.STATIC
    assert proto.admin.address.socket_address.address == "127.0.0.1"
    assert proto.admin.address.socket_address.port_value == 15000


def test_unix_socket_control_plane_uses_a_pipe() -> None:
    bootstrap = build_bootstrap(node="n", controlplane=ControlPlaneAddress.parse("unix:/run/nm/xds.sock"))
    _as_proto(bootstrap)
    assert _xds_address(bootstrap) == {"pipe": {"path": "/run/nm/xds.sock"}}


def test_dns_name_is_resolved_by_envoy() -> None:
    bootstrap = build_bootstrap(node="n", controlplane=ControlPlaneAddress.parse("nodemesh.svc:15010"))
    assert _as_proto(bootstrap).static_resources.clusters[0].type == cluster_pb2.Cluster.STRICT_DNS


def test_admin_and_cluster_settings() -> None:
    bootstrap = build_bootstrap(
        node="n",
        controlplane=ControlPlaneAddress.parse("[::1]:9000"),
        admin_address="::1",
        admin_port=0,
        cluster="blue",
    )
    proto = _as_proto(bootstrap)
    assert proto.node.cluster == "blue"
    assert proto.admin.address.socket_address.address == "::1"
    assert _xds_address(bootstrap) == {"socket_address": {"address": "::1", "port_value": 9000}}


@pytest.mark.parametrize("text", ["", "host", "host:", ":80", "host:http", "host:0", "host:70000", "unix:"])
def test_bad_control_plane_addresses(text: str) -> None:
    with pytest.raises(BootstrapError, match="control-plane address"):
        ControlPlaneAddress.parse(text)


@pytest.mark.parametrize("text", ["127.0.0.1:15010", "[::1]:15010", "unix:/tmp/x.sock", "cp.example:1"])
def test_address_round_trips(text: str) -> None:
    assert str(ControlPlaneAddress.parse(text)) == text


def test_empty_node_is_rejected() -> None:
    with pytest.raises(BootstrapError, match="node"):
        build_bootstrap(node="", controlplane=ControlPlaneAddress.parse("127.0.0.1:1"))


def test_render_yaml_and_json_carry_the_same_bootstrap() -> None:
    bootstrap = build_bootstrap(node="n", controlplane=ControlPlaneAddress.parse("127.0.0.1:1"), delta=True)
    assert yaml.safe_load(render(bootstrap, OutputFormat.YAML)) == bootstrap
    assert json.loads(render(bootstrap, OutputFormat.JSON)) == bootstrap
    assert "&id" not in render(bootstrap, OutputFormat.YAML)  # no YAML anchors for readers to decode


def test_cli_bootstrap_uses_flag_then_env_then_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cli.CONTROLPLANE_ENV, raising=False)
    assert cli.main(["bootstrap", "--node", "a"]) == 0
    assert _xds_address(yaml.safe_load(capsys.readouterr().out))["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15010,
    }
    monkeypatch.setenv(cli.CONTROLPLANE_ENV, "unix:/env.sock")
    assert cli.main(["bootstrap", "--node", "a", "-o", "json"]) == 0
    assert _xds_address(json.loads(capsys.readouterr().out)) == {"pipe": {"path": "/env.sock"}}
    assert cli.main(["--controlplane", "10.1.1.1:1", "bootstrap", "--node", "a", "--delta"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert _xds_address(out)["socket_address"]["address"] == "10.1.1.1"
    assert cli.main(["bootstrap", "--node", "a", "--controlplane", "10.2.2.2:2"]) == 0
    assert _xds_address(yaml.safe_load(capsys.readouterr().out))["socket_address"]["address"] == "10.2.2.2"


def test_cli_bad_address_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--controlplane", "nonsense", "bootstrap", "--node", "a"]) == 2
    assert "control-plane address 'nonsense'" in capsys.readouterr().err


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0  # argparse's SystemExit becomes a return code
    help_text = capsys.readouterr().out
    assert "bootstrap" in help_text
    assert "examples:" in help_text
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("meshctl ")


def test_bootstrap_enables_internal_listeners_and_reaches_the_agents_sds() -> None:
    bootstrap = build_bootstrap(
        node="n", controlplane=ControlPlaneAddress.parse("127.0.0.1:1"), sds_socket="/run/nm/sds.sock"
    )
    (extension,) = bootstrap["bootstrap_extensions"]
    assert extension["name"] == "envoy.bootstrap.internal_listener"
    sds = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}["nodemesh_sds"]
    (group,) = sds["load_assignment"]["endpoints"]
    assert group["lb_endpoints"][0]["endpoint"]["address"] == {"pipe": {"path": "/run/nm/sds.sock"}}


def test_cli_bootstrap_writes_the_file_with_the_agents_sds_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "envoy.yaml"
    argv = ["bootstrap", "--node", "a", "--controlplane", "cp.example:15010", "--sds-socket", "/run/s.sock"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    written = yaml.safe_load(out.read_text())
    _as_proto(written)
    sds = {c["name"]: c for c in written["static_resources"]["clusters"]}["nodemesh_sds"]
    endpoint = sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/run/s.sock"}}
    assert [p.name for p in tmp_path.iterdir()] == ["envoy.yaml"]  # nothing staged left behind
    # Rewritten in place (a new control-plane address, say): replaced whole.
    assert cli.main([*argv, "--delta", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_cli_bootstrap_to_an_unwritable_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "envoy.yaml"
    assert cli.main(["bootstrap", "--node", "a", "--out", str(out)]) == 1
    assert f"cannot write the bootstrap to {out}" in capsys.readouterr().err


def test_a_stats_port_adds_a_listener_proxying_only_prometheus_stats_to_the_admin() -> None:
    bootstrap = build_bootstrap(
        node="n", controlplane=ControlPlaneAddress.parse("127.0.0.1:1"), admin_port=15000, stats_port=15090
    )
    parsed = _as_proto(bootstrap)
    (listener,) = parsed.static_resources.listeners
    assert listener.address.socket_address.port_value == 15090
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    ((route,),) = [vh.routes for vh in hcm.route_config.virtual_hosts]
    assert route.match.path == "/stats/prometheus"
    admin = {c.name: c for c in parsed.static_resources.clusters}[route.route.cluster]
    endpoint = admin.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert (endpoint.address.socket_address.address, endpoint.address.socket_address.port_value) == (
        "127.0.0.1",
        15000,
    )
    assert (
        "listeners"
        not in build_bootstrap(node="n", controlplane=ControlPlaneAddress.parse("a:1"))["static_resources"]
    )


@pytest.mark.parametrize(
    ("admin_port", "stats_port", "message"),
    [(0, 15090, "fixed admin port"), (15000, 15000, "is the admin port"), (15000, 70000, "out of range")],
)
def test_bad_stats_ports(admin_port: int, stats_port: int, message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        build_bootstrap(
            node="n",
            controlplane=ControlPlaneAddress.parse("127.0.0.1:1"),
            admin_port=admin_port,
            stats_port=stats_port,
        )
