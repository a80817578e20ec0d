"""Compiles protos/**/*.proto into committed Python modules with .pyi stubs (`make protos`).

The generated modules import each other as `protos.nodemesh...`, so the repository root is the
include path. `generate(out_dir)` is also used by the staleness test, which compiles into a
temporary directory and compares with what is committed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generated_names(proto: Path) -> list[str]:
    stem = proto.stem
    return [f"{stem}_pb2.py", f"{stem}_pb2.pyi", f"{stem}_pb2_grpc.py"]


def generate(out_dir: Path) -> list[Path]:
    """Compiles every proto into out_dir (mirroring the repo layout); returns the files written."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    rels = [str(p.relative_to(REPO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *rels,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    written: list[Path] = []
    for rel in rels:
        proto = Path(rel)
        for name in generated_names(proto):
            path = out_dir / proto.parent / name
            if path.exists():
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            rel = path.relative_to(tmp)
            dest = REPO_ROOT / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
