"""Every manifest parses, names itself, and is installed by the kustomization (and nothing else is)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.manifests.layout import (
    KUSTOMIZATION,
    MANIFESTS,
    SAMPLES,
    documents,
    identity,
    install_documents,
    install_files,
    is_kustomization,
    is_raw_envoy,
    yaml_files,
)

KUBECTL = shutil.which("kubectl")
# DNS-1123 subdomain: what the API server requires of most object names.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ALL_FILES = yaml_files()


def _rel(path: Path) -> str:
    return str(path.relative_to(MANIFESTS))


def test_there_is_something_to_check() -> None:
    names = {_rel(p) for p in ALL_FILES}
    assert {"kustomization.yaml", "controlplane/deployment.yaml", "node/daemonset.yaml"} <= names
    assert any(p.parent.name == "mesh" for p in ALL_FILES)


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_every_file_parses_and_every_document_names_itself(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{_rel(path)} holds no document"
    if is_kustomization(path):
        assert len(docs) == 1
        assert docs[0]["kind"] == "Kustomization"
        return
    for doc in docs:
        if is_raw_envoy(path):
            assert str(doc.get("@type", "")).startswith("type.googleapis.com/envoy."), _rel(path)
            continue
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], _rel(path)
        assert isinstance(doc.get("kind"), str) and doc["kind"], _rel(path)
        name = (doc.get("metadata") or {}).get("name")
        assert isinstance(name, str) and NAME.match(name), f"{_rel(path)}: bad metadata.name {name!r}"


def test_every_document_is_unique_in_the_install() -> None:
    seen = [identity(doc) for doc in install_documents()]
    duplicates = {i for i in seen if seen.count(i) > 1}
    assert not duplicates


def test_the_kustomization_installs_every_manifest_and_only_those() -> None:
    listed = install_files()
    assert all(p.is_file() for p in listed), [str(p) for p in listed if not p.is_file()]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    expected = {p.resolve() for p in ALL_FILES if not is_kustomization(p) and SAMPLES not in p.parents}
    assert set(listed) == expected, (
        f"not installed: {sorted(_rel(p) for p in expected - set(listed))}; "
        f"listed but not a manifest: {sorted(str(p) for p in set(listed) - expected)}"
    )


def test_the_kustomization_lists_the_crds_first() -> None:
    kinds = [doc["kind"] for doc in install_documents()]
    first_other = next(i for i, kind in enumerate(kinds) if kind != "CustomResourceDefinition")
    assert "CustomResourceDefinition" not in kinds[first_other:]
    assert kinds[first_other] == "Namespace"


def test_every_kustomization_lists_only_its_own_directory() -> None:
    # Relative paths stay inside manifests/: the install is self-contained (no remote or ../ bases).
    for path in yaml_files():
        if not is_kustomization(path):
            continue
        for entry in documents(path)[0].get("resources") or []:
            target = (path.parent / entry).resolve()
            assert MANIFESTS in target.parents, f"{_rel(path)}: {entry} is outside manifests/"
            assert target.exists(), f"{_rel(path)}: {entry} does not exist"
            if target.is_dir():
                assert (target / KUSTOMIZATION).is_file(), f"{entry} has no {KUSTOMIZATION}"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_kustomize_renders_the_same_objects_with_the_image_tag() -> None:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(identity(d) for d in rendered) == sorted(identity(d) for d in install_documents())
    tag = documents(MANIFESTS / KUSTOMIZATION)[0]["images"][0]
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in ("Deployment", "DaemonSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"{tag['name']}:{tag['newTag']}"}
