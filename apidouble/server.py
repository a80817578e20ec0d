"""`ApiServerDouble`: the in-memory Kubernetes API server, served over HTTP, with hooks for tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import yaml
from aiohttp import web

from apidouble.errors import ApiError, bad_request
from apidouble.handlers import Handlers
from apidouble.jsonvalue import JsonObject
from apidouble.kinds import KindRegistry, ResourceKind
from apidouble.operations import ListQuery, Operations, PatchType, TokenUser, WriteOptions
from apidouble.store import Store
from apidouble.watch import WatchSettings

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiServerDouble:
    """An in-memory Kubernetes API server on `http://host:port`.

    `async with ApiServerDouble() as api:` serves until the block ends. The direct helpers (`create`, `get`,
    `update`, `update_status`, `delete`, `list_objects`) go through the same operations as HTTP
    requests, without HTTP.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 60.0,
        history_limit: int = 10_000,
        service_cidr: str = "10.96.0.0/16",
        tokens: Mapping[str, TokenUser] | None = None,
        now: Callable[[], datetime] = _utc_now,
        namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port = 0
        self.store = Store(history_limit=history_limit)
        self.registry = KindRegistry()
        self.operations = Operations(
            store=self.store, registry=self.registry, now=now, service_cidr=service_cidr, tokens=tokens
        )
        self._handlers = Handlers(self.operations, WatchSettings(bookmark_interval=bookmark_interval), now)
        self._runner: web.AppRunner | None = None
        for namespace in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # Lifecycle

    async def __aenter__(self) -> ApiServerDouble:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handlers.dispatch)
        # Cancel a handler when its client disconnects, so an abandoned watch unregisters at once.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is None:
            return
        # Open watches would otherwise hold shutdown until their clients give up.
        self.store.cut_watches()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    # Test hooks

    def cut_watches(self) -> int:
        """End every open watch stream now; returns how many were open."""
        return self.store.cut_watches()

    def compact(self, up_to_rv: int | None = None) -> None:
        """Forget history (all of it by default): watches and lists from older resourceVersions get 410."""
        self.store.compact(up_to_rv)

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """How many requests were served, by (method, path): e.g. `requests[("PATCH", path + "/status")]`."""
        return self._handlers.requests

    @property
    def open_watches(self) -> int:
        return self.store.open_watches

    async def wait_for_watches(self, predicate: Callable[[int], bool]) -> None:
        """Wait until `predicate(number of open watches)` holds (bound it with asyncio.timeout)."""
        while not predicate(self.store.open_watches):
            self.store.watches_changed.clear()
            await self.store.watches_changed.wait()

    @property
    def resource_version(self) -> int:
        return self.store.current_rv

    def add_token(self, token: str, user: TokenUser) -> None:
        """Make TokenReview authenticate `token` as `user`."""
        self.operations.tokens[token] = user

    def kubeconfig(self, path: Path | str, *, namespace: str = "default") -> Path:
        """Write a kubeconfig pointing at this server; returns its path."""
        target = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "apidouble", "cluster": {"server": self.url}}],
            "users": [{"name": "apidouble", "user": {}}],
            "contexts": [
                {
                    "name": "apidouble",
                    "context": {"cluster": "apidouble", "user": "apidouble", "namespace": namespace},
                }
            ],
            "current-context": "apidouble",
        }
        target.write_text(yaml.safe_dump(config))
        return target

    # Direct helpers for fixtures (no HTTP; same semantics)

    def kind_of(self, api_version: str, kind: str) -> tuple[ResourceKind, str]:
        group, _, version = api_version.rpartition("/")
        found = self.registry.by_kind(group, kind)
        if found is None or version not in found.versions:
            raise bad_request(f"no kind {kind!r} is registered for version {api_version!r}")
        return found, version

    def _kind_of_body(self, obj: JsonObject) -> tuple[ResourceKind, str]:
        return self.kind_of(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))

    def create(self, obj: JsonObject, *, keep_status: bool = True) -> JsonObject:
        """Create as a client would, but keeping `.status` by default (fixtures describe running objects)."""
        kind, version = self._kind_of_body(obj)
        namespace = str(
            (obj.get("metadata") or {}).get("namespace") or ("default" if kind.namespaced else "")
        )
        return self.operations.create(kind, namespace, obj, version=version, keep_status=keep_status).obj

    def apply(self, obj: JsonObject) -> JsonObject:
        """Create, or replace the spec (and status) of the existing object: a fixture's idempotent write."""
        kind, version = self._kind_of_body(obj)
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or ("default" if kind.namespaced else ""))
        try:
            self.operations.get(kind, namespace, str(meta.get("name")), version)
        except ApiError as exc:
            if exc.code != 404:
                raise
            return self.create(obj)
        updated = self.update(obj)
        if "status" in obj and kind.status_subresource:
            updated = self.update_status(obj)
        return updated

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> JsonObject:
        found, version = self.kind_of(api_version, kind)
        return self.operations.get(found, namespace, name, version)

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JsonObject]:
        found, version = self.kind_of(api_version, kind)
        return self.operations.list_objects(found, ListQuery(namespace=namespace), version).items

    def update(self, obj: JsonObject) -> JsonObject:
        kind, version = self._kind_of_body(obj)
        meta = obj.get("metadata") or {}
        return self.operations.update(
            kind, str(meta.get("namespace") or ""), str(meta.get("name")), obj, version=version
        ).obj

    def update_status(self, obj: JsonObject) -> JsonObject:
        kind, version = self._kind_of_body(obj)
        meta = obj.get("metadata") or {}
        return self.operations.update(
            kind,
            str(meta.get("namespace") or ""),
            str(meta.get("name")),
            obj,
            version=version,
            subresource="status",
        ).obj

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: JsonObject,
        *,
        namespace: str = "",
        status: bool = False,
    ) -> JsonObject:
        """JSON merge patch (of `/status` with status=True)."""
        found, version = self.kind_of(api_version, kind)
        return self.operations.patch(
            found,
            namespace,
            name,
            PatchType.MERGE,
            patch,
            version=version,
            subresource="status" if status else "",
            options=WriteOptions(),
        ).obj

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> JsonObject:
        found, version = self.kind_of(api_version, kind)
        return self.operations.delete(found, namespace, name, version=version)
