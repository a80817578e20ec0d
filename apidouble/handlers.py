"""HTTP handlers: Kubernetes REST requests onto the double's operations, errors as Status objects."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from apidouble import discovery, openapi, protobuf
from apidouble.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    page_not_found,
    unsupported_media_type,
)
from apidouble.jsonvalue import JsonObject
from apidouble.kinds import ResourceKind
from apidouble.operations import FieldValidation, ListQuery, Operations, PatchType, WriteOptions, WriteResult
from apidouble.paths import ResourcePath, parse_resource_path
from apidouble.selectors import parse_field_selector, parse_label_selector
from apidouble.tables import to_table, wants_table
from apidouble.watch import WatchQuery, WatchSettings, WatchStream

log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "True"})


def _json(body: JsonObject, status: int = 200, warnings: tuple[str, ...] = ()) -> web.Response:
    response = web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")
    for warning in warnings:
        response.headers.add("Warning", "299 - " + json.dumps(warning))
    return response


def _error(exc: ApiError) -> web.Response:
    return _json(exc.status(), exc.code)


class Handlers:
    def __init__(self, operations: Operations, settings: WatchSettings, now: Callable[[], datetime]) -> None:
        self._ops = operations
        self._settings = settings
        self._now = now
        # (method, path) of every request served: lets tests assert what a client did (or did not) send.
        self.requests: Counter[tuple[str, str]] = Counter()

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests[(request.method, request.path)] += 1
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            log.debug("%s %s -> %s %s", request.method, request.path_qs, exc.code, exc.message)
            return _error(exc)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        registry = self._ops.registry
        if request.method == "GET":
            if path == "/version":
                return _json(discovery.SERVER_VERSION)
            if path == "/api":
                return _json(discovery.api_versions(f"{request.host}"))
            if path == "/apis":
                return _json(discovery.api_group_list(registry))
            if path in ("/healthz", "/readyz", "/livez"):
                return web.Response(text="ok")
            if path == "/openapi/v3":
                return _json(openapi.root_doc(registry))
            if path.startswith("/openapi/v3/"):
                gv = [p for p in path.removeprefix("/openapi/v3/").split("/") if p]
                doc = None
                if len(gv) == 2 and gv[0] == "api":
                    doc = openapi.group_version_doc(registry, "", gv[1])
                elif len(gv) == 3 and gv[0] == "apis":
                    doc = openapi.group_version_doc(registry, gv[1], gv[2])
                if doc is not None:
                    return _json(doc)
            parts = [p for p in path.split("/") if p]
            if len(parts) == 2 and parts[0] == "api":
                found = discovery.api_resource_list(registry, "", parts[1])
                if found is not None:
                    return _json(found)
            if len(parts) == 2 and parts[0] == "apis":
                group = discovery.api_group(registry, parts[1])
                if group is not None:
                    return _json(group)
            if len(parts) == 3 and parts[0] == "apis":
                found = discovery.api_resource_list(registry, parts[1], parts[2])
                if found is not None:
                    return _json(found)
        target = parse_resource_path(path)
        if target is None:
            raise page_not_found(request.path)
        kind = registry.lookup(target.group, target.version, target.plural)
        if kind is None:
            raise page_not_found(request.path)
        if target.namespace is not None and not kind.namespaced:
            raise page_not_found(request.path)
        if target.subresource and not (target.subresource == "status" and kind.status_subresource):
            raise page_not_found(request.path)
        return await self._resource(request, kind, target)

    async def _resource(
        self, request: web.Request, kind: ResourceKind, target: ResourcePath
    ) -> web.StreamResponse:
        method = request.method
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method
        )
        query = request.query
        if verb is None:
            raise method_not_allowed(
                f"the server does not allow this method on the requested resource ({method})"
            )
        if not target.name:
            collection_verb = {"get": "list", "delete": "deletecollection", "create": "create"}.get(verb)
            if collection_verb is None or collection_verb not in kind.verbs:
                raise method_not_allowed("the server does not allow this method on the requested resource")
            if kind.namespaced and target.namespace is None and method != "GET":
                raise method_not_allowed("the server does not allow this method on the requested resource")
        elif verb not in kind.verbs or method == "POST":
            raise method_not_allowed("the server does not allow this method on the requested resource")
        namespace = target.namespace or ""
        version = target.version
        ops = self._ops
        if method == "GET":
            if target.legacy_watch or query.get("watch", "") in _TRUE:
                return await self._watch(request, kind, target)
            if target.name:
                obj = ops.get(kind, namespace, target.name, version)
                if wants_table(request.headers.get("Accept", "")):
                    return _json(to_table(kind, version, [obj], list_meta=None, now=self._now()))
                return _json(obj)
            result = ops.list_objects(kind, self._list_query(request, kind, target), version)
            list_meta: JsonObject = {"resourceVersion": str(result.resource_version)}
            if result.continue_token:
                list_meta["continue"] = result.continue_token
            if result.remaining is not None:
                list_meta["remainingItemCount"] = result.remaining
            if wants_table(request.headers.get("Accept", "")):
                return _json(to_table(kind, version, result.items, list_meta=list_meta, now=self._now()))
            items = result.items
            if not kind.custom:
                # Typed lists of built-in kinds leave kind/apiVersion off their items, like the real server.
                for item in items:
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
            return _json(
                {
                    "kind": kind.list_kind,
                    "apiVersion": kind.api_version(version),
                    "metadata": list_meta,
                    "items": items,
                }
            )
        options = self._write_options(request)
        if method == "POST":
            body = await self._body(request)
            result_obj = ops.create(kind, namespace, body, version=version, options=options)
            return _json(result_obj.obj, 201, result_obj.warnings)
        if method == "PUT":
            body = await self._body(request)
            written = ops.update(
                kind,
                namespace,
                target.name,
                body,
                version=version,
                subresource=target.subresource,
                options=options,
            )
            return self._written(written)
        if method == "PATCH":
            content_type = request.content_type
            if content_type == "application/apply-patch+yaml":
                raise unsupported_media_type("server-side apply is not supported by the API server double")
            try:
                patch_type = PatchType(content_type)
            except ValueError as exc:
                raise unsupported_media_type(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(p.value for p in PatchType)}"
                ) from exc
            if patch_type is PatchType.STRATEGIC and kind.custom:
                raise unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                )
            patch = await self._raw_body(request)
            written = ops.patch(
                kind,
                namespace,
                target.name,
                patch_type,
                patch,
                version=version,
                subresource=target.subresource,
                options=options,
            )
            return self._written(written)
        # DELETE
        delete_options = await self._raw_body(request, optional=True) or {}
        if not isinstance(delete_options, dict):
            raise bad_request("DeleteOptions must be an object")
        dry_run = options.dry_run or "All" in (delete_options.get("dryRun") or [])
        if not target.name:
            removed = ops.delete_collection(
                kind, self._list_query(request, kind, target), version=version, dry_run=dry_run
            )
            return _json(
                {
                    "kind": kind.list_kind,
                    "apiVersion": kind.api_version(version),
                    "metadata": {"resourceVersion": str(ops.store.current_rv)},
                    "items": removed,
                }
            )
        obj = ops.delete(
            kind,
            namespace,
            target.name,
            version=version,
            preconditions=delete_options.get("preconditions"),
            dry_run=dry_run,
        )
        return _json(obj)

    @staticmethod
    def _written(result: WriteResult) -> web.Response:
        return _json(result.obj, 200, result.warnings)

    @staticmethod
    def _write_options(request: web.Request) -> WriteOptions:
        dry_run = request.query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'unsupported dryRun value "{value}": only "All" is supported')
        raw_validation = request.query.get("fieldValidation", "Warn")
        try:
            validation = FieldValidation(raw_validation)
        except ValueError as exc:
            raise bad_request(
                f"fieldValidation parameter unsupported: {raw_validation}. "
                "Supported values: Ignore, Warn, Strict"
            ) from exc
        return WriteOptions(dry_run=bool(dry_run), field_validation=validation)

    @staticmethod
    def _list_query(request: web.Request, kind: ResourceKind, target: ResourcePath) -> ListQuery:
        query = request.query
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError as exc:
            raise bad_request(f"invalid limit: {query.get('limit')!r}") from exc
        return ListQuery(
            namespace=target.namespace if kind.namespaced else None,
            labels=parse_label_selector(query.get("labelSelector")),
            fields=parse_field_selector(query.get("fieldSelector"), kind.kind),
            limit=max(0, limit),
            continue_token=query.get("continue", ""),
            resource_version=query.get("resourceVersion", ""),
            resource_version_match=query.get("resourceVersionMatch", ""),
        )

    @staticmethod
    async def _raw_body(request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if not raw.strip():
            if optional:
                return None
            raise bad_request("the request body is empty")
        if request.content_type == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
        if request.content_type == "application/yaml":
            raise unsupported_media_type("the API server double accepts JSON bodies; use `kubectl apply -f`")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from exc

    async def _body(self, request: web.Request) -> JsonObject:
        body = await self._raw_body(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    async def _watch(
        self, request: web.Request, kind: ResourceKind, target: ResourcePath
    ) -> web.StreamResponse:
        query = request.query
        if target.name:
            raise bad_request("watch of a single object: use fieldSelector=metadata.name=<name>")
        list_query = self._list_query(request, kind, target)
        timeout = query.get("timeoutSeconds")
        try:
            timeout_seconds = float(timeout) if timeout else None
        except ValueError as exc:
            raise bad_request(f"invalid timeoutSeconds: {timeout!r}") from exc
        watch_query = WatchQuery(
            namespace=list_query.namespace,
            labels=list_query.labels,
            fields=list_query.fields,
            resource_version=list_query.resource_version,
            allow_bookmarks=query.get("allowWatchBookmarks", "") in _TRUE,
            send_initial_events=query.get("sendInitialEvents", "") in _TRUE,
            timeout_seconds=timeout_seconds,
        )
        stream = WatchStream(self._ops, kind, target.version, watch_query, self._settings)
        as_table = wants_table(request.headers.get("Accept", ""))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for event in stream.events():
                if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    # `kubectl get -w` asks for each event's object as a one-row Table.
                    table = to_table(kind, target.version, [event["object"]], list_meta=None, now=self._now())
                    await response.write(
                        json.dumps({"type": event["type"], "object": table}).encode() + b"\n"
                    )
                else:
                    await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, ConnectionError):
            log.debug("watch client went away: %s", request.path_qs)
            return response
        await response.write_eof()
        return response
