"""The connection to the API server: kubernetes-asyncio's ApiClient behind a small, generic interface.

Generic on purpose: list pages, watch streams and patches of any resource by path, with raw dicts, so the
informers work the same for built-in kinds and custom resources. Every foreign exception becomes a
`KubeApiError` here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from controlplane.sources.kube.errors import KubeApiError, KubeSourceError, ResourceExpiredError
from controlplane.sources.kube.resources import ResourceType

RawObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """Where the API server is: a kubeconfig (and context), or the pod's in-cluster service account."""

    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    connect_timeout: float = 10.0
    request_timeout: float = 60.0


def _error_from_status(status: Mapping[str, Any], fallback_code: int = 0) -> KubeApiError:
    code = int(status.get("code") or fallback_code)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or reason or f"HTTP {code}")
    if code == 410:
        return ResourceExpiredError(message, status=code, reason=reason)
    return KubeApiError(message, status=code, reason=reason)


def _error_from_body(body: bytes | str | None, code: int) -> KubeApiError:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    return _error_from_status(parsed, code)


class KubeApi:
    """Generic REST calls on an ApiClient."""

    def __init__(self, api_client: client.ApiClient, settings: ClientSettings = ClientSettings()) -> None:
        self._client = api_client
        self._settings = settings

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> RawObject:
        try:
            result = await self._client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self._settings.request_timeout,
            )
        except ApiException as exc:
            raise _error_from_body(exc.body, int(exc.status or 0)) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if not isinstance(result, dict):
            raise KubeApiError(f"{method} {path}: the response is not a JSON object")
        return result

    async def list_page(
        self,
        resource: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> RawObject:
        query: list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if limit:
            query.append(("limit", str(limit)))
        if continue_token:
            query.append(("continue", continue_token))
        return await self.request("GET", resource.collection_path(namespace), query=query)

    async def watch(
        self,
        resource: ResourceType,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
        read_timeout: float = 360.0,
    ) -> AsyncGenerator[RawObject, None]:
        """Watch events from `resource_version` on, with bookmarks, until the server ends the stream.

        An ERROR event raises (ResourceExpiredError for 410). Use with `contextlib.aclosing`, so the
        connection is released when the consumer stops early.
        """
        query: list[tuple[str, str]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        path = resource.collection_path(namespace)
        timeout = aiohttp.ClientTimeout(sock_connect=self._settings.connect_timeout, sock_read=read_timeout)
        try:
            response = await self._client.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise _error_from_body(exc.body, int(exc.status or 0)) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(f"watch {path}: {exc or type(exc).__name__}") from exc
        try:
            if response.status != 200:
                raise _error_from_body(await response.read(), response.status)
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise KubeApiError(f"watch {path}: {exc or type(exc).__name__}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise KubeApiError(f"watch {path}: malformed event: {line[:200]!r}") from exc
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise KubeApiError(f"watch {path}: malformed event: {line[:200]!r}")
                if event.get("type") == "ERROR":
                    raise _error_from_status(event["object"])
                yield event
        finally:
            response.close()

    async def patch_merge(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str = "",
    ) -> RawObject:
        return await self.request(
            "PATCH",
            resource.item_path(namespace, name, subresource),
            body=dict(patch),
            content_type=MERGE_PATCH,
        )

    async def get(self, resource: ResourceType, namespace: str, name: str) -> RawObject:
        return await self.request("GET", resource.item_path(namespace, name))


async def _configuration(settings: ClientSettings) -> client.Configuration:
    configuration = client.Configuration()
    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                context=settings.context,
                client_configuration=configuration,
            )
    except (ConfigException, OSError, ValueError) as exc:
        raise KubeSourceError(f"cannot load the Kubernetes client configuration: {exc}") from exc
    return configuration


@asynccontextmanager
async def connect(settings: ClientSettings) -> AsyncIterator[KubeApi]:
    """A KubeApi for the configured cluster, closed when the block ends."""
    configuration = await _configuration(settings)
    api_client = client.ApiClient(configuration)
    try:
        yield KubeApi(api_client, settings)
    finally:
        await api_client.close()
