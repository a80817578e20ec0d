"""The REST semantics of the double: what get, list, create, update, patch and delete do to objects.

Transport-free: the HTTP handlers and the Python fixture helpers both call these, so a fixture object gets
exactly the metadata, defaults and validation an object written through `kubectl` would.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from apidouble import builtin, crds, schema
from apidouble.continuation import Continuation
from apidouble.errors import (
    MODIFIED_CONFLICT,
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
)
from apidouble.jsonvalue import JsonObject, deep_copy, metadata_of
from apidouble.kinds import KindRegistry, ResourceKind, StatusOnCreate
from apidouble.patch import json_patch, merge_patch, strategic_merge_patch
from apidouble.selectors import FieldSelector, LabelSelector
from apidouble.store import Change, EventType, ObjectKey, Store

_SERVER_SET_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "generation",
    "selfLink",
)
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_NAMESPACE_KEY = ("", "namespaces")
_SERVICE_KEY = ("", "services")


class FieldValidation(StrEnum):
    """The `fieldValidation` query parameter: what to do with fields the schema does not know."""

    IGNORE = "Ignore"
    WARN = "Warn"
    STRICT = "Strict"


class PatchType(StrEnum):
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    JSON = "application/json-patch+json"


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: FieldValidation = FieldValidation.WARN


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResult:
    obj: JsonObject
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    namespace: str | None = None
    labels: LabelSelector = field(default_factory=LabelSelector)
    fields: FieldSelector = field(default_factory=FieldSelector)
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListResult:
    items: list[JsonObject]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenUser:
    """Who a bearer token belongs to, for TokenReview."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    # What a bound service-account token carries, e.g. {"authentication.kubernetes.io/node-name": ("n",)}.
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Who the token was issued for; empty: any audience a review asks about.
    audiences: tuple[str, ...] = ()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: JsonObject) -> JsonObject:
    """What `generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: JsonObject) -> JsonObject:
    out = copy.deepcopy(obj)
    meta = metadata_of(out)
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    out.pop("apiVersion", None)
    return out


class Operations:
    def __init__(
        self,
        *,
        store: Store,
        registry: KindRegistry,
        now: Callable[[], datetime],
        service_cidr: str = "10.96.0.0/16",
        tokens: Mapping[str, TokenUser] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self._now = now
        self._allocator = builtin.ClusterIpAllocator(service_cidr)
        store.add_listener(self._track_cluster_ips)
        self.tokens: dict[str, TokenUser] = dict(tokens or {})

    # Reads

    def get(self, kind: ResourceKind, namespace: str, name: str, version: str = "") -> JsonObject:
        obj = self.store.get(kind.key, self._key(kind, namespace, name))
        if obj is None:
            raise not_found(kind.resource, name)
        return self.present(kind, obj, version)

    def list_objects(self, kind: ResourceKind, query: ListQuery, version: str = "") -> ListResult:
        store = self.store
        at_rv: int | None = None
        after: tuple[str, str] | None = None
        if query.continue_token:
            token = Continuation.decode(query.continue_token)
            if token.rv < store.compacted_rv:
                raise expired(
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter."
                )
            at_rv, after = token.rv, token.after
        elif query.resource_version not in ("", "0"):
            try:
                requested = int(query.resource_version)
            except ValueError as exc:
                raise bad_request(f"invalid resource version: {query.resource_version!r}") from exc
            exact = query.resource_version_match == "Exact" or (
                not query.resource_version_match and query.limit
            )
            if requested > store.current_rv:
                raise ApiError(
                    code=504,
                    reason="Timeout",
                    message=f"Too large resource version: {requested}, current: {store.current_rv}",
                    details={
                        "causes": [
                            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
            if exact:
                at_rv = requested
        namespace = query.namespace if kind.namespaced else None
        objects = store.snapshot(kind.key, namespace, at_rv)
        matching = [o for o in objects if query.labels.matches(o) and query.fields.matches(o)]
        if after is not None:
            matching = [o for o in matching if self._object_key(o) > after]
        list_rv = at_rv if at_rv is not None else store.current_rv
        next_token = ""
        remaining: int | None = None
        if query.limit and len(matching) > query.limit:
            page = matching[: query.limit]
            next_token = Continuation(rv=list_rv, after=self._object_key(page[-1])).encode()
            if query.labels.empty and query.fields.empty:
                remaining = len(matching) - query.limit
            matching = page
        return ListResult(
            items=[self.present(kind, o, version) for o in matching],
            resource_version=list_rv,
            continue_token=next_token,
            remaining=remaining,
        )

    # Writes

    def create(
        self,
        kind: ResourceKind,
        namespace: str,
        body: JsonObject,
        *,
        version: str = "",
        options: WriteOptions = WriteOptions(),
        keep_status: bool = False,
    ) -> WriteResult:
        version = version or kind.versions[0]
        obj = self._check_body(kind, body, version)
        meta = metadata_of(obj)
        if kind.namespaced:
            namespace = namespace or str(meta.get("namespace") or "")
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not namespace:
                raise bad_request("the namespace of the object is required")
            meta["namespace"] = namespace
            if self.store.get(_NAMESPACE_KEY, ("", namespace)) is None:
                raise not_found(self._namespace_kind().resource, namespace)
        else:
            meta.pop("namespace", None)
        if kind.virtual:
            return WriteResult(obj=self._virtual_create(kind, obj, version))
        for key in _SERVER_SET_METADATA:
            meta.pop(key, None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    kind.resource,
                    "",
                    [
                        FieldError(
                            field="metadata.name",
                            reason="FieldValueRequired",
                            message="Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
        name = str(meta["name"])
        if self.store.get(kind.key, self._key(kind, namespace, name)) is not None:
            raise already_exists(kind.resource, name)
        if kind.status_on_create is StatusOnCreate.DROP and not keep_status:
            obj.pop("status", None)
        if not kind.custom:
            builtin.default_on_create(kind.kind, obj)
        now = _timestamp(self._now())
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        if kind.custom or kind.key == _CRD_KEY:
            meta["generation"] = 1
        obj, warnings = self._admit(kind, obj, version, options, old=None)
        if kind.key == _CRD_KEY:
            obj["status"] = crds.established_status(obj, now)
        return WriteResult(obj=self._commit(kind, obj, version, options.dry_run), warnings=warnings)

    def update(
        self,
        kind: ResourceKind,
        namespace: str,
        name: str,
        body: JsonObject,
        *,
        version: str = "",
        subresource: str = "",
        options: WriteOptions = WriteOptions(),
    ) -> WriteResult:
        version = version or kind.versions[0]
        old = self.store.get(kind.key, self._key(kind, namespace, name))
        if old is None:
            raise not_found(kind.resource, name)
        obj = self._check_body(kind, body, version)
        meta = metadata_of(obj)
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if kind.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        return self._update(kind, old, obj=obj, version=version, subresource=subresource, options=options)

    def patch(
        self,
        kind: ResourceKind,
        namespace: str,
        name: str,
        patch_type: PatchType,
        patch: object,
        *,
        version: str = "",
        subresource: str = "",
        options: WriteOptions = WriteOptions(),
    ) -> WriteResult:
        version = version or kind.versions[0]
        old = self.store.get(kind.key, self._key(kind, namespace, name))
        if old is None:
            raise not_found(kind.resource, name)
        current = self.present(kind, old, version)
        match patch_type:
            case PatchType.MERGE:
                patched = merge_patch(current, patch)
            case PatchType.STRATEGIC:
                patched = strategic_merge_patch(current, patch)
            case PatchType.JSON:
                patched = json_patch(current, patch)
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        meta = metadata_of(patched)
        if meta.get("name") != name or (kind.namespaced and meta.get("namespace") != namespace):
            raise bad_request("the patch may not change the object's name or namespace")
        return self._update(kind, old, obj=patched, version=version, subresource=subresource, options=options)

    def delete(
        self,
        kind: ResourceKind,
        namespace: str,
        name: str,
        *,
        version: str = "",
        preconditions: JsonObject | None = None,
        dry_run: bool = False,
    ) -> JsonObject:
        key = self._key(kind, namespace, name)
        old = self.store.get(kind.key, key)
        if old is None:
            raise not_found(kind.resource, name)
        meta = metadata_of(old)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise conflict(
                kind.resource,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                f"meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise conflict(kind.resource, name, MODIFIED_CONFLICT)
        if dry_run:
            return self.present(kind, old, version)
        if meta.get("finalizers"):
            # Finalizers hold the object: mark it deleted and let their owners remove them.
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _timestamp(self._now())
                meta["deletionGracePeriodSeconds"] = 0
                meta["resourceVersion"] = str(self.store.next_rv())
                self.store.put(kind.key, old)
            return self.present(kind, old, version)
        return self.present(kind, self._remove(kind, key), version)

    def delete_collection(
        self, kind: ResourceKind, query: ListQuery, *, version: str = "", dry_run: bool = False
    ) -> list[JsonObject]:
        listed = self.list_objects(
            kind, ListQuery(namespace=query.namespace, labels=query.labels, fields=query.fields), version
        )
        removed = []
        for obj in listed.items:
            ns, name = self._object_key(obj)
            removed.append(self.delete(kind, ns, name, version=version, dry_run=dry_run))
        return removed

    # Presentation

    def present(self, kind: ResourceKind, obj: JsonObject, version: str = "") -> JsonObject:
        obj["apiVersion"] = kind.api_version(version or kind.versions[0])
        obj["kind"] = kind.kind
        return obj

    # Internals

    def _namespace_kind(self) -> ResourceKind:
        namespace = self.registry.get(*_NAMESPACE_KEY)
        assert namespace is not None
        return namespace

    @staticmethod
    def _key(kind: ResourceKind, namespace: str, name: str) -> ObjectKey:
        return (namespace if kind.namespaced else "", name)

    @staticmethod
    def _object_key(obj: JsonObject) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def _check_body(self, kind: ResourceKind, body: object, version: str) -> JsonObject:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj = deep_copy(body)
        expected = kind.api_version(version)
        api_version = obj.get("apiVersion")
        if api_version and api_version != expected:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({expected})"
            )
        if obj.get("kind") and obj["kind"] != kind.kind:
            raise bad_request(
                f"the kind in the data ({obj['kind']}) does not match the expected kind ({kind.kind})"
            )
        obj["apiVersion"] = expected
        obj["kind"] = kind.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        return obj

    def _update(
        self,
        kind: ResourceKind,
        old: JsonObject,
        *,
        obj: JsonObject,
        version: str,
        subresource: str,
        options: WriteOptions,
    ) -> WriteResult:
        old_meta = metadata_of(old)
        meta = metadata_of(obj)
        name = str(old_meta["name"])
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta.get("resourceVersion"):
            raise conflict(kind.resource, name, MODIFIED_CONFLICT)
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise conflict(
                kind.resource,
                name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object "
                f"meta: {old_meta.get('uid')}",
            )
        if subresource == "status":
            # A status write changes status only; metadata and spec stay as stored.
            new = deep_copy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            new_meta = metadata_of(new)
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ):
                if key in old_meta:
                    new_meta[key] = old_meta[key]
                else:
                    new_meta.pop(key, None)
            if kind.status_subresource:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if kind.key == _SERVICE_KEY:
                self._keep_cluster_ip(kind, old, new)
            if not kind.custom:
                builtin.apply_defaults(kind.kind, new)
        new, warnings = self._admit(kind, new, version, options, old=old)
        changed_spec = _content(new) != _content(self.present(kind, deep_copy(old), version))
        if subresource != "status" and "generation" in old_meta and changed_spec:
            metadata_of(new)["generation"] = int(old_meta["generation"]) + 1
        if kind.key == _CRD_KEY and subresource != "status":
            new["status"] = crds.established_status(new, old_meta.get("creationTimestamp") or "")
        new_meta = metadata_of(new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            if options.dry_run:
                return WriteResult(obj=self.present(kind, new, version), warnings=warnings)
            removed = self._remove(kind, self._object_key(new))
            return WriteResult(obj=self.present(kind, removed, version), warnings=warnings)
        if _comparable(new) == _comparable(self.present(kind, deep_copy(old), version)):
            # An update that changes nothing is not written: same resourceVersion, no watch event.
            return WriteResult(obj=self.present(kind, old, version), warnings=warnings)
        return WriteResult(obj=self._commit(kind, new, version, options.dry_run), warnings=warnings)

    def _keep_cluster_ip(self, kind: ResourceKind, old: JsonObject, new: JsonObject) -> None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        spec = new.setdefault("spec", {})
        if not isinstance(spec, dict) or not old_ip:
            return
        if spec.get("clusterIP") in (None, ""):
            spec["clusterIP"] = old_ip
            spec["clusterIPs"] = (old.get("spec") or {}).get("clusterIPs") or [old_ip]
        elif spec["clusterIP"] != old_ip:
            raise invalid(
                kind.resource,
                str(metadata_of(old)["name"]),
                [
                    FieldError(
                        field="spec.clusterIPs[0]",
                        reason="FieldValueInvalid",
                        message=f'Invalid value: "{spec["clusterIP"]}": may not change once set',
                    )
                ],
            )

    def _admit(
        self,
        kind: ResourceKind,
        obj: JsonObject,
        version: str,
        options: WriteOptions,
        *,
        old: JsonObject | None,
    ) -> tuple[JsonObject, tuple[str, ...]]:
        """Validate (and for custom kinds prune and default) an object about to be written."""
        meta = metadata_of(obj)
        name = str(meta.get("name") or "")
        errors = builtin.validate_name(kind.kind, name) if old is None else []
        errors += builtin.validate_labels(meta)
        warnings: tuple[str, ...] = ()
        if kind.key == _CRD_KEY:
            errors += crds.validate_crd(obj)
        if kind.key == _SERVICE_KEY and old is None:
            errors += self._assign_cluster_ip(obj)
        kind_schema = kind.schemas.get(version)
        if kind.custom and kind_schema is not None:
            result = schema.process(obj, kind_schema)
            result.obj["metadata"] = meta
            obj = result.obj
            errors += result.errors
            if result.unknown_fields:
                if options.field_validation is FieldValidation.STRICT:
                    unknown = ", ".join(f'unknown field "{f}"' for f in result.unknown_fields)
                    raise bad_request(f"strict decoding error: {unknown}")
                if options.field_validation is FieldValidation.WARN:
                    warnings = tuple(f'unknown field "{f}"' for f in result.unknown_fields)
        if errors:
            raise invalid(kind.resource, name, errors)
        return obj, warnings

    def _track_cluster_ips(self, change: Change) -> None:
        if change.resource != _SERVICE_KEY:
            return
        for obj in (change.previous, change.obj):
            ip = ((obj or {}).get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                self._allocator.in_use.discard(str(ip))
        if change.type is not EventType.DELETED:
            ip = (change.obj.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                self._allocator.in_use.add(str(ip))

    def _assign_cluster_ip(self, obj: JsonObject) -> list[FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict) or spec.get("type") == "ExternalName":
            return []
        requested = spec.get("clusterIP")
        if requested == "None":
            spec["clusterIPs"] = ["None"]
            return []
        if requested:
            if requested in self._allocator.in_use:
                return [
                    FieldError(
                        field="spec.clusterIPs",
                        reason="FieldValueInvalid",
                        message=f'Invalid value: ["{requested}"]: failed to allocate IP {requested}: '
                        "provided IP is already allocated",
                    )
                ]
            spec["clusterIPs"] = [requested]
            return []
        allocated = self._allocator.allocate()
        if allocated is None:
            return [
                FieldError(
                    field="spec.clusterIPs",
                    reason="FieldValueInvalid",
                    message="Invalid value: []: failed to allocate a cluster IP: range is full",
                )
            ]
        spec["clusterIP"] = allocated
        spec["clusterIPs"] = [allocated]
        return []

    def _commit(self, kind: ResourceKind, obj: JsonObject, version: str, dry_run: bool) -> JsonObject:
        if dry_run:
            return self.present(kind, obj, version)
        metadata_of(obj)["resourceVersion"] = str(self.store.next_rv())
        self.store.put(kind.key, obj)
        if kind.key == _CRD_KEY:
            self.registry.register(crds.kind_from_crd(obj))
        return self.present(kind, deep_copy(obj), version)

    def _remove(self, kind: ResourceKind, key: ObjectKey) -> JsonObject:
        if kind.key == _NAMESPACE_KEY:
            # The real namespace controller empties a namespace before it goes; the double does it at once.
            for resource, object_key in self.store.namespaces_in_use(key[1]):
                self.store.remove(resource, object_key, self.store.next_rv())
        if kind.key == _CRD_KEY:
            crd = self.store.get(kind.key, key)
            spec = (crd or {}).get("spec") or {}
            custom_key = (str(spec.get("group")), str((spec.get("names") or {}).get("plural")))
            for object_key in self.store.keys(custom_key):
                self.store.remove(custom_key, object_key, self.store.next_rv())
            self.registry.unregister(custom_key)
            self.store.cut_watches(custom_key)
        change = self.store.remove(kind.key, key, self.store.next_rv())
        assert change is not None
        return deep_copy(change.obj)

    def _virtual_create(self, kind: ResourceKind, obj: JsonObject, version: str) -> JsonObject:
        if kind.kind != "TokenReview":
            raise bad_request(f"{kind.kind} cannot be created")
        token = str((obj.get("spec") or {}).get("token") or "")
        user = self.tokens.get(token)
        wanted = [str(a) for a in (obj.get("spec") or {}).get("audiences") or []]
        # As the API server does: a token is valid for a review only if their audiences intersect.
        matched = [a for a in wanted if a in user.audiences] if user and user.audiences and wanted else wanted
        status: JsonObject = {"authenticated": False}
        if user is not None and (matched or not wanted):
            status = {
                "authenticated": True,
                "user": {
                    "username": user.username,
                    "uid": user.uid,
                    "groups": list(user.groups),
                    **({"extra": {k: list(v) for k, v in user.extra.items()}} if user.extra else {}),
                },
                "audiences": matched,
            }
        elif user is not None:
            status["error"] = "token audiences are invalid for the target audiences"
        elif token:
            status["error"] = "invalid bearer token"
        obj["status"] = status
        metadata_of(obj).setdefault("creationTimestamp", None)
        return self.present(kind, obj, version)
