"""Security and operability invariants of the control-plane Deployment and the node DaemonSet, and their
command lines against the real argument parsers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 - resolves an Any
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401 - resolves an Any
    http_connection_manager_pb2,
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401 - resolves the Any
from google.protobuf import json_format

from controlplane.cli import parse_settings as parse_controlplane_settings
from controlplane.settings import SourceKind
from meshctl import cli as meshctl_cli
from nodeagent.cli import parse_args as agent_parse_args
from nodeagent.cli import settings_from as agent_settings
from nodeagent.envoy.cli import envoy_settings_from
from tests.manifests.layout import Doc, containers, find, install_documents, pod_spec

DOCS = install_documents()
DEPLOYMENT = find(DOCS, "Deployment", "nodemesh-controlplane")
DAEMONSET = find(DOCS, "DaemonSet", "nodemesh-node")
NAMESPACE: Final = "nodemesh-system"

# What the node agent may add, each for a reason given in node/daemonset.yaml; Envoy and the init container
# that writes its bootstrap get none.
AGENT_CAPABILITIES: Final = {"BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"}
ENVOY_CAPABILITIES: Final[set[str]] = set()
BOOTSTRAP_CAPABILITIES: Final[set[str]] = set()
# Host paths the node pod may mount, and which must be read-only in every container mounting them.
HOST_PATHS: Final = {"/sys/fs/bpf", "/sys/fs/cgroup", "/var/run/netns", "/proc", "/lib/modules", "/usr/src"}
READ_ONLY_HOST_PATHS: Final = {"/var/run/netns", "/proc", "/lib/modules", "/usr/src"}


def _container(workload: Doc, name: str) -> Doc:
    found = [c for c in containers(workload) if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def _effective(workload: Doc, container: Doc, key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod_spec(workload).get("securityContext") or {}).get(key)


def _host_paths(workload: Doc) -> dict[str, str]:
    """Volume name -> host path."""
    return {
        v["name"]: v["hostPath"]["path"] for v in pod_spec(workload).get("volumes") or [] if "hostPath" in v
    }


def test_everything_namespaced_is_in_the_nodemesh_namespace() -> None:
    for doc in DOCS:
        namespace = (doc.get("metadata") or {}).get("namespace")
        cluster_scoped = doc["kind"] in (
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        )
        assert namespace == (None if cluster_scoped else NAMESPACE), (doc["kind"], doc["metadata"]["name"])


def test_the_control_plane_runs_unprivileged() -> None:
    spec = pod_spec(DEPLOYMENT)
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for container in containers(DEPLOYMENT):
        context = container.get("securityContext") or {}
        assert _effective(DEPLOYMENT, container, "runAsNonRoot") is True
        uid = _effective(DEPLOYMENT, container, "runAsUser")
        assert isinstance(uid, int) and uid > 0
        assert context.get("readOnlyRootFilesystem") is True
        assert context.get("allowPrivilegeEscalation") is False
        assert not context.get("privileged")
        assert context.get("capabilities") == {"drop": ["ALL"]}
        assert _effective(DEPLOYMENT, container, "seccompProfile") == {"type": "RuntimeDefault"}
    assert not any("hostPath" in v for v in spec.get("volumes") or [])


def test_the_control_plane_is_highly_available_and_probed() -> None:
    assert DEPLOYMENT["spec"]["replicas"] >= 2
    labels = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert labels.items() <= DEPLOYMENT["spec"]["template"]["metadata"]["labels"].items()
    anti = pod_spec(DEPLOYMENT)["affinity"]["podAntiAffinity"]
    terms = [t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname" and t["labelSelector"]["matchLabels"] == labels
        for t in terms
    )
    budget = find(DOCS, "PodDisruptionBudget", "nodemesh-controlplane")
    assert budget["spec"]["selector"]["matchLabels"] == labels
    assert 1 <= budget["spec"]["minAvailable"] < DEPLOYMENT["spec"]["replicas"]

    container = _container(DEPLOYMENT, "controlplane")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc-xds": 15010, "http-admin": 15014}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]

    service = find(DOCS, "Service", "nodemesh-controlplane")
    assert service["spec"]["selector"] == labels
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("grpc-xds", 15010, "grpc-xds"),
        ("http-admin", 15014, "http-admin"),
    }


def test_the_node_pod_adds_only_the_capabilities_ebpf_needs() -> None:
    spec = pod_spec(DAEMONSET)
    assert spec["hostNetwork"] is True
    assert not spec.get("hostPID") and not spec.get("hostIPC")
    added: dict[str, set[str]] = {}
    for container in containers(DAEMONSET):
        context = container.get("securityContext") or {}
        assert context.get("privileged") is False, container["name"]
        assert context.get("allowPrivilegeEscalation") is False, container["name"]
        assert context.get("readOnlyRootFilesystem") is True, container["name"]
        assert _effective(DAEMONSET, container, "seccompProfile") == {"type": "RuntimeDefault"}
        capabilities = context.get("capabilities") or {}
        assert capabilities.get("drop") == ["ALL"], container["name"]
        added[container["name"]] = set(capabilities.get("add") or [])
    assert added == {
        "agent": AGENT_CAPABILITIES,
        "envoy": ENVOY_CAPABILITIES,
        "envoy-bootstrap": BOOTSTRAP_CAPABILITIES,
    }
    # The init container writes one file into an emptyDir: it does not even need root.
    bootstrap = _container(DAEMONSET, "envoy-bootstrap")
    assert _effective(DAEMONSET, bootstrap, "runAsNonRoot") is True


def test_the_node_pod_mounts_only_the_host_paths_it_needs() -> None:
    host = _host_paths(DAEMONSET)
    assert set(host.values()) == HOST_PATHS
    for container in containers(DAEMONSET):
        for mount in container.get("volumeMounts") or []:
            path = host.get(mount["name"])
            if path in READ_ONLY_HOST_PATHS:
                assert mount.get("readOnly") is True, (container["name"], path)
            if path is not None:
                # Host mounts never hide the container's own /proc or the runtime's cgroup view.
                assert mount["mountPath"] not in ("/proc", "/sys/fs/cgroup"), mount
    netns = next(
        m for m in _container(DAEMONSET, "agent")["volumeMounts"] if host.get(m["name"]) == "/var/run/netns"
    )
    assert netns["mountPropagation"] == "HostToContainer"


def test_the_sds_socket_is_shared_by_the_two_containers_only() -> None:
    volumes = {v["name"]: v for v in pod_spec(DAEMONSET)["volumes"]}
    sds = [
        (c["name"], m["mountPath"])
        for c in containers(DAEMONSET)
        for m in c.get("volumeMounts") or []
        if m["name"] == "sds"
    ]
    assert "emptyDir" in volumes["sds"]
    assert sorted(name for name, _ in sds) == ["agent", "envoy"]
    socket_dir = {path for _, path in sds}
    assert len(socket_dir) == 1
    # The agent serves the socket there; Envoy's bootstrap (written by the init container) names it there.
    for name in ("agent", "envoy-bootstrap"):
        flags = _flags(_container(DAEMONSET, name))
        assert flags["--sds-socket"].rsplit("/", 1)[0] in socket_dir


def test_the_node_pod_runs_everywhere_one_node_at_a_time() -> None:
    spec = pod_spec(DAEMONSET)
    assert {"operator": "Exists"} in spec["tolerations"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert DAEMONSET["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_the_agent_credential_is_an_audience_bound_token_and_nothing_else() -> None:
    spec = pod_spec(DAEMONSET)
    assert spec["automountServiceAccountToken"] is False
    account = find(DOCS, "ServiceAccount", spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    projected = next(v for v in spec["volumes"] if v["name"] == "nodemesh-token")["projected"]["sources"]
    assert projected == [
        {"serviceAccountToken": {"audience": "nodemesh-ca", "expirationSeconds": 3600, "path": "token"}}
    ]
    agent = _container(DAEMONSET, "agent")
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "nodemesh-token")
    assert _flags(agent)["--token-file"] == f"{mount['mountPath']}/token"
    assert all(
        m["name"] != "nodemesh-token"
        for c in containers(DAEMONSET)
        if c["name"] != "agent"
        for m in c.get("volumeMounts") or []
    )


def _flags(container: Doc) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in container["args"]:
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            out[key] = value
    return out


def _expand(args: list[str]) -> list[str]:
    # The kubelet substitutes $(VAR) from the container's env; NODE_NAME is the only one used.
    return [a.replace("$(NODE_NAME)", "node-a") for a in args]


def test_the_agent_command_line_is_what_the_agent_accepts() -> None:
    agent = _container(DAEMONSET, "agent")
    assert agent["command"] == ["nodemesh-agent"]
    settings = agent_settings(agent_parse_args(_expand(agent["args"])))
    assert settings.node == "node-a"
    assert settings.controlplane == "nodemesh-controlplane.nodemesh-system.svc:15010"
    assert settings.token_file is not None and settings.sds_socket is not None
    # The agent's Envoy cgroup is where the envoy container puts Envoy.
    assert str(settings.envoy_cgroup) == _flags(_container(DAEMONSET, "envoy"))["--cgroup"]
    port = int(settings.health_listen.rpartition(":")[2])
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}


def _mount_path(container: Doc, volume: str) -> str:
    (path,) = [m["mountPath"] for m in container.get("volumeMounts") or [] if m["name"] == volume]
    assert isinstance(path, str)
    return path


def test_the_agent_reads_the_hosts_proc() -> None:
    agent = _container(DAEMONSET, "agent")
    settings = agent_settings(agent_parse_args(_expand(agent["args"])))
    proc = next(name for name, path in _host_paths(DAEMONSET).items() if path == "/proc")
    assert str(settings.proc_dir) == _mount_path(agent, proc)


def test_the_envoy_bootstrap_is_written_by_meshctl_from_the_init_containers_command_line(
    tmp_path: Path,
) -> None:
    init, envoy, agent = (_container(DAEMONSET, n) for n in ("envoy-bootstrap", "envoy", "agent"))
    assert init in pod_spec(DAEMONSET)["initContainers"]
    assert init["command"] == ["meshctl"]
    args = _expand(init["args"])
    parsed = meshctl_cli.build_parser().parse_args(args)
    assert parsed.command == "bootstrap"
    # Written into the emptyDir the envoy container reads, at the path its supervisor is given.
    volumes = {v["name"]: v for v in pod_spec(DAEMONSET)["volumes"]}
    (shared,) = [m["name"] for m in init["volumeMounts"]]
    assert "emptyDir" in volumes[shared]
    out = parsed.out
    assert out.parent == Path(_mount_path(init, shared)) == Path(_mount_path(envoy, shared))
    agent_flags = _flags(agent)
    assert parsed.sds_socket == agent_flags["--sds-socket"]
    assert parsed.sub_controlplane == agent_flags["--controlplane"]
    # Run it for real (into tmp_path): what it writes is a valid Envoy bootstrap for this node.
    written = tmp_path / out.name
    assert meshctl_cli.main([a.replace(str(out), str(written)) for a in args]) == 0
    bootstrap = yaml.safe_load(written.read_text())
    json_format.ParseDict(bootstrap, bootstrap_pb2.Bootstrap())
    assert bootstrap["node"]["id"] == "node-a"
    pipes = [
        e["endpoint"]["address"].get("pipe", {}).get("path")
        for c in bootstrap["static_resources"]["clusters"]
        for group in c["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]
    assert agent_flags["--sds-socket"] in pipes
    # Envoy's Prometheus stats are served on the port the envoy container declares.
    (listener,) = bootstrap["static_resources"]["listeners"]
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert (
        listener["address"]["socket_address"]["port_value"] == ports["http-envoy-prom"] == parsed.stats_port
    )


def test_the_envoy_command_line_is_what_the_supervisor_accepts() -> None:
    envoy, init = _container(DAEMONSET, "envoy"), _container(DAEMONSET, "envoy-bootstrap")
    assert envoy["command"] == ["nodemesh-agent"]
    args = agent_parse_args(_expand(envoy["args"]))
    assert args.command == "envoy"
    settings = envoy_settings_from(args)
    assert str(settings.bootstrap) == _flags(init)["--out"]
    assert (
        args.cgroup is not None
        and str(args.cgroup) == _flags(_container(DAEMONSET, "agent"))["--envoy-cgroup"]
    )
    # The old epoch drains and exits before the kubelet's SIGKILL.
    assert settings.parent_shutdown_time < pod_spec(DAEMONSET)["terminationGracePeriodSeconds"]
    assert settings.drain_time <= settings.parent_shutdown_time


def test_the_control_plane_command_line_is_what_the_control_plane_accepts() -> None:
    container = _container(DEPLOYMENT, "controlplane")
    assert container["command"] == ["nodemesh-controlplane"]
    settings = parse_controlplane_settings(_expand(container["args"]))
    # In the cluster: the Kubernetes source with the pod's service account (no kubeconfig).
    assert settings.source.kind is SourceKind.KUBE and settings.source.path is None
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [int(a.rpartition(":")[2]) for a in settings.xds_listen] == [ports["grpc-xds"]]
    assert int(settings.admin_listen.rpartition(":")[2]) == ports["http-admin"]
    # Streams end before the kubelet's SIGKILL.
    assert settings.shutdown_grace < pod_spec(DEPLOYMENT)["terminationGracePeriodSeconds"]
