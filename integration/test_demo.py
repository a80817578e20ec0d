"""`make demo`'s story end to end, judged by its own assertions (not by parsing what the demo prints): the
story's step functions run in-process on a real mesh (two nodes, real Envoys and agents, eBPF redirect,
kubectl against the API server double) and their returned results are checked. Then `python -m demo` runs
as `make demo` runs it, and `demo up` / `demo down` as `make demo-up` / `make demo-down` do.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from demo.app import PODS, spec
from demo.daemon import leftovers
from demo.lifecycle import TOTAL_STEPS, kubectl_for, preconditions, prepare
from demo.state import STATE_FILE, alive, load
from demo.story import (
    STEPS,
    AuthorizationResult,
    BaselineResult,
    HeaderRouteResult,
    SplitResult,
    StepResult,
    StrictMtlsResult,
)
from demo.traffic import client_identity
from integration.mesh import MeshHarness

pytestmark = [pytest.mark.privileged, pytest.mark.envoy]

REPO = Path(__file__).resolve().parents[1]
FRONTEND_ID = "spiffe://cluster.local/ns/web/sa/frontend"
KUBECTL = ("kubectl", "--kubeconfig", "/dev/null", "--server")
V1, V2 = spec("reviews-v1").ref, spec("reviews-v2").ref


def _skip_unless_possible() -> None:
    missing = preconditions()
    if missing:
        pytest.skip(f"the demo cannot run here: {'; '.join(missing)}")


Story = dict[str, StepResult | BaseException]
R = TypeVar("R")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def story(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Story]:
    """Every step of the story, in order, on one mesh; torn down (and leak-checked) before the tests look
    at the results. A step that raised is recorded as its exception, and the later steps still run."""
    _skip_unless_possible()
    workdir = tmp_path_factory.mktemp("demo")
    results: Story = {}
    async with MeshHarness(workdir=workdir / "mesh", nodes=2) as mesh:
        try:
            ctx = await prepare(mesh, kubectl_for(mesh, workdir))
            for step in STEPS:
                try:
                    results[step.key] = await step.run(ctx)
                except Exception as exc:
                    results[step.key] = exc
        except BaseException:
            print(mesh.logs(80))
            raise
        if any(isinstance(r, BaseException) or r.problems() for r in results.values()):
            print(mesh.logs(60))
    yield results


def _result(story: Story, key: str, kind: type[R]) -> R:
    result = story[key]
    if isinstance(result, BaseException):
        raise AssertionError(f"step {key} raised {type(result).__name__}: {result}") from result
    assert isinstance(result, kind)
    return result


def test_baseline_reaches_both_versions_with_the_frontends_identity_and_tcp_works(story: Story) -> None:
    result = _result(story, "baseline", BaselineResult)

    assert [s.status for s in result.http] == [200] * len(result.http)
    assert set(Counter(s.pod for s in result.http)) == {V1, V2}  # no route yet: the Service's endpoints
    # The server learnt the caller from the mesh's mTLS (x-forwarded-client-cert), not from the caller.
    assert {client_identity(s.reply.headers["x-forwarded-client-cert"]) for s in result.http} == {FRONTEND_ID}
    assert result.p50_ms > 0
    assert result.tcp.pod == spec("ratings-db").ref
    assert result.tcp.peer_ip in result.node_ips  # a node Envoy connected to the database, not the client
    assert result.problems() == []


def test_the_split_route_sends_about_a_fifth_to_v2(story: Story) -> None:
    result = _result(story, "split", SplitResult)
    n = len(result.samples)
    seen = Counter(s.pod for s in result.samples)

    assert "created" in result.applied.output and result.applied.path.exists()
    assert [s.status for s in result.samples] == [200] * n
    assert set(seen) <= {V1, V2}
    sigma = math.sqrt(n * 0.2 * 0.8)
    assert max(1, 0.2 * n - 5 * sigma) <= seen[V2] <= 0.2 * n + 5 * sigma, seen
    assert result.problems() == []


def test_the_header_route_pins_testers_to_v2_and_leaves_others_on_the_split(story: Story) -> None:
    result = _result(story, "header", HeaderRouteResult)

    assert "configured" in result.applied.output  # the same HTTPRoute, changed by kubectl apply
    assert [(s.status, s.pod) for s in result.with_header] == [(200, V2)] * len(result.with_header)
    assert [s.status for s in result.without_header] == [200] * len(result.without_header)
    # Without the header the 80/20 split still holds: P(no v1 in 20) = 0.2^20.
    assert V1 in {s.pod for s in result.without_header}
    assert result.problems() == []


def test_the_authorization_policy_denies_batch_and_allows_frontend(story: Story) -> None:
    result = _result(story, "authz", AuthorizationResult)

    assert [(s.status, s.pod is not None) for s in result.frontend] == [(200, True)] * len(result.frontend)
    # Envoy answered 403 itself: the request never reached a reviews pod.
    assert [(s.status, s.pod) for s in result.batch] == [(403, None)] * len(result.batch)
    assert result.problems() == []


def test_strict_mtls_refuses_plaintext_from_outside_the_mesh_and_keeps_meshed_callers(story: Story) -> None:
    result = _result(story, "strict", StrictMtlsResult)

    assert (result.before.status, result.before.pod) == (200, V1)  # plaintext worked before STRICT
    assert [s.status for s in result.meshed] == [200] * len(result.meshed)
    if result.inbound_entries is None:
        pytest.skip("this build's node agents have no inbound (STRICT) enforcement to check")
    assert result.inbound_entries > 0
    assert (result.after.status, result.after.pod) == (0, None), result.after
    assert result.problems() == [] and result.warnings() == []


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False
    )


def test_python_m_demo_tells_the_whole_story_and_exits_0() -> None:
    _skip_unless_possible()
    result = _run([sys.executable, "-m", "demo"], timeout=180)
    out = result.stdout

    assert result.returncode == 0, out + result.stderr
    titles = ["start the mesh", "deploy the application", *(s.title for s in STEPS), "tear down"]
    for index, title in enumerate(titles, start=1):
        pattern = rf"^\[{index}/{TOTAL_STEPS}\] {re.escape(title)}.* \.\.\. ok \(\d+\.\d s\)$"
        assert re.search(pattern, out, re.MULTILINE), f"no line like {pattern!r} in:\n{out}"
    assert "\x1b[" not in out  # no colours when not on a terminal
    assert re.search(r"^summary$", out, re.MULTILINE)


async def test_demo_up_leaves_a_mesh_to_explore_and_demo_down_removes_it(tmp_path: Path) -> None:
    _skip_unless_possible()
    directory = tmp_path / "state"
    demo = [sys.executable, "-m", "demo"]
    up = await asyncio.to_thread(
        _run, [sys.executable, "-m", "demo", "up", "--state-dir", str(directory)], 180
    )
    state = load(directory) if (directory / STATE_FILE).exists() else None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert state is not None and alive(state)
        assert f"kubectl --server {state.api_server} get httproutes" in up.stdout
        assert "proxy-status" in up.stdout and "demo exec" in up.stdout

        got = await asyncio.to_thread(
            _run,
            [*KUBECTL, state.api_server, "get", "httproutes,peerauthentications,pods", "-A", "-o", "json"],
            60,
        )
        assert got.returncode == 0, got.stderr
        names = {(i["kind"], i["metadata"]["name"]) for i in json.loads(got.stdout)["items"]}
        assert {("HTTPRoute", "reviews"), ("PeerAuthentication", "default")} <= names
        assert {("Pod", p.name) for p in PODS} <= names

        reviews = state.services["shop/reviews"]
        curl = ["curl", "-sS", "-m", "5", "-H", "x-user: tester"]
        call = await asyncio.to_thread(
            _run,
            [*demo, "exec", "--state-dir", str(directory), "frontend", "--", *curl, f"http://{reviews}/"],
            30,
        )
        assert call.returncode == 0, call.stderr
        reply = json.loads(call.stdout)
        assert reply["pod"] == V2  # through the mesh: the header route of the running demo
        assert client_identity(reply["headers"]["x-forwarded-client-cert"]) == FRONTEND_ID
    finally:
        down = await asyncio.to_thread(
            _run, [sys.executable, "-m", "demo", "down", "--state-dir", str(directory)], 120
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert state is not None
    assert not directory.exists()
    assert not alive(state)
    assert leftovers(state.run_id) == []
