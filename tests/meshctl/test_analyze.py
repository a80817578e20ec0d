"""`meshctl analyze`: rendering, and offline runs over directories of manifests (no control plane)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from controlplane.model.diagnostics import Diagnostic, Location, Reason, Severity
from controlplane.model.refs import ObjectRef
from meshctl import analyze, cli
from meshctl.output import Painter

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples" / "mesh"

BROKEN = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bad-weight
  namespace: shop
spec:
  parentRefs:
    - {group: "", kind: Service, name: reviews}
  rules:
    - backendRefs:
        - {name: reviews-v1, port: 9080, weight: -1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: missing-backend
  namespace: shop
spec:
  parentRefs:
    - {group: "", kind: Service, name: reviews}
  rules:
    - matches: [{path: {type: PathPrefix, value: /missing}}]
      backendRefs:
        - {name: nowhere, port: 9080}
---
apiVersion: nodemesh.io/v1alpha1
kind: TrafficPolicy
metadata:
  name: typo
  namespace: shop
spec:
  targetRefs: [{group: "", kind: Service, name: reviews}]
  loadBalancr: {algorithm: RANDOM}
---
kind: [this is: not yaml
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_sample_mesh_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", "-f", str(SAMPLES))
    assert code == 0
    assert re.fullmatch(r"no problems found in \d+ objects\n", out)
    code, out, _ = run(capsys, "analyze", "-f", str(SAMPLES), "-o", "json")
    assert (code, json.loads(out)) == (0, [])


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    for sample in SAMPLES.glob("*.yaml"):
        shutil.copy(sample, tmp_path / sample.name)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    return tmp_path


def test_broken_objects_are_named_with_field_paths(
    capsys: pytest.CaptureFixture[str], broken_dir: Path
) -> None:
    code, out, err = run(capsys, "analyze", "-f", str(broken_dir), "-o", "json")
    assert code == 1, err
    documents = json.loads(out)
    found = {
        (d["severity"], analyze.object_text(d), d["field"], d["reason"], analyze.location_text(d))
        for d in documents
    }
    assert found == {
        (
            "Error",
            "HTTPRoute/shop/bad-weight",
            "spec.rules[0].backendRefs[0].weight",
            "OutOfRange",
            "broken.yaml:1",
        ),
        (
            "Error",
            "HTTPRoute/shop/missing-backend",
            "spec.rules[0].backendRefs[0]",
            "BackendNotFound",
            "broken.yaml:13",
        ),
        ("Error", "TrafficPolicy/shop/typo", "spec.loadBalancr", "UnknownField", "broken.yaml:26"),
        ("Error", "-", "", "InvalidYAML", "broken.yaml:35"),
    }
    # The table: one row per diagnostic, the location column, and the summary.
    code, out, _ = run(capsys, "analyze", "-f", str(broken_dir))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["SEVERITY", "OBJECT", "FIELD", "REASON", "LOCATION", "MESSAGE"]
    assert lines[-1] == "4 errors, 0 warnings in 4 objects"
    [row] = [line for line in lines if "TrafficPolicy/shop/typo" in line]
    assert row.split()[:5] == [
        "Error",
        "TrafficPolicy/shop/typo",
        "spec.loadBalancr",
        "UnknownField",
        "broken.yaml:26",
    ]
    assert "\x1b[" not in out  # not a terminal
    code, out, _ = run(capsys, "analyze", "-f", str(broken_dir), "-o", "yaml")
    assert code == 1 and yaml.safe_load(out) == documents


def test_warnings_alone_exit_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    security = REPO / "manifests" / "samples" / "security"
    for sample in security.glob("*.yaml"):
        shutil.copy(sample, tmp_path / sample.name)
    code, out, _ = run(capsys, "analyze", "-f", str(tmp_path))
    assert code == 0
    assert out.splitlines()[-1] == "0 errors, 1 warning in 1 object"
    assert "TargetNotFound" in out


def test_a_missing_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "analyze", "-f", str(tmp_path / "nope"))
    assert (code, out) == (2, "")
    assert "no such file or directory" in err


def test_render_without_locations_and_colours() -> None:
    diagnostics = [
        Diagnostic(
            severity=Severity.WARNING,
            reason=Reason.CONFLICT,
            message="shadowed\nby another",
            ref=ObjectRef(kind="PeerAuthentication", namespace="shop", name="b"),
            field="spec",
        ),
        Diagnostic(
            severity=Severity.ERROR,
            reason=Reason.PARENT_NOT_FOUND,
            message="no Service x",
            ref=ObjectRef(kind="HTTPRoute", namespace="shop", name="r"),
            field="spec.parentRefs[0]",
        ),
        Diagnostic(
            severity=Severity.ERROR,
            reason=Reason.INVALID_VALUE,
            message="bad",
            ref=ObjectRef(kind="Node", name="n1"),
        ),
    ]
    documents = [d.to_document() for d in diagnostics]
    plain = analyze.render(documents, Painter(enabled=False))
    assert plain.splitlines() == [
        "SEVERITY  OBJECT                     FIELD               REASON          MESSAGE",
        "Warning   PeerAuthentication/shop/b  spec                Conflict        shadowed by another",
        "Error     HTTPRoute/shop/r           spec.parentRefs[0]  ParentNotFound  no Service x",
        "Error     Node/n1                    -                   InvalidValue    bad",
        "",
        "2 errors, 1 warning in 3 objects",
    ]
    coloured = analyze.render(documents, Painter(enabled=True))
    assert "\x1b[31mError" in coloured and "\x1b[33mWarning" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    assert analyze.render([], Painter(enabled=False)) == "no problems found\n"
    assert analyze.has_errors(documents) and not analyze.has_errors(documents[:1])
    located = Diagnostic(
        severity=Severity.ERROR,
        reason=Reason.INVALID_YAML,
        message="m",
        location=Location(file="a.yaml", document=2),
    )
    assert analyze.location_text(located.to_document()) == "a.yaml (document 2)"
