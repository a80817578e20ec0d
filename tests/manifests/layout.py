"""Where the manifests are and how to read them: YAML documents, kustomizations, CRD schemas, pod specs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
CRDS = MANIFESTS / "crds"
KUSTOMIZATION = "kustomization.yaml"

Doc = dict[str, Any]


def yaml_files(under: Path = MANIFESTS) -> list[Path]:
    return sorted(p for p in under.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def documents(path: Path) -> list[Doc]:
    """Every non-empty document of a (multi-document) YAML file; each must be a mapping."""
    docs: list[Doc] = []
    for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
        if doc is None:
            continue
        assert isinstance(doc, dict), f"{path} document {index} is a {type(doc).__name__}, not a mapping"
        docs.append(doc)
    return docs


def is_kustomization(path: Path) -> bool:
    return path.name == KUSTOMIZATION


def is_raw_envoy(path: Path) -> bool:
    """Raw Envoy resources for the `dir:` source: not Kubernetes objects."""
    return (SAMPLES / "raw-envoy") in path.parents


def install_files(directory: Path = MANIFESTS) -> list[Path]:
    """The files a kustomization installs, following its `resources` into directories, in order."""
    kustomization = documents(directory / KUSTOMIZATION)[0]
    files: list[Path] = []
    for entry in kustomization.get("resources") or []:
        target = (directory / entry).resolve()
        if target.is_dir():
            files.extend(install_files(target))
        else:
            files.append(target)
    return files


def install_documents() -> list[Doc]:
    return [doc for path in install_files() for doc in documents(path)]


def identity(doc: Doc) -> tuple[str, str, str, str]:
    meta = doc.get("metadata") or {}
    return (str(doc["apiVersion"]), str(doc["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d.get("kind") == kind and (d.get("metadata") or {}).get("name") == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def crd_schemas() -> dict[tuple[str, str, str], Doc]:
    """(group, version, kind) -> openAPIV3Schema of every CRD in manifests/crds."""
    schemas: dict[tuple[str, str, str], Doc] = {}
    for path in yaml_files(CRDS):
        for doc in documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = version["schema"][
                    "openAPIV3Schema"
                ]
    return schemas


def pod_spec(workload: Doc) -> Doc:
    spec = workload["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def containers(workload: Doc) -> Iterator[Doc]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]
