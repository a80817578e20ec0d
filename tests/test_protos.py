"""The committed protobuf modules must match what `make protos` generates from protos/*.proto."""

from __future__ import annotations

from pathlib import Path

from protos.compile import REPO_ROOT, generate


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "no protos compiled"
    stale = []
    for path in written:
        committed = REPO_ROOT / path.relative_to(tmp_path)
        if not committed.exists() or committed.read_bytes() != path.read_bytes():
            stale.append(str(path.relative_to(tmp_path)))
    assert not stale, f"generated protos are stale, run `make protos`: {stale}"


def test_plan_types_round_trip() -> None:
    from protos.nodemesh.v1alpha1 import plan_pb2

    w = plan_pb2.Workload(uid="u1", namespace="ns", ips=["198.18.1.2"], netns=plan_pb2.NetnsRef(pid=42))
    again = plan_pb2.Workload.FromString(w.SerializeToString())
    assert again.netns.WhichOneof("ref") == "pid"
    assert again.ips == ["198.18.1.2"]
