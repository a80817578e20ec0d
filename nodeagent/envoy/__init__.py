"""The node Envoy's supervisor: runs Envoy and restarts it with Envoy's hot restart (no connection lost)."""

from nodeagent.envoy.command import DrainStrategy, EnvoySettings, build_command, shared_memory_path
from nodeagent.envoy.epochs import StartReason
from nodeagent.envoy.supervisor import EnvoySupervisor, EnvoySupervisorError, EpochProcess, SupervisorObserver

__all__ = [
    "DrainStrategy",
    "EnvoySettings",
    "EnvoySupervisor",
    "EnvoySupervisorError",
    "EpochProcess",
    "StartReason",
    "SupervisorObserver",
    "build_command",
    "shared_memory_path",
]
