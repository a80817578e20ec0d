from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.sources.rawdir import RawSourceError, RawXdsDirectory, parse_text
from controlplane.xds import typeurls

CLUSTER = """\
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: {name}
connect_timeout: {timeout}
"""

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
LISTENER_WITH_HCM = f"""\
"@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: http
address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
filter_chains:
  - filters:
      - name: hcm
        typed_config:
          "@type": {HCM}
          stat_prefix: http
          rds: {{route_config_name: r, config_source: {{ads: {{}}}}}}
          http_filters:
            - name: router
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def cluster(name: str, timeout: str = "1s") -> str:
    return CLUSTER.format(name=name, timeout=timeout)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # Make every write visible to a stat-signature check even within one mtime tick.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def names(directory: RawXdsDirectory, node: str | None = None) -> list[tuple[str, str]]:
    resources, _ = directory.resources(node)
    return [(typeurls.short_name(r.type_url), r.name) for r in resources]


def test_multi_document_file_parses_every_resource_with_nested_anys() -> None:
    parsed = parse_text(cluster("a") + "---\n" + LISTENER_WITH_HCM + "---\n", file="x.yaml")
    assert parsed.diagnostics == ()
    assert [(r.name, r.document) for r in parsed.resources] == [("a", 0), ("http", 1)]
    assert parsed.resources[1].type_url == typeurls.LISTENER


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            '"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconect_timeout: 1s\n',
            'no field named "conect_timeout"',
        ),
        (
            '"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconnect_timeout: soon\n',
            "connect_timeout",
        ),
        ("name: a\n", "missing '@type'"),
        ('"@type": type.googleapis.com/envoy.config.core.v3.Node\nid: a\n', "unknown @type"),
        ("- just\n- a list\n", "expected a mapping"),
        ('"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster\nconnect_timeout: 1s\n', "no name"),
    ],
)
def test_bad_document_names_file_index_and_field(document: str, expected: str) -> None:
    parsed = parse_text(cluster("good") + "---\n" + document, file="bad.yaml")
    assert [r.name for r in parsed.resources] == ["good"]
    [diagnostic] = parsed.diagnostics
    assert diagnostic.file == "bad.yaml"
    assert diagnostic.document == 1
    assert expected in diagnostic.message
    assert str(diagnostic).startswith("bad.yaml: document 1: ")


def test_nested_typed_config_error_names_the_path() -> None:
    bad = LISTENER_WITH_HCM.replace("stat_prefix: http", "stat_prefix: http\n          bogus_field: 1")
    [diagnostic] = parse_text(bad, file="l.yaml").diagnostics
    assert "bogus_field" in diagnostic.message


def test_yaml_syntax_error_keeps_the_documents_before_it() -> None:
    parsed = parse_text(cluster("a") + "---\nname: [unclosed\n---\n" + cluster("c"), file="y.yaml")
    assert [r.name for r in parsed.resources] == ["a"]
    [diagnostic] = parsed.diagnostics
    assert diagnostic.document == 1
    assert "invalid YAML" in diagnostic.message


def test_scan_sees_new_changed_and_removed_files(tmp_path: Path) -> None:
    directory = RawXdsDirectory(tmp_path)
    assert not directory.scan()
    write(tmp_path / "a.yaml", cluster("a"))
    write(tmp_path / "notes.txt", "ignored")
    change = directory.scan()
    assert change.default_changed and not change.nodes_changed
    assert names(directory) == [("cds", "a")]
    assert not directory.scan()  # nothing changed: no work
    write(tmp_path / "a.yaml", cluster("a2"))
    assert directory.scan().default_changed
    assert names(directory) == [("cds", "a2")]
    (tmp_path / "a.yaml").unlink()
    assert directory.scan().default_changed
    assert names(directory) == []


def test_broken_edit_keeps_the_files_last_good_state(tmp_path: Path) -> None:
    directory = RawXdsDirectory(tmp_path)
    write(tmp_path / "a.yaml", cluster("a") + "---\n" + cluster("b"))
    directory.scan()
    write(tmp_path / "a.yaml", cluster("a") + "---\n" + cluster("b", timeout="later"))
    directory.scan()
    assert names(directory) == [("cds", "a"), ("cds", "b")]
    [diagnostic] = directory.diagnostics
    assert diagnostic.document == 1
    write(tmp_path / "a.yaml", cluster("a"))
    directory.scan()
    assert names(directory) == [("cds", "a")]
    assert directory.diagnostics == ()


def test_first_load_of_a_partly_bad_file_loads_the_good_documents(tmp_path: Path) -> None:
    directory = RawXdsDirectory(tmp_path)
    write(tmp_path / "a.yaml", cluster("a", timeout="x") + "---\n" + cluster("b"))
    directory.scan()
    assert names(directory) == [("cds", "b")]
    assert len(directory.diagnostics) == 1


def test_node_files_add_to_and_override_the_defaults(tmp_path: Path) -> None:
    directory = RawXdsDirectory(tmp_path)
    write(tmp_path / "shared.yaml", cluster("shared") + "---\n" + cluster("common", "1s"))
    write(tmp_path / "nodes" / "node-a" / "own.yaml", cluster("only-a") + "---\n" + cluster("common", "2s"))
    change = directory.scan()
    assert change.default_changed
    assert change.nodes_changed == {"node-a"}
    assert directory.nodes == {"node-a"}
    assert names(directory) == [("cds", "common"), ("cds", "shared")]
    assert names(directory, "node-a") == [("cds", "common"), ("cds", "only-a"), ("cds", "shared")]
    [common] = [r for r in directory.resources("node-a")[0] if r.name == "common"]
    assert common.file.endswith("own.yaml")
    write(tmp_path / "nodes" / "node-a" / "own.yaml", cluster("only-a"))
    change = directory.scan()
    assert not change.default_changed
    assert change.nodes_changed == {"node-a"}
    (tmp_path / "nodes" / "node-a" / "own.yaml").unlink()
    assert directory.scan().nodes_changed == {"node-a"}
    assert directory.nodes == frozenset()


def test_duplicate_names_across_files_keep_the_first(tmp_path: Path) -> None:
    directory = RawXdsDirectory(tmp_path)
    write(tmp_path / "a.yaml", cluster("dup", "1s"))
    write(tmp_path / "b.yaml", cluster("dup", "2s"))
    directory.scan()
    resources, problems = directory.resources()
    assert [r.file.endswith("a.yaml") for r in resources] == [True]
    [problem] = problems
    assert problem.file.endswith("b.yaml")
    assert "duplicate cds 'dup'" in problem.message


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RawSourceError, match="not a directory"):
        RawXdsDirectory(tmp_path / "nope").scan()
