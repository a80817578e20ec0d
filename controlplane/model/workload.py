"""Workloads: the pods the mesh may capture, with what identity and where."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controlplane.model.frozenmap import EMPTY_LABELS, Labels
from controlplane.model.namespace import MESH_DISABLED, MESH_LABEL
from controlplane.model.refs import Kind, ObjectRef


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A Pod as the mesh sees it. Its reference is the Pod's (`Pod/ns/name`)."""

    uid: str
    namespace: str
    name: str
    # "" until scheduled.
    node: str = ""
    # Normalized IP texts, primary first (status.podIPs).
    ips: tuple[str, ...] = ()
    service_account: str = "default"
    labels: Labels = EMPTY_LABELS
    phase: PodPhase = PodPhase.PENDING
    ready: bool = False
    # The pod opted out with label `nodemesh.io/mesh=disabled`.
    opted_out: bool = False
    # Host-network pods share the node's netns: never meshed.
    host_network: bool = False
    # metadata.deletionTimestamp is set: the pod is shutting down.
    terminating: bool = False

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.POD, namespace=self.namespace, name=self.name)

    @property
    def identity(self) -> tuple[str, str]:
        """(namespace, service account): what its SPIFFE ID is made of."""
        return (self.namespace, self.service_account)

    @property
    def meshable(self) -> bool:
        """Meshed if its namespace is enrolled: has an IP of its own, is alive and did not opt out."""
        return (
            not self.host_network
            and not self.opted_out
            and bool(self.ips)
            and bool(self.node)
            and self.phase in (PodPhase.PENDING, PodPhase.RUNNING)
        )


def opts_out(labels: Labels) -> bool:
    return labels.get(MESH_LABEL) == MESH_DISABLED
