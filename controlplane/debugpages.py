"""The admin server's pages about the mesh model: `/debug/diagnostics`, `/debug/describe`,
`/debug/certificates` (what `meshctl analyze`, `describe` and `check` read).

Each page reads the latest state when asked; nothing is cached here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from controlplane.admin import DebugPage, DebugQuery, DebugQueryError
from controlplane.ca.clock import Clock
from controlplane.ca.issued import IssuedCertificates, IssuedRecord
from controlplane.inspect import Document, describe_pod, merge_diagnostics
from controlplane.model.diagnostics import Diagnostic
from controlplane.model.refs import Kind, ObjectRef
from controlplane.model.security import ROOT_NAMESPACE, security_diagnostics
from controlplane.model.snapshot import MeshSnapshot
from controlplane.nodesync import node_sync
from controlplane.xds.status import StreamInfo

DESCRIBE_KINDS = ("pod",)


def certificate_document(record: IssuedRecord, now: datetime, *, in_use: bool) -> Document:
    return {
        **record.to_document(),
        "state": record.state(now).value,
        "lifetime_seconds": record.lifetime.total_seconds(),
        "remaining_seconds": record.remaining(now).total_seconds(),
        # The identity still has a pod on the node: the certificate is (or should be) in use.
        "in_use": in_use,
    }


class MeshPages:
    """The pages, over callables that return the current state (the composition root wires them)."""

    def __init__(
        self,
        *,
        mesh: Callable[[], MeshSnapshot],
        diagnostics: Callable[[], Iterable[Diagnostic]],
        streams: Callable[[], Iterable[StreamInfo]],
        issued: IssuedCertificates | None,
        clock: Clock,
        trust_domain: str = "cluster.local",
        root_namespace: str = ROOT_NAMESPACE,
    ) -> None:
        self._mesh = mesh
        self._diagnostics = diagnostics
        self._streams = streams
        self._issued = issued
        self._clock = clock
        self._trust_domain = trust_domain
        self._root_namespace = root_namespace

    def pages(self) -> dict[str, DebugPage]:
        return {"diagnostics": self.diagnostics, "certificates": self.certificates}

    def queries(self) -> dict[str, DebugQuery]:
        return {"describe": self.describe}

    def current_diagnostics(self, mesh: MeshSnapshot) -> tuple[Diagnostic, ...]:
        """The sources' and translation's diagnostics (the last push's) plus the security cross-checks,
        which translation does not report."""
        return merge_diagnostics(
            self._diagnostics(), security_diagnostics(mesh, root_namespace=self._root_namespace)
        )

    def diagnostics(self) -> list[Document]:
        return [d.to_document() for d in self.current_diagnostics(self._mesh())]

    def certificates(self) -> Document:
        if self._issued is None:
            return {"ca": False, "certificates": []}
        mesh, now = self._mesh(), self._clock.now()
        in_use: dict[str, frozenset[tuple[str, str]]] = {}
        documents = []
        for record in self._issued.records():
            if record.node not in in_use:
                in_use[record.node] = frozenset(w.identity for w in mesh.meshed_workloads_on(record.node))
            identity = (record.spiffe_id.namespace, record.spiffe_id.service_account)
            documents.append(certificate_document(record, now, in_use=identity in in_use[record.node]))
        return {"ca": True, "certificates": documents}

    def describe(self, query: Mapping[str, str]) -> Document:
        kind = query.get("kind", "pod")
        if kind not in DESCRIBE_KINDS:
            raise DebugQueryError(f"cannot describe kind {kind!r}; one of: {', '.join(DESCRIBE_KINDS)}")
        namespace, name = query.get("namespace", ""), query.get("name", "")
        if not namespace or not name:
            raise DebugQueryError("describe needs namespace and name")
        mesh = self._mesh()
        document = describe_pod(
            mesh,
            namespace,
            name,
            trust_domain=self._trust_domain,
            root_namespace=self._root_namespace,
            diagnostics=self.current_diagnostics(mesh),
        )
        if document is None:
            raise DebugQueryError(f"pod {namespace}/{name} not found", status=404)
        pod = mesh.workloads[ObjectRef(kind=Kind.POD, namespace=namespace, name=name)]
        document["sync"] = node_sync(self._streams(), pod.node) if pod.node else None
        document["certificates"] = self._pod_certificates(pod.node, pod.identity, mesh)
        return document

    def _pod_certificates(self, node: str, identity: tuple[str, str], mesh: MeshSnapshot) -> Document:
        if self._issued is None:
            return {"ca": False, "certificates": []}
        now = self._clock.now()
        records = [
            r
            for r in self._issued.for_node(node)
            if (r.spiffe_id.namespace, r.spiffe_id.service_account) == identity
        ]
        in_use = any(w.identity == identity for w in mesh.meshed_workloads_on(node))
        return {"ca": True, "certificates": [certificate_document(r, now, in_use=in_use) for r in records]}
