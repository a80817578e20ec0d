"""Nodes: where each node's Envoy listens and where HBONE reaches it."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.model.frozenmap import EMPTY_LABELS, Labels
from controlplane.model.refs import Kind, ObjectRef


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    # The node's InternalIP (normalized text): its Envoy's listeners and HBONE port 15008 are reached here.
    # Empty when the node reports none yet: such a node cannot be a tunnel destination.
    internal_ip: str = ""
    # `topology.kubernetes.io/zone`, "" when unlabelled.
    zone: str = ""
    labels: Labels = EMPTY_LABELS

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(kind=Kind.NODE, name=self.name)
