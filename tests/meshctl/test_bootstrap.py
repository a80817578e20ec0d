from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
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
