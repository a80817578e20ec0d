from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import cli
from controlplane.logs import LogFormat
from controlplane.settings import SourceKind, SourceSpec


def test_defaults_and_repeatable_listen_addresses() -> None:
    settings = cli.parse_settings(["--source", "dir:/tmp/x"])
    assert settings.source.kind is SourceKind.DIR
    assert settings.source.path == Path("/tmp/x")
    assert settings.xds_listen == ("127.0.0.1:15010",)
    assert settings.admin_listen == "127.0.0.1:15014"
    assert settings.log_format is LogFormat.TEXT
    settings = cli.parse_settings(
        [
            "--source=dir:d",
            "--xds-listen=0.0.0.0:0",
            "--xds-listen=unix:/run/x.sock",
            "--log-format=json",
            "--debounce-quiet=0.2",
            "--debounce-max=2",
            "--max-connection-age=60",
        ]
    )
    assert settings.xds_listen == ("0.0.0.0:0", "unix:/run/x.sock")
    assert settings.log_format is LogFormat.JSON
    assert (settings.debounce_quiet, settings.debounce_max, settings.max_connection_age) == (0.2, 2.0, 60.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "git:x"], "unknown kind 'git'"),
        (["--source", "dir:"], "dir needs a path"),
        (["--source", "files:"], "files needs a path"),
        (["--source", "dir:x", "--xds-listen", "localhost"], "expected host:port"),
        (["--source", "dir:x", "--admin-listen", "h:99999"], "expected host:port"),
        (["--source", "dir:x", "--debounce-quiet", "2", "--debounce-max", "1"], "--debounce-max"),
        ([], "--source"),
    ],
)
def test_bad_flags_exit_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_settings(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_the_source_and_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_settings(["--help"])
    text = capsys.readouterr().out
    assert "nodes/<node-id>/*.yaml" in text
    assert "kube:KUBECONFIG" in text and "files:DIR" in text
    assert "examples:" in text
    assert "--xds-listen" in text


def test_missing_source_directory_fails_before_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--source", f"dir:{tmp_path / 'nope'}", "--admin-listen", "127.0.0.1:0"])
    assert code == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        ("kube", SourceKind.KUBE, None),
        ("kube:/etc/kubeconfig", SourceKind.KUBE, Path("/etc/kubeconfig")),
        ("files:/srv/mesh", SourceKind.FILES, Path("/srv/mesh")),
        ("dir:raw", SourceKind.DIR, Path("raw")),
    ],
)
def test_source_forms(text: str, kind: SourceKind, path: Path | None) -> None:
    spec = SourceSpec.parse(text)
    assert (spec.kind, spec.path) == (kind, path)
    assert str(spec) == text


def test_ca_flags_reach_the_settings(tmp_path: Path) -> None:
    settings = cli.parse_settings(
        ["--source", "kube", "--ca-file", str(tmp_path / "ca.pem"), "--node-tokens", str(tmp_path / "t")]
    )
    assert settings.ca_file == tmp_path / "ca.pem"
    assert settings.node_tokens == tmp_path / "t"
    assert settings.trust_domain == "cluster.local"
