from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.cli import build_parser, parse_args, settings_from


def test_run_is_the_default_command() -> None:
    args = parse_args(
        [
            "--node",
            "n1",
            "--controlplane",
            "unix:/run/xds.sock",
            "--cgroup",
            "/cg",
            "--envoy-cgroup",
            "/cg/envoy",
        ]
    )
    settings = settings_from(args)
    assert args.command == "run"
    assert settings.node == "n1" and settings.controlplane == "unix:/run/xds.sock"
    assert settings.pods_cgroup == Path("/cg") and settings.envoy_cgroup == Path("/cg/envoy")
    assert settings.bpffs == Path("/sys/fs/bpf/nodemesh") and settings.health_listen == "127.0.0.1:15021"


def test_uninstall_needs_only_the_pin_directory() -> None:
    args = parse_args(["uninstall", "--bpffs", "/sys/fs/bpf/x"])
    assert args.command == "uninstall" and args.bpffs == Path("/sys/fs/bpf/x")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--controlplane", "nohost", "expected host:port"),
        ("--controlplane", "unix:relative.sock", "absolute path"),
        ("--health-listen", "localhost", "expected host:port"),
        ("--xds-retry-max", "0", "must be > 0"),
    ],
)
def test_bad_flags_are_explained(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"--controlplane": "127.0.0.1:1", "--cgroup": "/cg", "--envoy-cgroup": "/cg/e", "--node": "n"}
    base[flag] = value
    with pytest.raises(SystemExit):
        parse_args([item for pair in base.items() for item in pair])
    assert message in capsys.readouterr().err


def test_help_explains_the_commands_and_endpoints() -> None:
    text = build_parser().format_help()
    for needle in ("uninstall", "/readyz", "--bpffs", "pinned"):
        assert needle in text
