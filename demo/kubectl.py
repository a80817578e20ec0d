"""The real kubectl against the demo's API server, as a user would type it: `kubectl --server URL ...`.

Manifests are written to files first, so every step leaves behind the exact YAML it applied and the exact
command that applied it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class KubectlError(Exception):
    """kubectl could not be run, or it failed."""


@dataclass(slots=True)
class KubectlRunner:
    server: str
    manifest_dir: Path
    binary: str = field(default_factory=lambda: shutil.which("kubectl") or "/usr/bin/kubectl")
    timeout: float = 60.0
    # Every command run, as it could be pasted into a shell.
    history: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        # No kubeconfig: the user's own (if any) must not add credentials or a namespace to the demo's calls.
        return [self.binary, "--kubeconfig", "/dev/null", "--server", self.server, *args]

    def command_line(self, *args: str) -> str:
        """The command to show a person (kubeconfig noise left out)."""
        return " ".join(["kubectl", "--server", self.server, *args])

    async def run(self, *args: str) -> str:
        """kubectl's stdout; KubectlError (with its stderr) when it exits non-zero."""
        self.history.append(self.command_line(*args))
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(*args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise KubectlError(f"cannot run {self.binary}: {exc}") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise KubectlError(f"{self.command_line(*args)} took longer than {self.timeout}s") from exc
        if process.returncode != 0:
            raise KubectlError(
                f"{self.command_line(*args)} exited {process.returncode}: {err.decode().strip()}"
            )
        return out.decode()

    def write(self, name: str, docs: Sequence[Mapping[str, Any]]) -> Path:
        """`<manifest_dir>/<name>.yaml` holding `docs`."""
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        path = self.manifest_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
        return path

    async def apply(self, name: str, docs: Sequence[Mapping[str, Any]]) -> Applied:
        path = self.write(name, docs)
        args = ("apply", "-f", str(path))
        output = await self.run(*args)
        return Applied(path=path, command=self.command_line(*args), output=output.strip())


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """One `kubectl apply`: the file, the command, what kubectl said (`httproute.../reviews created`)."""

    path: Path
    command: str
    output: str

    def lines(self) -> list[str]:
        """The command as typed, then what kubectl answered."""
        return [f"$ {self.command}", *(f"  {line}" for line in self.output.splitlines())]
