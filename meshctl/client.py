"""The control plane as meshctl sees it: CSDS over gRPC (who is connected, what they ACKed) and the admin
HTTP endpoint (readiness, the config held per node).

Synchronous on purpose: a CLI call is one or two requests, and a blocking client needs no event loop, so
tests can run `main()` in a worker thread next to an in-process control plane.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2

from meshctl.bootstrap import ControlPlaneAddress
from meshctl.errors import MeshctlError, UnreachableError

XDS_HINT = "is the control plane running? set --controlplane or $NODEMESH_CONTROLPLANE to its xDS address"
ADMIN_HINT = "is the control plane running? set --admin or $NODEMESH_ADMIN to its admin address"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminResponse:
    status: int
    body: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise MeshctlError(
                f"admin endpoint answered HTTP {self.status} with non-JSON: {self.body[:200]}"
            ) from exc


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPlaneClient:
    controlplane: ControlPlaneAddress
    admin: ControlPlaneAddress
    timeout: float = 5.0

    def client_status(self, node: str = "") -> Any:
        """CSDS FetchClientStatus: one ClientConfig per connected stream (only `node`'s, if given)."""
        request = csds_pb2.ClientStatusRequest()
        if node:
            request.node_matchers.append(node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(exact=node)))
        target = str(self.controlplane)
        try:
            with grpc.insecure_channel(target) as channel:
                stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
                return stub.FetchClientStatus(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                msg = f"cannot reach the control plane's xDS/CSDS at {target} ({detail}): {XDS_HINT}"
                raise UnreachableError(msg) from exc
            name = code.name if code is not None else "error"
            raise MeshctlError(f"CSDS request to {target} failed: {name}: {detail}") from exc

    def admin_get(self, path: str, query: dict[str, str] | None = None) -> AdminResponse:
        """GET on the admin endpoint; any HTTP status is returned, only transport failures raise."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        connection: http.client.HTTPConnection
        if self.admin.is_unix:
            connection = _UnixConnection(self.admin.path, self.timeout)
        else:
            connection = http.client.HTTPConnection(self.admin.host, self.admin.port, timeout=self.timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return AdminResponse(status=response.status, body=response.read().decode(errors="replace"))
        except (OSError, http.client.HTTPException) as exc:
            reason = (
                exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
            )
            msg = f"cannot reach the control plane's admin endpoint at {self.admin} ({reason}): {ADMIN_HINT}"
            raise UnreachableError(msg) from exc
        finally:
            connection.close()

    def admin_url(self, path: str) -> str:
        base = f"unix:{self.admin.path}:" if self.admin.is_unix else f"http://{self.admin}"
        return base + path
