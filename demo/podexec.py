"""`python -m demo exec POD -- COMMAND...`: run a command inside a pod of the running demo, as the pod's
own process would run: first into the pod's cgroup (where the node agent's redirect hooks apply), then into
its network namespace. `ip netns exec` alone would skip the cgroup, and the mesh would not see the call."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from demo.state import StateError, alive, load

JOIN = 'echo $$ > "$1/cgroup.procs" && ns="$2" && shift 2 && exec nsenter --net="$ns" -- "$@"'


def exec_in_pod(directory: Path, pod_name: str, command: Sequence[str]) -> int:
    """Replaces this process with `command` in the pod; returns only on error (an exit code)."""
    if not command:
        raise StateError("no command: python -m demo exec POD -- COMMAND [ARGS...]")
    state = load(directory)
    if not alive(state):
        raise StateError(f"the demo mesh (pid {state.pid}) is not running; `make demo-up` starts one")
    pod = state.pod(pod_name)
    argv = ["sh", "-c", JOIN, "demo-exec", pod.cgroup, pod.netns, *command]
    os.execvp(argv[0], argv)
