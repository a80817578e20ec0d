"""`make demo-up` / `make demo-down`: the demo's mesh left running in the background.

`up` starts `python -m demo serve` in its own session (output to the state directory's log) and waits for
the state file it writes once the mesh runs, the application is deployed and the story's YAML is applied;
then it prints how to explore. `serve` holds the mesh until SIGTERM, tears it down (the harness
leak-checks its fabric) and records the outcome in teardown.json. `down` signals it by pid (checked against
the start time the state file recorded), waits, reports the teardown and looks for leftovers of the run
itself before removing the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from demo.app import PODS, TRUST_DOMAIN
from demo.lifecycle import DemoError, kubectl_for, preconditions, prepare
from demo.manifests import reviews_authorization, reviews_route, strict_mtls
from demo.state import (
    DEFAULT_DIR,
    LOG_FILE,
    STATE_FILE,
    TEARDOWN_FILE,
    DemoState,
    PodState,
    StateError,
    alive,
    load,
    start_ticks,
    write_atomically,
)
from integration.mesh import MeshHarness
from integration.topology import NETNS_DIR, cgroup2_root
from meshctl.cli import ADMIN_ENV, CONTROLPLANE_ENV

UP_TIMEOUT: Final = 180.0
DOWN_TIMEOUT: Final = 90.0


# -- serve: the background process -------------------------------------------------------------------------


async def serve(directory: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    workdir = directory / "work"
    outcome: dict[str, object] = {"ok": False}
    try:
        async with MeshHarness(workdir=workdir / "mesh", nodes=2) as mesh:
            kubectl = kubectl_for(mesh, workdir)
            await prepare(mesh, kubectl)
            # The story's end state: the route with its header rule, the policies, STRICT in shop.
            await kubectl.apply("2-3-reviews-route", [reviews_route(header_route=True)])
            await kubectl.apply("4-strict-mtls", [strict_mtls()])
            await kubectl.apply("5-authorization", reviews_authorization())
            await mesh.wait_synced()
            state = _state(mesh, workdir, kubectl.manifest_dir)
            write_atomically(directory / STATE_FILE, state.to_json())
            print(f"demo running: pid {state.pid}, API server {state.api_server}", flush=True)
            await stop.wait()
            print("stopping: tearing the mesh down", flush=True)
            (directory / STATE_FILE).unlink(missing_ok=True)
        outcome = {"ok": True}
    except Exception as exc:
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(f"demo failed: {outcome['error']}", file=sys.stderr, flush=True)
        return 1
    finally:
        (directory / STATE_FILE).unlink(missing_ok=True)
        write_atomically(directory / TEARDOWN_FILE, json.dumps(outcome) + "\n")
    return 0


def _state(mesh: MeshHarness, workdir: Path, manifests: Path) -> DemoState:
    pid = os.getpid()
    ticks = start_ticks(pid)
    assert ticks is not None
    placed: dict[str, PodState] = {}
    for spec in PODS:
        pod = mesh.pods[spec.ref]
        placed[spec.key] = PodState(
            ref=spec.ref,
            node=pod.node.name,
            ip=pod.ip,
            identity=spec.spiffe_id if spec.namespace != "outside" else "",
            netns=str(pod.fabric.netns_path),
            cgroup=str(pod.fabric.cgroup),
        )
    return DemoState(
        pid=pid,
        start_ticks=ticks,
        run_id=mesh.topology.run_id,
        api_server=mesh.api.url,
        kubeconfig=str(mesh.kubeconfig),
        controlplane=mesh.xds_address,
        admin=f"127.0.0.1:{mesh.controlplane.admin_port}",
        workdir=str(workdir),
        manifests=str(manifests),
        nodes={n.name: n.ip for n in mesh.nodes},
        services={key: f"{s.cluster_ip}:{s.ports[0].port}" for key, s in mesh.services.items()},
        pods=placed,
    )


# -- up ------------------------------------------------------------------------------------------------


def up(directory: Path) -> int:
    with contextlib.suppress(StateError):
        running = load(directory)
        if alive(running):
            print(
                f"a demo is already running (pid {running.pid}); `make demo-down` stops it", file=sys.stderr
            )
            return 1
    missing = preconditions()
    if missing:
        raise DemoError("this machine cannot run the demo:\n  " + "\n  ".join(missing))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in (STATE_FILE, TEARDOWN_FILE):
        (directory / stale).unlink(missing_ok=True)
    log_path = directory / LOG_FILE
    print(f"starting the demo mesh in the background (log: {log_path}) ...", flush=True)
    started = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo", "serve", "--state-dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `make`, and a Ctrl-C in this terminal
            cwd=Path(__file__).resolve().parents[1],
        )
    while not (directory / STATE_FILE).exists():
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise DemoError(f"the demo mesh exited ({process.returncode}) while starting:\n{tail}")
        if time.monotonic() - started > UP_TIMEOUT:
            process.terminate()
            raise DemoError(f"the demo mesh did not start within {UP_TIMEOUT:.0f}s (log: {log_path})")
        time.sleep(0.2)
    state = load(directory)
    print(f"demo mesh running (pid {state.pid}) after {time.monotonic() - started:.1f} s\n")
    print(explore(state, directory))
    return 0


def explore(state: DemoState, directory: Path) -> str:
    reviews = state.services.get("shop/reviews", "")
    frontend = state.pod("frontend")
    bindir = Path(sys.executable).parent
    meshctl = bindir / "meshctl" if (bindir / "meshctl").exists() else Path("meshctl")
    here = "" if directory == DEFAULT_DIR else f" --state-dir {directory}"
    py = f"{sys.executable} -m demo"
    lines = [
        "Explore it:",
        f"  kubectl --server {state.api_server} get httproutes,authorizationpolicies,peerauthentications -A",
        f"  kubectl --server {state.api_server} get pods -A -o wide",
        f"  {meshctl} --controlplane {state.controlplane} --admin {state.admin} proxy-status",
        f"  or: export {CONTROLPLANE_ENV}={state.controlplane} {ADMIN_ENV}={state.admin}; then",
        f"  {meshctl} proxy-status",
        f"  {meshctl} proxy-config clusters node1",
        f"  {meshctl} describe pod {state.pod('reviews-v1').ref}",
        f"  {meshctl} describe pod {frontend.ref}",
        f"  {meshctl} analyze",
        "",
        f"Send a request from a pod (the frontend is {frontend.ref}, {frontend.identity}):",
        f"  {py} exec{here} frontend -- curl -s http://{reviews}/",
        f"  {py} exec{here} frontend -- curl -s -H 'x-user: tester' http://{reviews}/",
        f"  {py} exec{here} batch -- curl -s http://{reviews}/        # 403: denied by policy",
        "  which is (join the pod's cgroup, where the redirect hooks are, then its network namespace):",
        f"  sh -c 'echo $$ > {frontend.cgroup}/cgroup.procs && exec nsenter --net={frontend.netns} -- "
        f"curl -s http://{reviews}/'",
        "",
        f"Pods: {', '.join(sorted(state.pods))}; trust domain {TRUST_DOMAIN}; "
        f"YAML applied: {state.manifests}",
        "Stop it and remove everything: make demo-down",
    ]
    return "\n".join(lines)


# -- down ----------------------------------------------------------------------------------------------


def down(directory: Path) -> int:
    try:
        state = load(directory)
    except StateError as exc:
        print(str(exc))
        return 0
    started = time.monotonic()
    if alive(state):
        print(f"stopping the demo mesh (pid {state.pid}) ...", flush=True)
        os.kill(state.pid, signal.SIGTERM)
        while alive(state) and time.monotonic() - started < DOWN_TIMEOUT:
            time.sleep(0.2)
        if alive(state):
            os.kill(state.pid, signal.SIGKILL)
            print(f"the demo mesh did not stop within {DOWN_TIMEOUT:.0f}s: killed", file=sys.stderr)
    else:
        print(f"the demo mesh (pid {state.pid}) is not running any more", file=sys.stderr)
    ok = True
    try:
        teardown = json.loads((directory / TEARDOWN_FILE).read_text())
    except (OSError, ValueError):
        teardown = {"ok": False, "error": "it recorded no teardown"}
    if not teardown.get("ok"):
        ok = False
        print(f"teardown failed: {teardown.get('error')}", file=sys.stderr)
    left = leftovers(state.run_id)
    if left:
        ok = False
        print("left behind (remove by hand):\n  " + "\n  ".join(left), file=sys.stderr)
    if ok:
        shutil.rmtree(directory, ignore_errors=True)
        print(f"demo mesh removed in {time.monotonic() - started:.1f} s: nothing left behind")
        return 0
    print(f"kept {directory} (its {LOG_FILE} says what happened)", file=sys.stderr)
    return 1


def leftovers(run_id: str) -> list[str]:
    """What of the fabric run `run_id` still exists: namespaces, cgroups, BPF pins, the blackhole route."""
    left = [f"netns {p.name}" for p in sorted(NETNS_DIR.glob(f"nm{run_id}-*"))] if NETNS_DIR.exists() else []
    root = cgroup2_root()
    if root is not None and (root / f"nodemesh-{run_id}").exists():
        left.append(f"cgroup {root / f'nodemesh-{run_id}'}")
    left += [f"bpf pins {p}" for p in sorted(Path("/sys/fs/bpf").glob(f"nodemesh-{run_id}*"))]
    return left
